import Foundation
import GGUF
import Generation
import KVStore
import LongHeads
import Model
import Tokenization

/// How a question is asked (`DocumentSession.ask`).
public struct AskOptions: Sendable {
    /// Most tokens to generate.
    public var maxTokens: Int
    /// Decoding (greedy by default).
    public var sampling: SamplingParameters
    /// Append the question verbatim and let the model continue (no chat turn).
    public var raw: Bool
    /// Selection policy for the question and the answer; nil: the one the store was ingested with.
    public var policy: SelectionPolicy?
    /// Most citations per answer; 0: none (and the citation baseline is never measured).
    public var sources: Int

    /// Options of one question.
    public init(maxTokens: Int = 64, sampling: SamplingParameters = .greedy, raw: Bool = false,
                policy: SelectionPolicy? = nil, sources: Int = 3) {
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.raw = raw
        self.policy = policy
        self.sources = sources
    }
}

/// The answer to one question about a document.
public struct Answer: Codable, Sendable, Equatable {
    /// The question asked.
    public var question: String
    /// The generated answer, as generated (not trimmed).
    public var text: String
    /// Tokens generated.
    public var tokens: Int
    /// The document chunks the heads selected most while reading the question, best first (`Citation`).
    public var sources: [Citation]
    /// Seconds to start from the document (the tail is run on a session's first open, its state restored
    /// after) and run the question (the first answer token's logits).
    public var openSeconds: Double
    /// Seconds of the whole question: open, answer, citations.
    public var seconds: Double
}

/// A yes/no decision on one text (`YesNoClassifier`, `DocumentSession.decide`).
public struct FilterDecision: Codable, Sendable, Equatable {
    /// P(yes) against P(no) of the next token after the prompt.
    public var probability: Double
    /// Whether the text passes: `probability ≥ threshold`, inverted when asked.
    public var passes: Bool

    /// The decision for `probability` at `threshold`; `invert` passes the texts answered no.
    public init(probability: Double, threshold: Double, invert: Bool = false) {
        self.probability = probability
        passes = (probability >= threshold) != invert
    }
}

/// A document store opened once, for any number of questions.
///
/// Opening checks the store once: its header and model fingerprint, every page-table record and feature
/// CRC (`StoreReader.open`), its description (`StoreInfo.decode`) and layout. The reader, its layer-major
/// feature copy, the page cache and the archive are then kept; every question starts from the committed
/// document state: the chunks a previous question and answer completed are dropped, and the attention is
/// put back as the store's tail left it (the tail runs once per session and selection policy,
/// `LongHeadsAttention.Snapshot`), so a question asked in a session gets the same answer as asked alone.
public final class DocumentSession {
    /// The pipeline (model, tokenizer, cache budget).
    public let pipeline: DocumentPipeline
    /// The store's directory.
    public let path: String
    /// The store, read-only.
    public let reader: StoreReader
    /// Its checked description.
    public let info: StoreInfo
    /// The archive every question's attention reads (its page cache outlives the questions).
    public let archive: StoreArchive
    private var baselines: [String: [Double]] = [:]
    private var chunkTokens: [Int: [Int32]] = [:]
    /// Per selection policy: the attention questions run on, and its state after the store's tail.
    private var afterTail: [SelectionPolicy: (attention: LongHeadsAttention, state: LongHeadsAttention.Snapshot)] = [:]

    /// Opens the store at `path` for `pipeline`'s model: refuses another model's store (`StoreError`),
    /// a damaged or unfinished one (`PipelineError`). `modelFile`: the model's GGUF, if not `pipeline.model.file`.
    public init(pipeline: DocumentPipeline, store path: String, modelFile: GGUFFile? = nil) throws {
        self.pipeline = pipeline
        self.path = path
        let model = pipeline.model
        reader = try StoreReader.open(at: path, expectedModelFingerprint: modelFingerprint(modelFile ?? model.file))
        info = try StoreInfo.decode(reader.header.blob, path: path, header: reader.header, vocabularySize: model.config.vocabSize)
        try info.checkSummaryVersion(path: path)
        guard pipeline.geometry(info.parameters, precision: reader.geometry.precision) == reader.geometry else {
            throw PipelineError.badStoreInfo(path: path, reason: "its layout (\(reader.geometry)) is not this model's")
        }
        guard info.complete != false else { throw PipelineError.incompleteStore(path: path, chunks: reader.chunkCount) }
        archive = try StoreArchive(reader: reader, budgetBytes: pipeline.budgetBytes)
    }

    /// Position of the first token after the document (its chunks and its tail).
    public var documentEnd: Int { reader.chunkCount * info.chunkSize + info.tailTokens.count }

