import Foundation
import KVStore
import Pipeline
import TestSupport
import Testing

/// Issue 13: `ingest --store DIR` never clobbers (exit 73, nothing written), and hostile stores whose
/// checksums were recomputed are refused with exit 65 naming file and field, by `verify` and `ask` alike.
@Suite struct StoreSafetyCLITests {
    static let document = (0..<40).map { "Line \($0): the quick brown fox jumps over the lazy dog." }.joined(separator: "\n")

    /// Runs `longheads ingest DOC --store STORE` from the working directory `cwd`.
    func ingest(model: String, store: String, cwd: String? = nil, extra: [String] = []) throws -> CLIRun {
        let doc = temp("doc-\(UUID().uuidString.prefix(6)).txt")
        try Self.document.write(toFile: doc, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: doc) }
        let args = ["ingest", doc, "--store", store, "--model", model, "--chunk", "16", "--attention", "64"] + extra
        guard let cwd else { return try longheads(args) }
        let p = longheadsProcess(args)
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        nonisolated(unsafe) var errData = Data()
        let t = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        t.start()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !t.isFinished { usleep(1000) }
        return CLIRun(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Names and contents of the regular files in `dir` (sorted), to show nothing changed.
    func snapshot(_ dir: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
            files[name] = (try? Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))) ?? Data("(unreadable)".utf8)
        }
        return files
    }

    @Test func foreignDirectoriesAndSymlinksAreRefused() throws {
        let model = try TinyModel().write(name: "store-safe")
        let root = temp("safe-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { for p in [model, root] { try? FileManager.default.removeItem(atPath: p) } }

        // `--store .` in a working directory with the user's files in it.
        let work = root + "/work"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try Data("my notes\n".utf8).write(to: URL(fileURLWithPath: work + "/notes.txt"))
        try Data("my own tokens\n".utf8).write(to: URL(fileURLWithPath: work + "/tokens"))
        let before = try snapshot(work)
        let dot = try ingest(model: model, store: ".", cwd: work)
        expectCleanFailure(dot, code: 73, mentions: "refusing to create a KV store")
        #expect(try snapshot(work) == before)

        // A directory holding a file named `pages` (not a store's).
        let withPages = root + "/pagesdir"
        try FileManager.default.createDirectory(atPath: withPages, withIntermediateDirectories: true)
        try Data("precious pages\n".utf8).write(to: URL(fileURLWithPath: withPages + "/pages"))
        let p = try ingest(model: model, store: withPages)
        expectCleanFailure(p, code: 73, mentions: "`pages` is not a KV store file")
        #expect(try snapshot(withPages) == ["pages": Data("precious pages\n".utf8)])

        // A symlink named `header` pointing to a file outside the directory: neither followed nor written.
        let linked = root + "/linked", outside = root + "/outside.txt"
        try FileManager.default.createDirectory(atPath: linked, withIntermediateDirectories: true)
        try Data("outside\n".utf8).write(to: URL(fileURLWithPath: outside))
        try FileManager.default.createSymbolicLink(atPath: linked + "/header", withDestinationPath: outside)
        for extra in [[], ["--resume"]] {
            let l = try ingest(model: model, store: linked, extra: extra)
            #expect(l.status == 73 || l.status == 65, "\(extra): exit \(l.status): \(l.stderr)")
            #expect(l.stderr.contains("symbolic link"), "\(l.stderr)")
            #expect(try String(contentsOfFile: outside, encoding: .utf8) == "outside\n")
            #expect(try FileManager.default.contentsOfDirectory(atPath: linked) == ["header"])
        }

        // An empty existing directory is fine, and so is `--store .` in an empty working directory.
        let empty = root + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let ok = try ingest(model: model, store: ".", cwd: empty)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(try longheads(["verify", "--store", empty]).status == 0)
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: what the store seals records with.
func testCRC32C(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }
    return ~crc
}

func le32(_ b: [UInt8], _ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 | Int(b[o + 2]) << 16 | Int(b[o + 3]) << 24 }
func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) { for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
func put64(_ b: inout [UInt8], _ o: Int, _ v: UInt64) { for i in 0..<8 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }

/// Rewrites both header slots of the store at `dir` (format 2: two slots of 69632 bytes) with `edit`
/// applied to each slot's bytes and JSON blob, then re-seals each slot's CRC: a crafted store.
func craftHeader(_ dir: String, edit: (inout [UInt8], inout [String: Any]) -> Void) throws {
    let slotBytes = 69632
    var file = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/header")))
    for base in [0, slotBytes] {
        var slot = Array(file[base..<(base + slotBytes)])
        let blobBytes = le32(slot, 168)
        var json = try JSONSerialization.jsonObject(with: Data(slot[176..<(176 + blobBytes)])) as! [String: Any]
        edit(&slot, &json)
        let blob = [UInt8](try JSONSerialization.data(withJSONObject: json))
        let total = 176 + blob.count + 4
        var out = Array(slot[0..<176]) + blob + [0, 0, 0, 0]
        put32(&out, 8, UInt32(total))
        put32(&out, 168, UInt32(blob.count))
        put32(&out, total - 4, testCRC32C(out[0..<(total - 4)]))
        out += [UInt8](repeating: 0, count: slotBytes - out.count)
        file.replaceSubrange(base..<(base + slotBytes), with: out)
    }
    try Data(file).write(to: URL(fileURLWithPath: dir + "/header"))
}

extension StoreSafetyCLITests {
    /// Each hostile store of issue 13 (checksums recomputed): `verify` and `ask` both exit 65, naming the
    /// file and the field; none traps.
    @Test func hostileStoresAreRefusedByVerifyAndAsk() throws {
        let model = try TinyModel().write(name: "store-hostile")
        let good = temp("hostile-good-\(UUID().uuidString.prefix(6))")
        defer { for p in [model, good] { try? FileManager.default.removeItem(atPath: p) } }
        let r = try ingest(model: model, store: good)
        #expect(r.status == 0, "\(r.stderr)")
        let files = ["header", "pages", "pagetable", "features", "tokens"]
        func crafted(_ name: String, _ mutate: (String) throws -> Void, mentions: [String]) throws {
            let dir = temp("hostile-\(UUID().uuidString.prefix(6))")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            for f in files { try FileManager.default.copyItem(atPath: good + "/" + f, toPath: dir + "/" + f) }
            try mutate(dir)
            let v = try longheads(["verify", "--store", dir])
            let a = try longheads(["ask", "--store", dir, "--model", model, "--max-tokens", "2", "What does the fox do?"])
            for (what, run) in [("verify", v), ("ask", a)] {
                #expect(run.status == 65, "\(name): \(what) exit \(run.status): \(run.stderr)")
                for m in mentions { #expect(run.stderr.contains(m), "\(name): \(what) does not mention \(m): \(run.stderr)") }
            }
        }
        try crafted("chunk size 255", { try craftHeader($0) { _, j in j["chunkSize"] = 255 } }, mentions: ["/header", "chunkSize", "255"])
        try crafted("attention length 0", { try craftHeader($0) { _, j in j["attentionLength"] = 0 } }, mentions: ["/header", "attentionLength"])
        try crafted("tail id 99999", { try craftHeader($0) { _, j in
            var t = j["tailTokens"] as! [Int] + [0]; t[0] = 99999; j["tailTokens"] = t } }, mentions: ["/header", "tailTokens", "99999"])
        try crafted("tail id -1", { try craftHeader($0) { _, j in
            var t = j["tailTokens"] as! [Int] + [0]; t[0] = -1; j["tailTokens"] = t } }, mentions: ["/header", "tailTokens", "-1"])
        try crafted("empty tail", { try craftHeader($0) { _, j in j["tailTokens"] = [Int]() } }, mentions: ["/header", "tokens"])
        try crafted("policy", { try craftHeader($0) { _, j in j["policy"] = "nonsense" } }, mentions: ["/header", "policy"])
        try crafted("selective start", { try craftHeader($0) { _, j in j["beginSelective"] = 1 << 40 } }, mentions: ["/header", "beginSelective"])
        try crafted("chunks 2^63", { try craftHeader($0) { s, _ in put64(&s, 128, 1 << 63) } }, mentions: ["/header", "committed chunks"])
        try crafted("tokens 2^64-1", { try craftHeader($0) { s, _ in put64(&s, 136, .max) } }, mentions: ["/header", "committed tokens"])
        try crafted("layers 0", { try craftHeader($0) { s, _ in put32(&s, 96, 0) } }, mentions: ["/header", "layers"])
        // A page-table entry whose stored size exceeds the page (record CRC recomputed): named before any read.
        try crafted("storedBytes", { dir in
            let path = dir + "/pagetable"
            var b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            let layers = le32(b, 24), rec = 16 * layers + 16
            let last = b.count - rec
            put32(&b, last + 8, 1 << 30)
            put32(&b, last + rec - 4, testCRC32C(b[last..<(last + rec - 4)]))
            try Data(b).write(to: URL(fileURLWithPath: path))
        }, mentions: ["/pagetable"])
        // Format 1: refused with what to do.
        try crafted("v1", { dir in
            var b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/header")))
            b[4] = 1
            try Data(b).write(to: URL(fileURLWithPath: dir + "/header"))
        }, mentions: ["/header", "format version 1", "ingest the document again"])
    }
}

extension StoreSafetyCLITests {
    /// 10,000 descriptions with fields set to hostile values (one to three at a time) through the one
    /// validating decoder, against a real store's header: each is refused or, if accepted, is one `ask`
    /// can run (parameters valid, tail ids in the vocabulary, token count = chunks + tail). Never a trap.
    @Test func tenThousandHostileDescriptionsNeverPassBroken() throws {
        let model = try TinyModel().write(name: "store-info-fuzz")
        let store = temp("info-fuzz-\(UUID().uuidString.prefix(6))")
        defer { for p in [model, store] { try? FileManager.default.removeItem(atPath: p) } }
        #expect(try ingest(model: model, store: store).status == 0)
        let header = try StoreReader.open(at: store).header
        let base = try JSONSerialization.jsonObject(with: Data(header.blob)) as! [String: Any]
        let values: [Any] = [0, 1, -1, 15, 16, 17, 64, 255, 256, 1024, 8192, 99999, Int(Int32.max), Int(Int32.min), 1 << 40, Int.max, Int.min,
                             "", "quest", "nonsense", "full", "bounds", "paper", true, [Int](), [0], [-1], [99999], [Int](repeating: 1, count: 40), NSNull()]
        let keys = ["chunkSize", "attentionLength", "beginSelective", "chat", "tailTokens", "tokens", "sourceBytes", "model", "policy",
                    "summaryVersion", "summaryContents", "complete", "vocabularySize"]
        var rng = SystemRandomNumberGenerator()
        var accepted = 0
        for _ in 0..<10_000 {
            var j = base
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let k = keys.randomElement(using: &rng)!
                if Int.random(in: 0..<8, using: &rng) == 0 { j[k] = nil } else { j[k] = values.randomElement(using: &rng)! }
            }
            let blob = [UInt8](try JSONSerialization.data(withJSONObject: j))
            guard let info = try? StoreInfo.decode(blob, path: store, header: header, vocabularySize: TinyModel().vocab) else { continue }
            accepted += 1
            #expect(info.parameters.problem == nil && info.chunkSize == header.geometry.chunkSize)
            #expect(info.tailTokens.allSatisfy { $0 >= 0 && $0 < TinyModel().vocab } && info.tailTokens.count < info.chunkSize)
            if info.complete != false { #expect(info.tokens == header.tokenCount + info.tailTokens.count) }
        }
        #expect(accepted > 0)
    }
}

extension StoreSafetyCLITests {
    /// A torn newest header slot: `verify` names it (exit 65), the store is read at the previous commit (an
    /// unfinished ingest, so `ask` says to resume), and `ingest --resume` rewrites the slot: verify is ok.
    @Test func tornHeaderSlotFallsBackAndResumeHeals() throws {
        let model = try TinyModel().write(name: "store-torn")
        let store = temp("torn-\(UUID().uuidString.prefix(6))")
        defer { for p in [model, store] { try? FileManager.default.removeItem(atPath: p) } }
        #expect(try ingest(model: model, store: store).status == 0)
        let slotBytes = 69632
        var b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: store + "/header")))
        // The newest slot has the larger commit sequence (u64 at 160); zero its second half, as a torn write.
        func seq(_ base: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[base + 160 + $1]) << (8 * UInt64($1)) } }
        let newest = seq(0) > seq(slotBytes) ? 0 : slotBytes
        let used = le32(b, newest + 8)
        for i in (newest + used / 2)..<(newest + used) { b[i] = 0 }
        try Data(b).write(to: URL(fileURLWithPath: store + "/header"))
        let v = try longheads(["verify", "--store", store])
        #expect(v.status == 65, "\(v.stderr)")
        #expect(v.stderr.contains("/header: header slot \(newest == 0 ? 0 : 1) is damaged"), "\(v.stderr)")
        let a = try longheads(["ask", "--store", store, "--model", model, "--max-tokens", "2", "What does the fox do?"])
        #expect(a.status == 65 && a.stderr.contains("--resume"), "\(a.stderr)")
        let r = try ingest(model: model, store: store, extra: ["--resume"])
        #expect(r.status == 0, "\(r.stderr)")
        let ok = try longheads(["verify", "--store", store])
        #expect(ok.status == 0, "\(ok.stderr)")
    }
}
