import Foundation
import GGUF
import Generation
import KVStore
import LongHeads
import Model
import Tokenization

/// Errors of the document pipeline.
public enum PipelineError: Error, CustomStringConvertible {
    case emptyDocument
    case badStoreInfo(path: String, reason: String)
    case staleSummary(path: String, version: Int)
    /// The document to ingest has no bytes.
    case emptySource(name: String)
    /// The document holds nothing but whitespace (nothing to summarize).
    case blankDocument(name: String)
    /// The document could not be opened or read.
    case cannotReadSource(name: String, reason: String)
    /// The document is not UTF-8: the first bad sequence starts at byte `offset`.
    case invalidUTF8(name: String, offset: Int)
    /// Resume: the source does not produce the tokens (or byte ranges) of the store's committed chunks.
    case sourceChanged(path: String, chunk: Int, reason: String)
    /// The ingest was asked to stop (Ctrl-C); `chunks` complete chunks are committed.
    case interrupted(path: String, chunks: Int, tokens: Int)
    /// The store's ingest did not finish (interrupted or killed): it must be resumed before use.
    case incompleteStore(path: String, chunks: Int)
    /// A field of the store's description (the header blob) is out of range or disagrees with the header
    /// or the model: the store is damaged or crafted.
    case invalidStoreInfo(path: String, field: String, reason: String)
    /// The policy asked for reads chunk summary rows the store does not keep (`ChunkSummaryContents`).
    case policyNeedsFullSummary(path: String, policy: SelectionPolicy)

    public var description: String {
        switch self {
        case .emptyDocument: "the document is empty"
        case .badStoreInfo(let p, let r): "\(p): store description unreadable: \(r)"
        case .staleSummary(let p, let v):
            "\(p): chunk summaries of version \(v); this longheads reads version \(ChunkSummaryLayout.version): ingest the document again"
        case .emptySource(let n): "\(n): the document is empty (0 bytes): nothing to ingest"
        case .blankDocument(let n): "\(n): the document is empty"
        case .cannotReadSource(let n, let r): "\(n): cannot read the document: \(r)"
        case .invalidUTF8(let n, let o): "\(n): invalid UTF-8 at byte offset \(o)"
        case .sourceChanged(let p, let c, let r):
            "\(p): the document is not the one this store was ingested from (chunk \(c): \(r)); ingest it into a new store"
        case .interrupted(let p, let c, let t):
            "ingest interrupted: \(c) chunks (\(t) tokens) committed to \(p); continue with the same document: longheads ingest --resume --store \(p) (FILE | -)"
        case .invalidStoreInfo(let p, let f, let r): "\(p): store description (header blob): field `\(f)`: \(r)"
        case .policyNeedsFullSummary(let p, let policy):
            "\(p): policy \(policy.rawValue) reads the full chunk summaries, and this store keeps the chunk bounds only; ask with its own policy, or ingest the document again with --policy \(policy.rawValue)"
        case .incompleteStore(let p, let c):
            "\(p): the ingest of this store did not finish (\(c) chunks committed); continue it with: longheads ingest --resume --store \(p) (FILE | -)"
        }
    }
}

/// What a store records besides its pages (the header blob, JSON): how it was built and the tokens of the
/// partial last chunk, which are not paged but re-run when the store is opened (fewer than one chunk).
public struct StoreInfo: Codable, Sendable {
    /// LongHeads chunk size.
    public var chunkSize: Int
    /// LongHeads attention length.
    public var attentionLength: Int
    /// LongHeads selective start.
    public var beginSelective: Int
    /// The document opens a chat user turn (`ask` closes it with the question).
    public var chat: Bool
    /// Tokens after the last full chunk.
    public var tailTokens: [Int32]
    /// Total document tokens (full chunks plus tail, template included).
    public var tokens: Int
    /// Bytes of source text ingested.
    public var sourceBytes: Int
    /// Model file name, for messages.
    public var model: String
    /// Selection policy used while ingesting (and by default for questions).
    public var policy: SelectionPolicy?
    /// `ChunkSummaryLayout.version` of the store's per-chunk summaries (absent: version 1).
    public var summaryVersion: Int?
    /// Which summary rows the store keeps (absent: `full`, the only contents before `bounds`).
    public var summaryContents: ChunkSummaryContents?
    /// False while the ingest runs (and in a store whose ingest was interrupted: resume it); true once it
    /// finished. Absent in stores made before ingests could resume: those are complete.
    public var complete: Bool?
    /// Rows of the model's token embedding: every token id of the store is below it (format 2 on).
    public var vocabularySize: Int?