    /// Starts from the committed document: its tail tokens, then `extra`; returns the question state and the
    /// logits after the last token. `policy`, when given, replaces the store's selection policy.
    /// `question`: `extra` is a question. Under `quest-lexical` the chunk it retrieves (`retrieve`) is then
    /// shared by every head from its first token on, through the answer; `diagnosisChunks` (the oracle of
    /// `bench niah`) are shared instead, under any policy. `prepare` receives the attention first (with no
    /// selection observers but those it adds).
    ///
    /// The tail runs once per session and policy: the first open runs it (its selections reach the observers
    /// `prepare` added) and keeps the attention's state after it (`LongHeadsAttention.Snapshot`); later opens
    /// restore that state and run `extra` only, which gives the same bits. The attention is reused, so the
    /// returned session is valid until the next `open` (or `ask`, `decide`, …) of this document session.
    public func open(then extra: [Int32], policy: SelectionPolicy? = nil, question: Bool = false, diagnosisChunks: [Int]? = nil,
                     prepare: (LongHeadsAttention) -> Void = { _ in }) throws -> (DocumentPipeline.Session, UnsafeBufferPointer<Float>) {
        let model = pipeline.model
        var parameters = info.parameters
        if let policy {
            parameters.policy = policy
            if policy.needsFullSummary && parameters.summary != .full { throw PipelineError.policyNeedsFullSummary(path: path, policy: policy) }
        }
        let tail = info.tailTokens
        guard !(tail.isEmpty && extra.isEmpty) else { throw PipelineError.emptyDocument }
        // The previous question's chunks are not the document's: every question starts from the store alone.
        archive.discardSessionChunks()
        defer { archive.streaming = false }
        let attention: LongHeadsAttention
        if extra.isEmpty {
            // Only the tail's own logits are wanted: run it on an attention of its own (nothing to reuse).
            attention = try LongHeadsAttention(config: model.config, parameters: parameters, archive: archive, pool: model.pool)
            prepare(attention)
            archive.streaming = true
            let logits = try run(tail, on: attention, logits: true)
            return (DocumentPipeline.Session(info: info, archive: archive, attention: attention, position: attention.position), logits)
        }
        if let kept = afterTail[parameters.policy] {
            attention = kept.attention
            attention.selections.removeAll()
            attention.restore(kept.state)
            prepare(attention)
            archive.streaming = true
        } else {
            attention = try LongHeadsAttention(config: model.config, parameters: parameters, archive: archive, pool: model.pool)
            prepare(attention)
            archive.streaming = true
            _ = try run(tail, on: attention, logits: false)
            afterTail[parameters.policy] = (attention, attention.snapshot())
        }
        // Chunks the question shares from its first token on.
        if question {
            if let diagnosisChunks {
                attention.share(diagnosisChunks)
            } else if parameters.policy == .questLexical {
                attention.share(try retrieve(question: extra).map(\.chunk))
            }
        }
        let logits = try run(extra, on: attention, logits: true)
        return (DocumentPipeline.Session(info: info, archive: archive, attention: attention, position: attention.position), logits)
    }

    /// Runs `tokens` on `attention` from its position, in blocks that end at chunk boundaries (the tail and
    /// a question are run separately: as blocks are cut where a question shares retrieved chunks, and a
    /// token's logits do not depend on the other tokens of its block); `logits`: returns those after the
    /// last token.
    private func run(_ tokens: [Int32], on attention: LongHeadsAttention, logits: Bool) throws -> UnsafeBufferPointer<Float> {
        let w = info.chunkSize
        var pos = attention.position
        var out = UnsafeBufferPointer<Float>(start: nil, count: 0)
        var i = 0
        while i < tokens.count {
            let n = min(tokens.count - i, w - pos % w)
            out = try pipeline.model.forward(tokens[i..<(i + n)], start: pos, attention: attention,
                                             logits: logits && i + n == tokens.count ? .last : .none)
            pos += n
            i += n
        }
        return out
    }

    /// Chunks retrieved for a question (`LexicalRetrieval`), best first: `DocumentPipeline.retrievedChunks`
    /// of the archived chunks a question's head may select, 1 ..< count-1 (chunk 0 and the last archived
    /// chunk, the question's previous chunk, are in every head's view anyway). Only document tokens count:
    /// in a chat store the template that opens it (system turn) is skipped, else questions would retrieve
    /// the system prompt. A chunk's tokens are read once per session.
    public func retrieve(question: [Int32]) throws -> [LexicalRetrieval.Match] {
        try pipeline.retrieve(question: question, chunkCount: reader.chunkCount, info: info) { j in
            if let ids = chunkTokens[j] { return ids }
            let ids = try reader.tokens(ofChunk: j)
            chunkTokens[j] = ids
            return ids
        }
    }

