import Foundation
import Generation
import KVStore
import LongHeads
import Pipeline

/// A chunk a question was routed to, as cited: the source file and its bytes.
public struct CorpusSource: Sendable, Equatable {
    /// Source file (absolute path, as recorded).
    public var file: String
    /// Byte range in the file.
    public var start: Int, end: Int
    /// Segment id and chunk in its store.
    public var segment: String, chunk: Int
    /// BM25 score of the chunk for the question, over the whole corpus.
    public var score: Double
}

/// The answer of one opened segment.
public struct SegmentAnswer: Sendable {
    /// The segment.
    public var segment: SegmentRecord
    /// The chunk of it every head read for the question (nil: none was shared, the segment's own
    /// selection read it).
    public var sharedChunk: Int?
    /// The generated answer.
    public var text: String
}

/// Questions answered across a corpus: rank every chunk with the corpus index, open only the segments
/// that hold the best ones, answer from them.
public final class CorpusReader {
    /// The corpus.
    public let corpus: Corpus
    /// Its manifest and index.
    public let manifest: Manifest
    public let index: CorpusIndex
    /// The pipeline (model, tokenizer) that answers.
    public let pipeline: DocumentPipeline

    /// Opens `corpus` for `pipeline`'s model (another model's corpus: `CorpusError.mismatch`, exit 65).
    public init(corpus: Corpus, pipeline: DocumentPipeline) throws {
        self.corpus = corpus
        self.pipeline = pipeline
        (manifest, index) = try corpus.open()
        let fp = Corpus.hex(modelFingerprint(pipeline.model.file))
        guard manifest.model == fp else {
            throw CorpusError.mismatch(path: corpus.manifestPath, reason: "the corpus was built with another model (fingerprint \(manifest.model.prefix(12))…, this model's is \(fp.prefix(12))…)")
        }
    }

    /// Chunks the corpus index ranks best for `question` (its plain token ids), at most `limit`.
    public func rank(_ question: String, limit: Int) throws -> [CorpusIndex.Hit] {
        try index.rank(query: pipeline.tokenizer.encode(question), limit: limit)
    }

    /// `hits` as citations.
    public func sources(_ hits: [CorpusIndex.Hit]) -> [CorpusSource] {
        hits.map { h in
            let r = manifest.segments[h.chunk.segment]
            return CorpusSource(file: r.source, start: h.chunk.start, end: h.chunk.end, segment: r.id, chunk: h.chunk.chunk, score: h.score)
        }
    }

    /// The segments to open for `hits`: those holding them, in the order of their best chunk, at most
    /// `limit`; with no hit, the first segment (the question shares no word with the corpus).
    public func segments(for hits: [CorpusIndex.Hit], limit: Int) -> [Int] {
        var out = [Int]()
        for h in hits where !out.contains(h.chunk.segment) && out.count < limit { out.append(h.chunk.segment) }
        return out.isEmpty && !manifest.segments.isEmpty ? [0] : out
    }

    /// Answers `question` from segment `s` (manifest order): opens its store, shares with every head its
    /// chunk that ranks best in `hits` (when that chunk is one a head selects: not chunk 0, the last
    /// stored chunk or the tail, which every head reads anyway), and generates greedily. The session is
    /// released on return, so memory is that of one segment at a time.
    public func answer(_ question: String, segment s: Int, hits: [CorpusIndex.Hit], raw: Bool, maxTokens: Int,
                       policy: SelectionPolicy? = nil, onText: (String) throws -> Void = { _ in }) throws -> SegmentAnswer {
        let r = manifest.segments[s]
        let store = corpus.storePath(r.id)
        let ids = pipeline.questionTokens(question, chat: r.chat, raw: raw)
        let best = hits.first(where: { $0.chunk.segment == s })?.chunk.chunk
        let shared = best.flatMap { c in (1..<max(1, r.chunks - 1)).contains(c) ? c : nil }
        let (session, logits) = try pipeline.open(store: store, modelFile: pipeline.model.file, then: ids, policy: policy, question: true,
                                                  diagnosisChunks: shared.map { [$0] } ?? (best != nil ? [] : nil))
        var text = ""
        _ = try pipeline.answer(session: session, first: logits, maxTokens: maxTokens, sampling: .greedy) { piece in
            text += piece
            try onText(piece)
        }
        return SegmentAnswer(segment: r, sharedChunk: shared, text: text)
    }
}
