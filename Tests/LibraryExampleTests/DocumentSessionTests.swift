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
    static let text = (0..<60).map { "Line \($0): the \(["harbour", "mill", "bridge"][$0 % 3]) gate was painted \(["blue", "red"][$0 % 2])." }
        .joined(separator: "\n")

    /// `emptyTail`: the store's tokens are a whole number of chunks (the document's tokens are cut to fit), so
    /// the store has no tail; otherwise it has one.
    static func fixture(_ name: String, emptyTail: Bool = false) throws -> (DocumentPipeline, store: String, cleanup: () -> Void) {
        let model = try TinyModel().write(name: name)
        let file = try GGUFFile(path: model)
        let pipeline = DocumentPipeline(model: try LlamaModel(file: file, threads: 1, maxBatch: 64),
                                        tokenizer: try Tokenizer(gguf: file), budgetBytes: 16 << 20)
        let store = NSTemporaryDirectory() + "session-\(name)-\(getpid())"
        let parameters = LongHeadsParameters(chunkSize: 64, attentionLength: 320)
        var info = try pipeline.ingest(source: DocumentSource(bytes: Array(text.utf8), name: "t"), to: store, modelFile: file,
                                       parameters: parameters, precision: .q4, chat: true).info
        var ids = pipeline.tokenizer.encode(text)
        while emptyTail && !info.tailTokens.isEmpty {
            // The tokens in the store's chunks are the document's opening and then the ids: drop the tail's count.
            ids.removeLast(info.tailTokens.count)
            try FileManager.default.removeItem(atPath: store)
            info = try pipeline.ingest(ids: ids, byteEnds: ids.indices.map { $0 + 1 }, sourceBytes: ids.count, to: store, modelFile: file,
                                       parameters: parameters, precision: .q4, chat: true)
        }
        #expect(info.tailTokens.isEmpty == emptyTail)
        return (pipeline, store, { try? FileManager.default.removeItem(atPath: store); try? FileManager.default.removeItem(atPath: model) })
    }

    /// The questions of a batch: a repeated one, and one long enough that the question alone completes the
    /// store's partial chunk (its chunks are archived for the session and must be gone for the next question).
    static let questions = ["What colour was the mill gate?", "Which line mentions the bridge?",
                            "Read every line about the harbour gate, the mill gate and the bridge gate, compare the colours they were painted, "
                                + "and say which gate was painted blue on the line that comes right after the one about the mill?",
                            "What colour was the mill gate?", "Which line mentions the bridge?"]

    /// The tail runs once per session (`LongHeadsAttention.Snapshot`): questions asked in one session get the
    /// answers and citations they get asked alone, and the answers a new session gives to its first open
    /// (tail and question run on a new attention, no snapshot restored), with and without a tail.
    @Test(arguments: [false, true])
    func questionsInOneSessionEqualQuestionsAlone(emptyTail: Bool) throws {
        let (pipeline, store, cleanup) = try Self.fixture(emptyTail ? "batch-notail" : "batch", emptyTail: emptyTail)
        defer { cleanup() }
        let questions = Self.questions
        let options = AskOptions(maxTokens: 12, sources: 3)
        let session = try DocumentSession(pipeline: pipeline, store: store)
        // The long question completes a chunk by itself.
        #expect(session.info.tailTokens.count + session.questionTokens(questions[2]).count > session.info.chunkSize)
        let batch = try questions.map { try session.ask($0, options: options) }
        let alone = try questions.map { try DocumentSession(pipeline: pipeline, store: store).ask($0, options: options) }
        // Without sources nothing is opened before the question: the tail runs right before it.
        var noSources = options
        noSources.sources = 0
        let first = try questions.map { try DocumentSession(pipeline: pipeline, store: store).ask($0, options: noSources) }
        for ((b, a), f) in zip(zip(batch, alone), first) {
            #expect(b.text == a.text && b.text == f.text)
            #expect(b.tokens == a.tokens && b.tokens == f.tokens)
            #expect(b.sources == a.sources)
        }
        // Not vacuous: answers were generated and sources cited.
        #expect(batch.contains { $0.tokens > 0 } && batch.contains { !$0.sources.isEmpty })
        // The same question twice in one session: the second starts from the document, not from the first's answer.
        #expect(batch[0].text == batch[3].text && batch[0].sources == batch[3].sources)
        #expect(batch[1].text == batch[4].text && batch[1].sources == batch[4].sources)
        // The pages decoded for one question stay for the next: the session's cache was hit.
        #expect(session.archive.cache.statistics.hits > 0)
    }

    /// A session's opens after the first restore the tail's state instead of running it: the tail's tokens
    /// reach the model once (seen by a selection observer), and the question's logits are the same bits as
    /// a new session's.
    @Test func tailRunsOncePerSession() throws {
        let (pipeline, store, cleanup) = try Self.fixture("tail-once")
        defer { cleanup() }
        let session = try DocumentSession(pipeline: pipeline, store: store)
        let tailStart = session.reader.chunkCount * session.info.chunkSize
        #expect(!session.info.tailTokens.isEmpty)
        let ids = session.questionTokens("Which gate was red?")
        final class Seen { var tailRecords = 0 }
        let seen = Seen()
        var logits = [[Float]]()
        for _ in 0..<3 {
            let (state, l) = try session.open(then: ids, question: true) { attention in
                attention.selections.observe { r in if r.positions.lowerBound < session.documentEnd { seen.tailRecords += 1 } }
            }
            #expect(state.position == session.documentEnd + ids.count)
            #expect(state.attention.position == state.position)
            logits.append(Array(l))
        }
        let (_, fresh) = try DocumentSession(pipeline: pipeline, store: store).open(then: ids, question: true)
        let bits = logits.map { $0.map(\.bitPattern) }
        let same = bits[0] == fresh.map(\.bitPattern) && bits[1] == bits[0] && bits[2] == bits[0]
        #expect(same, "a restored open's logits differ from a new session's")
        // One layer's record per tail block, on the first open only.
        let layers = pipeline.model.config.layers
        #expect(seen.tailRecords == layers * ((session.documentEnd - tailStart + session.info.chunkSize - 1) / session.info.chunkSize))
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
