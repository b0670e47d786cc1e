import Foundation
import Testing
import TestSupport

/// The filter's record splitter and the `ask --questions` reader (Pipeline), replayed on their fuzz targets'
/// seeds and kept crash inputs through the same code (Fuzz/Targets/RecordsTarget.swift and
/// QuestionsTarget.swift, linked here).
@Suite struct PipelineFuzzRegressionTests {
    @Test func recordSplitterReplaysSeedsAndCrashes() throws {
        let inputs = FuzzCorpus.inputs("records")
        #expect(inputs.count >= 3)
        for url in inputs { #expect(try FuzzCorpus.replay(url, fuzzRecords) == 0, "\(url.lastPathComponent)") }
    }

    @Test func questionsReaderReplaysSeedsAndCrashes() throws {
        let inputs = FuzzCorpus.inputs("questions")
        #expect(inputs.count >= 2)
        for url in inputs { #expect(try FuzzCorpus.replay(url, fuzzQuestions) == 0, "\(url.lastPathComponent)") }
    }
}
