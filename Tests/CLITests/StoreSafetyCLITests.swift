import Foundation
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