    /// The one validating decoder of a store's description (`blob`, from `header` of the store at `path`),
    /// used by every reader (`ask`, `summarize`, `verify`, resume). Every field is checked against the
    /// header and, when given, the model (`vocabularySize`: its embedding rows), before anything uses it:
    /// LongHeads parameters (`LongHeadsParameters.problem`, the option limits), the chunk size and page /
    /// feature layout against the header's geometry, the tail (shorter than a chunk, ids within the
    /// vocabulary) and the token count (the full chunks plus the tail). A bad field is
    /// `PipelineError.invalidStoreInfo` naming it, never a trap later.
    public static func decode(_ blob: [UInt8], path: String, header: StoreHeader, vocabularySize: Int? = nil) throws -> StoreInfo {
        let info: StoreInfo
        do { info = try JSONDecoder().decode(StoreInfo.self, from: Data(blob)) } catch {
            throw PipelineError.badStoreInfo(path: path + "/header", reason: "\(error)")
        }
        try info.validate(path: path, header: header, vocabularySize: vocabularySize)
        return info
    }

    private func validate(path: String, header h: StoreHeader, vocabularySize model: Int?) throws {
        func bad(_ field: String, _ reason: String) -> PipelineError { .invalidStoreInfo(path: path + "/header", field: field, reason: reason) }
        let g = h.geometry
        guard (16...8192).contains(chunkSize), chunkSize % 16 == 0, chunkSize % min(64, chunkSize) == 0 else {
            throw bad("chunkSize", "\(chunkSize) is not a multiple of 16 (or of 64 above 64) in 16...8192")
        }
        guard chunkSize == g.chunkSize else { throw bad("chunkSize", "\(chunkSize), but the header's pages hold \(g.chunkSize) tokens") }
        guard (16...(1 << 22)).contains(attentionLength) else { throw bad("attentionLength", "\(attentionLength) is not in 16...\(1 << 22)") }
        guard (16...(1 << 22)).contains(beginSelective) else { throw bad("beginSelective", "\(beginSelective) is not in 16...\(1 << 22)") }
        if let p = parameters.problem {
            throw bad(p.hasPrefix("selective") ? "beginSelective" : p.hasPrefix("policy") ? "summaryContents" : "attentionLength", p)
        }
        // The page and feature layout follow from the header's model numbers and the chunk size.
        guard g.layers <= 4096, g.headDim <= 4096, g.kvHeads <= g.queryHeads, g.queryHeads <= 4096, g.queryHeads % g.kvHeads == 0 else {
            throw bad("chunkSize", "the header's geometry (\(g)) is not a model's")
        }
        let layout = ChunkSummaryLayout(layers: g.layers, heads: g.queryHeads, kvHeads: g.kvHeads, headDim: g.headDim, chunkSize: chunkSize,
                                        contents: summaryContents ?? .full)
        if let policy, policy.needsFullSummary, summaryContents == .bounds {
            throw bad("summaryContents", "bounds, but the store's policy \(policy.rawValue) reads the full summaries")
        }
        guard g.floatsPerPage == 2 * chunkSize * g.kvHeads * g.headDim, g.featureFloatsPerChunk == layout.floatsPerChunk else {
            throw bad("chunkSize", "the header's page layout (\(g)) does not follow from chunks of \(chunkSize) tokens")
        }
        guard let vocab = vocabularySize, (1...(1 << 30)).contains(vocab) else {
            throw bad("vocabularySize", vocabularySize.map { "\($0) is not in 1...\(1 << 30)" } ?? "missing")
        }
        if let model, model != vocab { throw bad("vocabularySize", "\(vocab), but the model has \(model) tokens") }
        guard tailTokens.count < chunkSize else {
            throw bad("tailTokens", "\(tailTokens.count) tokens, but a tail is shorter than a chunk (\(chunkSize))")
        }
        if let i = tailTokens.firstIndex(where: { $0 < 0 || Int($0) >= vocab }) {
            throw bad("tailTokens", "token \(i) is \(tailTokens[i]), outside the vocabulary 0..<\(vocab)")
        }
        // This pipeline stores full chunks only; the rest of the document is the tail.
        guard h.tokenCount == h.chunkCount * chunkSize else {
            throw bad("chunkSize", "the header's \(h.chunkCount) chunks hold \(h.tokenCount) tokens, not full chunks of \(chunkSize)")
        }
        guard sourceBytes >= 0 else { throw bad("sourceBytes", "\(sourceBytes) is negative") }
        if complete != false {
            guard UInt64(sourceBytes) >= h.sourceBytesConsumed else {
                throw bad("sourceBytes", "\(sourceBytes), but the chunks end at source byte \(h.sourceBytesConsumed)")
            }
            guard tokens == h.tokenCount + tailTokens.count else {
                throw bad("tokens", "\(tokens), but the store holds \(h.tokenCount) tokens in chunks and \(tailTokens.count) in its tail")
            }
        }
    }

