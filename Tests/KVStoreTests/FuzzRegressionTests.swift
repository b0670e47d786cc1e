import Foundation
import Testing
import TestSupport

/// Inputs that once crashed the store fuzz target (Tests/FuzzRegressions/kvstore, kept by Scripts/fuzz.sh)
/// and its seeds, replayed through the same code (Fuzz/Targets/KVStoreTarget.swift, linked here).
@Suite struct KVStoreFuzzRegressionTests {
    @Test func replaysSeedsAndCrashes() throws {
        let inputs = FuzzCorpus.inputs("kvstore")
        #expect(inputs.count >= 3)
        defer { fuzzKVStoreRemoveTemporaries() }
        for url in inputs { #expect(try FuzzCorpus.replay(url, fuzzKVStore) == 0, "\(url.lastPathComponent)") }
    }
}
