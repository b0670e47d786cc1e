import Foundation
import Testing
import TestSupport

/// Inputs that once crashed the GGUF fuzz target (Tests/FuzzRegressions/gguf, kept by Scripts/fuzz.sh)
/// and its seeds, replayed through the same code (Fuzz/Targets/GGUFTarget.swift, linked here).
@Suite struct GGUFFuzzRegressionTests {
    @Test func replaysSeedsAndCrashes() throws {
        let inputs = FuzzCorpus.inputs("gguf")
        #expect(inputs.count >= 3)
        for url in inputs { #expect(try FuzzCorpus.replay(url, fuzzGGUF) == 0, "\(url.lastPathComponent)") }
    }
}