    /// Refuses summaries of another `ChunkSummaryLayout` version (absent: version 1).
    public func checkSummaryVersion(path: String) throws {
        let version = summaryVersion ?? 1
        guard version == ChunkSummaryLayout.version else { throw PipelineError.staleSummary(path: path, version: version) }
    }

    /// LongHeads parameters of the store.
    public var parameters: LongHeadsParameters {
        LongHeadsParameters(chunkSize: chunkSize, attentionLength: attentionLength, beginSelective: beginSelective,
                            policy: policy ?? .paper, summary: summaryContents ?? .full)
    }
}

/// Ingest and question answering over one document store.
public struct DocumentPipeline {
    /// The model.
    public let model: LlamaModel
    /// Its tokenizer.
    public let tokenizer: Tokenizer
    /// Byte budget of the KV page cache.
    public let budgetBytes: Int

    /// A pipeline for `model`.
    public init(model: LlamaModel, tokenizer: Tokenizer, budgetBytes: Int) {
        self.model = model
        self.tokenizer = tokenizer
        self.budgetBytes = budgetBytes
    }

    /// Store geometry for `parameters` and `precision`.
    public func geometry(_ p: LongHeadsParameters, precision: KVPrecision) -> StoreGeometry {
        let c = model.config
        return StoreGeometry(layers: c.layers, kvHeads: c.kvHeads, queryHeads: c.heads, headDim: c.headDim, chunkSize: p.chunkSize,
                             floatsPerPage: 2 * p.chunkSize * c.kvHeads * c.headDim,
                             featureFloatsPerChunk: ChunkSummaryLayout(layers: c.layers, heads: c.heads, kvHeads: c.kvHeads,
                                                                       headDim: c.headDim, chunkSize: p.chunkSize,
                                                                       contents: p.summary).floatsPerChunk,
                             precision: precision)
    }

    /// Token ids of a document, with the chat opening when `chat` (system turn + `<|im_start|>user\n`).
    public func documentTokens(_ text: String, chat: Bool) -> (ids: [Int32], byteEnds: [Int]) {
        var ids = chat ? ChatTemplate.userTurnOpening(tokenizer: tokenizer) : []
        let prefix = ids.count
        ids += tokenizer.encode(text)
        if !chat, tokenizer.addBOS, let bos = tokenizer.bosID { ids.insert(bos, at: 0) }
        // Source byte offset after each token (template tokens map to 0).
        var ends = [Int](repeating: 0, count: ids.count)
        var at = 0
        for i in ids.indices where i >= prefix {
            at += tokenizer.pieceBytes(ids[i]).count
            ends[i] = at
        }
        return (ids, ends)
    }

