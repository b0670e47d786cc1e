import Foundation
import GGUF
import LongHeads
import Model
import Pipeline
import TestSupport
import Testing
import Tokenization

/// `DocumentSession`: a store opened once answers every question as a store opened for that question alone.
@Suite struct DocumentSessionTests {
    /// A tiny model, its pipeline, and a store of about 3,000 tokens (byte-level vocabulary) under `quest-lexical`.
    static func fixture(_ name: String) throws -> (DocumentPipeline, store: String, cleanup: () -> Void) {
        let model = try TinyModel().write(name: name)
        let file = try GGUFFile(path: model)
        let pipeline = DocumentPipeline(model: try LlamaModel(file: file, threads: 1, maxBatch: 64),
                                        tokenizer: try Tokenizer(gguf: file), budgetBytes: 16 << 20)
        let store = NSTemporaryDirectory() + "session-\(name)-\(getpid())"
        let text = (0..<60).map { "Line \($0): the \(["harbour", "mill", "bridge"][$0 % 3]) gate was painted \(["blue", "red"][$0 % 2])." }
            .joined(separator: "\n")
        try pipeline.ingest(source: DocumentSource(bytes: Array(text.utf8), name: "t"), to: store, modelFile: file,
                            parameters: LongHeadsParameters(chunkSize: 64, attentionLength: 320), precision: .q4, chat: true)
        return (pipeline, store, { try? FileManager.default.removeItem(atPath: store); try? FileManager.default.removeItem(atPath: model) })
    }

    @Test func questionsInOneSessionEqualQuestionsAlone() throws {
        let (pipeline, store, cleanup) = try Self.fixture("batch")
        defer { cleanup() }
        let questions = ["What colour was the mill gate?", "Which line mentions the bridge?", "What colour was the mill gate?"]
        let options = AskOptions(maxTokens: 12, sources: 3)
        let session = try DocumentSession(pipeline: pipeline, store: store)
        let batch = try questions.map { try session.ask($0, options: options) }
        let alone = try questions.map { try DocumentSession(pipeline: pipeline, store: store).ask($0, options: options) }
        for (b, a) in zip(batch, alone) {
            #expect(b.text == a.text)
            #expect(b.tokens == a.tokens && b.tokens > 0)
            #expect(b.sources == a.sources)
        }
        // The same question twice in one session: the second starts from the document, not from the first's answer.
        #expect(batch[0].text == batch[2].text && batch[0].sources == batch[2].sources)
        // The pages decoded for one question stay for the next: the session's cache was hit.
        #expect(session.archive.cache.statistics.hits > 0)
    }

    @Test func missingStoreIsRefusedAndDecideAndSummarizeRun() throws {
        let (pipeline, _, cleanup) = try Self.fixture("missing")
        defer { cleanup() }
        #expect(throws: (any Error).self) { try DocumentSession(pipeline: pipeline, store: "/nonexistent-store") }
        let (p2, store, c2) = try Self.fixture("decide")
        defer { c2() }
        let session = try DocumentSession(pipeline: p2, store: store)
        let d = try session.decide("Is the text about gates?", threshold: 0.5)
        #expect(d.probability >= 0 && d.probability <= 1)
        #expect(d.passes == (d.probability >= 0.5))
        let s = try session.summarize(SummaryOptions(maxTokens: 8))
        #expect(s.reading == .store && s.sections.isEmpty)
    }
}
