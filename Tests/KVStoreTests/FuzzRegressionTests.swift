import Foundation
import Testing

/// Where the fuzz corpora live, from this file's place in the repository.
private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Every file of `dirs` (relative to the repository), sorted.
private func fuzzInputs(_ dirs: [String]) -> [URL] {
    dirs.flatMap { d -> [URL] in
        let dir = repoRoot.appendingPathComponent(d)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { dir.appendingPathComponent($0) }
    }
}

/// Runs a fuzz target's input function on `url`'s bytes (a trap fails the test run).
private func replay(_ url: URL, _ body: (UnsafePointer<UInt8>?, Int) -> CInt) throws {
    let bytes = [UInt8](try Data(contentsOf: url))
    #expect(bytes.withUnsafeBufferPointer { body($0.baseAddress, $0.count) } == 0, "\(url.lastPathComponent)")
}

/// Inputs that once crashed the store fuzz target (Tests/FuzzRegressions/kvstore, kept by Scripts/fuzz.sh)
/// and its seeds, replayed through the same code (Fuzz/Targets/KVStoreTarget.swift, linked here).
@Suite struct KVStoreFuzzRegressionTests {
    @Test func replaysSeedsAndCrashes() throws {
        let inputs = fuzzInputs(["Fuzz/Corpus/kvstore", "Tests/FuzzRegressions/kvstore"])
        #expect(inputs.count >= 3)
        defer { fuzzKVStoreRemoveTemporaries() }
        for url in inputs { try replay(url, fuzzKVStore) }
    }
}