    /// Builds a store at `path` from `text`, chunk by chunk; returns its description.
    @discardableResult
    public func ingest(text: String, to path: String, modelFile: GGUFFile, parameters: LongHeadsParameters, precision: KVPrecision,
                       chat: Bool, progress: (Int, Int) -> Void = { _, _ in }) throws -> StoreInfo {
        let (ids, ends) = documentTokens(text, chat: chat)
        guard !ids.isEmpty, !text.isEmpty else { throw PipelineError.emptyDocument }
        return try ingest(ids: ids, byteEnds: ends, sourceBytes: text.utf8.count, to: path, modelFile: modelFile,
                          parameters: parameters, precision: precision, chat: chat, progress: progress)
    }

    /// Builds a store from token ids; `byteEnds[i]` is the source byte offset after token i.
    /// `prepare` receives the ingest's attention before the first chunk runs (diagnosis: an oracle or an
    /// observer that must act on the document's own tokens too).
    @discardableResult
    public func ingest(ids: [Int32], byteEnds ends: [Int], sourceBytes: Int, to path: String, modelFile: GGUFFile,
                       parameters: LongHeadsParameters, precision: KVPrecision, chat: Bool,
                       progress: (Int, Int) -> Void = { _, _ in },
                       prepare: (LongHeadsAttention) -> Void = { _ in }) throws -> StoreInfo {
        // The chunk loop of the streaming ingest (StreamingIngest.swift), over ids already in memory.
        try ingestIDs(ids, byteEnds: ends, sourceBytes: sourceBytes, to: path, modelFile: modelFile, parameters: parameters,
                      precision: precision, chat: chat, progress: progress, prepare: prepare)
    }

    /// An opened store, ready to take a question: the tail tokens have been run.
    public final class Session {
        /// The store's description.
        public let info: StoreInfo
        /// Its archive (page cache statistics live there).
        public let archive: StoreArchive
        /// The attention, positioned after the document.
        public let attention: LongHeadsAttention
        /// Next position.
        public let position: Int

        init(info: StoreInfo, archive: StoreArchive, attention: LongHeadsAttention, position: Int) {
            self.info = info
            self.archive = archive
            self.attention = attention
            self.position = position
        }
    }

    /// Opens the store at `path` (refusing one made by another model) and runs its tail tokens, then
    /// `extra` tokens; returns the session and the logits after the last token.
    /// `policy`, when given, replaces the store's selection policy for the new tokens.
    /// `question`: `extra` is a question. Under `quest-lexical` the chunk it retrieves (`retrieve`) is then
    /// shared by every head from its first token on, through the answer; `diagnosisChunks` (the oracle of
    /// `bench niah`) are shared instead, under any policy.
    public func open(store path: String, modelFile: GGUFFile, then extra: [Int32], policy: SelectionPolicy? = nil,
                     question: Bool = false, diagnosisChunks: [Int]? = nil,
                     prepare: (LongHeadsAttention) -> Void = { _ in }) throws -> (Session, UnsafeBufferPointer<Float>) {
        // A session of one question; `DocumentSession` keeps the store open for many.
        try DocumentSession(pipeline: self, store: path, modelFile: modelFile)
            .open(then: extra, policy: policy, question: question, diagnosisChunks: diagnosisChunks, prepare: prepare)
    }