    /// Tokens of `question` as this store's document expects it (`DocumentPipeline.questionTokens`).
    public func questionTokens(_ question: String, raw: Bool = false) -> [Int32] {
        pipeline.questionTokens(question, chat: info.chat, raw: raw)
    }

    /// Reads `question` (tokens from `questionTokens`) and tallies the selections of its tokens.
    public func selectionTally(question: [Int32], policy: SelectionPolicy? = nil) throws -> SourceTally {
        let first = documentEnd
        let tally = SourceTally(parameters: info.parameters, storedChunks: reader.chunkCount, heads: pipeline.model.config.heads,
                                positions: first..<(first + question.count))
        _ = try open(then: question, policy: policy) { tally.install(on: $0) }
        return tally
    }

    /// Mean per-chunk selection share of `DocumentPipeline.citationProbes`: the baseline of
    /// `SourceTally.citations`. Measured once per (raw, policy) in a session.
    public func citationBaseline(raw: Bool, policy: SelectionPolicy? = nil) throws -> [Double] {
        let key = "\(raw) \(policy?.rawValue ?? "-")"
        if let b = baselines[key] { return b }
        var mean = [Double](repeating: 0, count: reader.chunkCount)
        for probe in DocumentPipeline.citationProbes {
            let t = try selectionTally(question: questionTokens(probe, raw: raw), policy: policy)
            for (c, s) in t.shares.enumerated() { mean[c] += s / Double(DocumentPipeline.citationProbes.count) }
        }
        baselines[key] = mean
        return mean
    }

    /// Answers `question`, streaming the answer's text to `onText`. Citations come from the selections
    /// made while the question is read (through its last token, whose selection yields the first answer
    /// token): measured on Samples/ contracts, they find the clause that holds the answer far more often
    /// than the selections of the answer's own decode steps. `tallies`, when given, receives the question's
    /// and the answer's per-layer selection counts (diagnosis).
    public func ask(_ question: String, options: AskOptions = AskOptions(),
                    tallies: ((_ question: SourceTally, _ answer: SourceTally) throws -> Void)? = nil,
                    onText: (String) throws -> Void = { _ in }) throws -> Answer {
        let clock = ContinuousClock()
        // Which chunks heads pick whatever is asked: measured once, subtracted from every question's tally.
        let baseline = options.sources > 0 ? try citationBaseline(raw: options.raw, policy: options.policy) : []
        let t0 = clock.now
        let ids = questionTokens(question, raw: options.raw)
        let first = documentEnd
        let heads = pipeline.model.config.heads
        let tally = SourceTally(parameters: info.parameters, storedChunks: reader.chunkCount, heads: heads,
                                positions: first..<(first + ids.count))
        let answerTally = SourceTally(parameters: info.parameters, storedChunks: reader.chunkCount, heads: heads,
                                      positions: (first + ids.count - 1)..<Int.max)
        let (state, logits) = try open(then: ids, policy: options.policy, question: true) { attention in
            attention.selections.observe { record in
                tally.observe(record)
                if tallies != nil { answerTally.observe(record) }
            }
        }
        let t1 = clock.now
        var text = ""
        let tokens = try pipeline.answer(session: state, first: logits, maxTokens: options.maxTokens, sampling: options.sampling) { piece in
            text += piece
            try onText(piece)
        }
        let cited = options.sources > 0 ? try tally.citations(reader: reader, baseline: baseline, top: options.sources) : []
        let answer = Answer(question: question, text: text, tokens: tokens.count, sources: cited,
                            openSeconds: (t1 - t0).seconds, seconds: (clock.now - t0).seconds)
        try tallies?(tally, answerTally)
        return answer
    }

    /// Asks the document for a summary (`SummaryOptions.instruction`), streaming it to `onText`.
    public func summarize(_ options: SummaryOptions = SummaryOptions(), onText: (String) throws -> Void = { _ in }) throws -> Summary {
        let clock = ContinuousClock()
        let t0 = clock.now
        let (state, logits) = try open(then: questionTokens(options.instruction))
        var text = ""
        _ = try pipeline.answer(session: state, first: logits, maxTokens: options.maxTokens, sampling: options.sampling) { piece in
            text += piece
            try onText(piece)
        }
        return Summary(text: text, sections: [], reading: .store, seconds: (clock.now - t0).seconds)
    }

    /// Answers the yes/no `question` about the whole document from the next token's P(yes) against P(no)
    /// (the classifier's answer words), without decoding.
    public func decide(_ question: String, threshold: Double = 0.5) throws -> FilterDecision {
        let words = try YesNoClassifier.answerTokens(tokenizer: pipeline.tokenizer)
        let (_, logits) = try open(then: questionTokens(question + " Answer yes or no."), question: true)
        return FilterDecision(probability: YesNoClassifier.yesProbability(logits, yes: words.yes, no: words.no), threshold: threshold)
    }
}
