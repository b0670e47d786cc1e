import Foundation
import Generation
import KVStore
import LongHeads

/// What `DocumentPipeline.generateLong` did: where the prompt's question started, what it retrieved, the
/// continuation and the seconds.
public struct LongGeneration: Sendable {
    /// Index in the prompt's tokens of its question's first token (`questionStart(ofPrompt:)`; nil: read
    /// without a question).
    public var questionStart: Int?
    /// Chunks every head read for the question and the answer (the retrieved chunk under `quest-lexical`).
    public var sharedChunks: [Int]
    /// Seconds to read the prompt (ingest and question).
    public var promptSeconds: Double
    /// Generated tokens (empty until the continuation is done).
    public var tokens: [Int32] = []
    /// Seconds of the continuation.
    public var answerSeconds: Double = 0
}

extension DocumentPipeline {
    /// `generate` on a prompt longer than the selective start: the prompt `ids` (`promptTokens(text,
    /// chat:)`) read through LongHeads via a new store at `dir`, then continued. From `questionStart` on
    /// (`questionStart(ofPrompt:chat:ids:)`: the prompt's last paragraph) the prompt is read as `ask` reads a
    /// question (issue 15, part 6: its tokens retrieve a chunk that every head reads); nil reads the prompt
    /// as one document (`generate --no-retrieval`). `prepare` sees the attention before the prompt's last
    /// tokens are read (diagnostics); `onRead` receives what was read before the continuation starts;
    /// `onText` each piece of the continuation.
    public func generateLong(ids: [Int32], questionStart: Int?, chat: Bool, storeAt dir: String, parameters: LongHeadsParameters,
                             precision: KVPrecision, maxTokens: Int, sampling: SamplingParameters,
                             prepare: (LongHeadsAttention) -> Void = { _ in }, onRead: (LongGeneration) -> Void = { _ in },
                             onText: (String) throws -> Void) throws -> LongGeneration {
        let clock = ContinuousClock()
        let t0 = clock.now
        let (session, logits) = try run(prompt: ids, questionStart: questionStart, storeAt: dir, modelFile: model.file, parameters: parameters,
                                        precision: precision, chat: chat, prepare: prepare)
        let t1 = clock.now
        var result = LongGeneration(questionStart: questionStart, sharedChunks: session.attention.sharedChunks, promptSeconds: (t1 - t0).seconds)
        onRead(result)
        result.tokens = try answer(session: session, first: logits, maxTokens: maxTokens, sampling: sampling, onText: onText)
        result.answerSeconds = (clock.now - t1).seconds
        return result
    }
}
