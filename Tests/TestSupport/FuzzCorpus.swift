import Foundation

/// The inputs a fuzz target is replayed on in the unit tests: its seeds (`Fuzz/Corpus/TARGET`) and the
/// inputs that once crashed it (`Tests/FuzzRegressions/TARGET`, kept there by Scripts/fuzz.sh).
public enum FuzzCorpus {
    /// The repository, from this file's place in it (Tests/TestSupport/FuzzCorpus.swift).
    private static let repoRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Every seed and regression input of `target`, sorted by name (dot files skipped).
    public static func inputs(_ target: String) -> [URL] {
        ["Fuzz/Corpus/" + target, "Tests/FuzzRegressions/" + target].flatMap { d -> [URL] in
            let dir = repoRoot.appendingPathComponent(d)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            return names.filter { !$0.hasPrefix(".") }.sorted().map { dir.appendingPathComponent($0) }
        }
    }

    /// Runs a fuzz target's input function on the bytes of `url` and returns what it returned
    /// (0: the target's checks held). A trap fails the test run, as it fails the fuzzer.
    public static func replay(_ url: URL, _ body: (UnsafePointer<UInt8>?, Int) -> CInt) throws -> CInt {
        let bytes = [UInt8](try Data(contentsOf: url))
        return bytes.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
    }
}