    /// Chunks retrieved for a question (`LexicalRetrieval`), best first: `retrievedChunks` of the archived
    /// chunks 1 ..< count (chunk 0 is in every head's view). The last archived chunk is a candidate too: it is
    /// the previous chunk of the question's first tokens (in view anyway: `LongHeadsAttention.share` skips it
    /// there), but not of the tokens once the question or its answer reaches the next chunk, which then need
    /// it shared. (Leaving it out made a 1,024-token passkey prompt through `generate` retrieve the only other
    /// candidate, which displaced the pass key's chunk from the answer's selection.) Only document tokens
    /// count: in a chat store the template that opens it (system turn) is skipped, else questions would
    /// retrieve the system prompt.
    public func retrieve(question: [Int32], reader: StoreReader, info: StoreInfo) throws -> [LexicalRetrieval.Match] {
        try retrieve(question: question, chunkCount: reader.chunkCount, info: info) { try reader.tokens(ofChunk: $0) }
    }

    /// `retrieve`, with the stored chunks' tokens from `tokens` (a session reads them once).
    func retrieve(question: [Int32], chunkCount: Int, info: StoreInfo, tokens: (Int) throws -> [Int32]) throws -> [LexicalRetrieval.Match] {
        let candidates = 1..<max(1, chunkCount)
        let opening = info.chat ? ChatTemplate.userTurnOpening(tokenizer: tokenizer).count : 0
        return try LexicalRetrieval().rank(query: question, chunks: candidates, limit: Self.retrievedChunks) { j in
            Array(try tokens(j).dropFirst(max(0, opening - j * info.chunkSize)))
        }
    }

    /// Chunks `quest-lexical` shares for a question: one, so that with the default K-3 = 1 selectable
    /// chunk per head, the retrieved chunk takes each head's pick (Docs/SELECTION.md has the measurements).
    public static let retrievedChunks = 1

    /// Runs a whole prompt through LongHeads via a store at `dir` (its complete chunks are ingested, the
    /// rest is run on open); returns the session and the logits after the prompt's last token.
    /// `prepare` receives the attention that runs the tail and the last token; `prepareIngest` the one that
    /// ingests the complete chunks (last, so that a trailing closure still binds to `prepare`).
    /// `questionStart`: the prompt's tokens from there on are a question, run as `ask` runs one (`open`
    /// with `question`): the document before it is ingested, the question's retrieval (if the policy has
    /// one) sees the question's tokens.
    public func run(prompt ids: [Int32], questionStart: Int? = nil, storeAt dir: String, modelFile: GGUFFile,
                    parameters: LongHeadsParameters, precision: KVPrecision, chat: Bool,
                    prepare: (LongHeadsAttention) -> Void = { _ in },
                    prepareIngest: (LongHeadsAttention) -> Void = { _ in }) throws -> (Session, UnsafeBufferPointer<Float>) {
        guard !ids.isEmpty else { throw PipelineError.emptyDocument }
        // Without a question, hold back the last token so that `open` always has a token to run (and
        // logits to return).
        let split = questionStart ?? ids.count - 1
        guard split >= 0, split < ids.count else { throw PipelineError.emptyDocument }
        let head = Array(ids[..<split])
        try ingest(ids: head, byteEnds: [Int](repeating: 0, count: head.count), sourceBytes: 0, to: dir, modelFile: modelFile,
                   parameters: parameters, precision: precision, chat: chat, prepare: prepareIngest)
        return try open(store: dir, modelFile: modelFile, then: Array(ids[split...]), question: questionStart != nil, prepare: prepare)
    }

    /// Tokens of a question: in a chat store the user turn is closed and the answer opened.
    public func questionTokens(_ question: String, chat: Bool, raw: Bool) -> [Int32] {
        if raw || !chat {
            return tokenizer.encode(raw ? question : "\n" + question)
        }
        return tokenizer.encode("\n\n" + question) + ChatTemplate.answerOpening(tokenizer: tokenizer)
    }

    /// Greedy/sampled continuation after `open` (the shared decode loop of `Generator`).
    public func answer(session: Session, first logits: UnsafeBufferPointer<Float>, maxTokens: Int, sampling: SamplingParameters,
                       onText: (String) throws -> Void) throws -> [Int32] {
        try Generator(model: model, tokenizer: tokenizer).decode(
            from: logits, position: session.position, maxTokens: maxTokens, sampling: sampling,
            attention: session.attention, onText: onText).tokens
    }
}
