import Foundation
import Testing
import TestSupport

/// Inputs that once crashed the tokenizer fuzz target (Tests/FuzzRegressions/tokenizer, kept by Scripts/fuzz.sh)
/// and its seeds, replayed through the same code (Fuzz/Targets/TokenizerTarget.swift, linked here).
@Suite struct TokenizerFuzzRegressionTests {
    @Test func replaysSeedsAndCrashes() throws {
        let inputs = FuzzCorpus.inputs("tokenizer")
        #expect(inputs.count >= 3)
        for url in inputs { #expect(try FuzzCorpus.replay(url, fuzzTokenizer) == 0, "\(url.lastPathComponent)") }
    }
}
