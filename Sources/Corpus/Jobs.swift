import Foundation
import Generation
import KVStore
import LongHeads
import Model
import Pipeline
import Tokenization

// The corpus jobs behind `ingest --corpus`, `corpus plan|index|list`, `ask --corpus` and `summarize
// --corpus` (Docs/CORPUS.md): the loops over files, segments and questions, and the JSON lines they
// print. The CLI parses the arguments, calls these and writes what they hand back (issue 15: no
// pipeline logic in the CLI target).

extension Corpus {
    /// The segments `ingest --corpus` and `corpus plan` cut the file at `path` into (`plan`): about
    /// `segmentTokens` tokens each, counted with `tokenizer`; the whole file without them. An empty file
    /// is `PipelineError.emptySource`.
    public static func planSegments(path: String, segmentTokens: Int?, tokenizer: Tokenizer?) throws -> [Range<Int>] {
        let size = try fileSize(path)
        guard size > 0 else { throw PipelineError.emptySource(name: path) }
        guard let segmentTokens, let tokenizer else { return [0..<size] }
        let bytes = try readRange(path: path, range: 0..<size)
        return bytes.withUnsafeBytes { b in
            plan(b, segmentTokens: segmentTokens, count: { tokenizer.encode(String(decoding: $0, as: UTF8.self)).count })
        }
    }

    /// A segment added by `ingest(files:…)`: its record, what `add` did, and the seconds it took.
    public struct IngestedSegment: Sendable {
        /// The segment's record.
        public var record: SegmentRecord
        /// Added, recorded or already present (`AddOutcome`).
        public var outcome: AddOutcome
        /// Wall seconds of the `add`.
        public var seconds: Double

        /// The line `ingest --corpus` prints: segment, source, start, end, tokens, outcome, seconds (ms precision).
        public func jsonLine() throws -> String {
            try Pipeline.jsonLine([("segment", record.id), ("source", record.source), ("start", record.start), ("end", record.end),
                                   ("tokens", record.tokens), ("outcome", outcome.rawValue), ("seconds", (seconds * 1000).rounded() / 1000)])
        }
    }

    /// `ingest --corpus`: adds each file (or `sourceRange` of the one file) as segments, cut by
    /// `segmentTokens` (`planSegments`); `onSegment` receives each as it is added. With `index`, the
    /// manifest and index are rebuilt afterwards (`index(for:)`) and the manifest returned.
    public func ingest(files: [String], sourceRange: Range<Int>?, segmentTokens: Int?, pipeline: DocumentPipeline,
                       parameters: LongHeadsParameters, precision: KVPrecision, chat: Bool, index: Bool,
                       progress: @escaping (IngestProgress) -> Void, onSegment: (IngestedSegment) throws -> Void) throws -> Manifest? {
        for file in files {
            let ranges = try sourceRange.map { [$0] } ?? Self.planSegments(path: file, segmentTokens: segmentTokens, tokenizer: pipeline.tokenizer)
            for range in ranges {
                let t0 = ContinuousClock().now
                let (r, outcome) = try add(source: file, range: range, pipeline: pipeline, parameters: parameters,
                                           precision: precision, chat: chat, progress: progress)
                try onSegment(IngestedSegment(record: r, outcome: outcome, seconds: (ContinuousClock().now - t0).seconds))
            }
        }
        return index ? try self.index(model: pipeline.model, tokenizer: pipeline.tokenizer) : nil
    }

    /// Rebuilds the manifest and index (`index(opening:vocabularySize:)`) for `model`: the opening of a
    /// chat user turn is left out of the index, as `ingest` writes it before every chat segment.
    public func index(model: LlamaModel, tokenizer: Tokenizer) throws -> Manifest {
        try index(opening: ChatTemplate.userTurnOpening(tokenizer: tokenizer).count, vocabularySize: model.config.vocabSize)
    }

    /// `corpus index`: rebuilds the manifest and index for `model` and checks that the segments were made
    /// by it (`CorpusError.mismatch` otherwise); returns the line it prints: segments, tokens, and the
    /// index's chunks, terms and postings.
    public func indexReport(model: LlamaModel, tokenizer: Tokenizer) throws -> String {
        let m = try index(model: model, tokenizer: tokenizer)
        guard m.model == Corpus.hex(modelFingerprint(model.file)) else {
            throw CorpusError.mismatch(path: manifestPath, reason: "the segments were made by another model than --model")
        }
        let idx = try CorpusIndex(path: indexPath)
        return try jsonLine([("segments", m.segments.count), ("tokens", m.segments.reduce(0) { $0 + $1.tokens }),
                             ("chunks", idx.chunkCount), ("terms", idx.termCount), ("postings", idx.postingCount)])
    }
}

extension SegmentRecord {
    /// The line `corpus list` prints: segment, source, start, end, tokens, chunks, kv.
    public func listLine() throws -> String {
        try jsonLine([("segment", id), ("source", source), ("start", start), ("end", end), ("tokens", tokens), ("chunks", chunks), ("kv", kv)])
    }
}

extension CorpusSource {
    /// As a JSON object: file, start, end, segment, chunk, score (3 decimals).
    public var json: RawJSON {
        RawJSON(text: (try? jsonLine([("file", file), ("start", start), ("end", end), ("segment", segment), ("chunk", chunk),
                                      ("score", (score * 1000).rounded() / 1000)])) ?? "{}")
    }
}

/// A question answered across a corpus (`CorpusReader.ask`).
public struct CorpusAnswer: Sendable {
    /// The answer of each opened segment, the first being the one printed.
    public var answers: [SegmentAnswer]
    /// The best chunks as citations.
    public var sources: [CorpusSource]
    /// Wall seconds of ranking and answering.
    public var seconds: Double

    /// The `ask --corpus --questions` line of question `id`: id, answer, seconds, segment, sources, and
    /// with several segments opened, each one's answer.
    public func jsonLine(id: Any) throws -> String {
        var fields: [(String, Any)] = [("id", id), ("answer", answers[0].text.trimmingCharacters(in: .whitespacesAndNewlines)),
                                       ("seconds", (seconds * 1000).rounded() / 1000),
                                       ("segment", answers[0].segment.id), ("sources", sources.map(\.json))]
        if answers.count > 1 {
            fields.append(("answers", answers.map { a in
                RawJSON(text: (try? Pipeline.jsonLine([("segment", a.segment.id), ("source", a.segment.source), ("start", a.segment.start),
                                                       ("end", a.segment.end),
                                                       ("answer", a.text.trimmingCharacters(in: .whitespacesAndNewlines))])) ?? "{}")
            }))
        }
        return try Pipeline.jsonLine(fields)
    }
}

extension CorpusReader {
    /// `ask --corpus`: ranks `question` against the corpus index, opens the (at most `segments`)
    /// segments holding its best chunks one after the other and answers from each (`answer`);
    /// `onText` receives the first segment's answer as it is generated. Cites the `sources` best chunks.
    public func ask(_ question: String, segments: Int, sources: Int, raw: Bool, maxTokens: Int, policy: SelectionPolicy?,
                    onText: (String) throws -> Void = { _ in }) throws -> CorpusAnswer {
        let clock = ContinuousClock(), t0 = clock.now
        let hits = try rank(question, limit: max(sources, segments, 1) * 4)
        var answers = [SegmentAnswer]()
        for (k, s) in self.segments(for: hits, limit: segments).enumerated() {
            answers.append(try answer(question, segment: s, hits: hits, raw: raw, maxTokens: maxTokens, policy: policy) { piece in
                if k == 0 { try onText(piece) }
            })
        }
        return CorpusAnswer(answers: answers, sources: self.sources(Array(hits.prefix(sources))), seconds: (clock.now - t0).seconds)
    }

    /// `summarize --corpus`, first part: each segment's store asked `options.instruction` in manifest
    /// order, one segment open at a time; `onSegment` receives each segment and its summary on one line.
    /// Returns the summaries.
    public func summarizeSegments(_ options: SummaryOptions, onSegment: (SegmentRecord, String) throws -> Void) throws -> [String] {
        var parts = [String]()
        for r in manifest.segments {
            let (session, logits) = try pipeline.open(store: corpus.storePath(r.id), modelFile: pipeline.model.file,
                                                      then: pipeline.questionTokens(options.instruction, chat: r.chat, raw: false))
            var text = ""
            _ = try pipeline.answer(session: session, first: logits, maxTokens: options.maxTokens, sampling: options.sampling) { text += $0 }
            let line = text.split(whereSeparator: \.isNewline).joined(separator: " ").trimmingCharacters(in: .whitespaces)
            try onSegment(r, line)
            parts.append(line)
        }
        return parts
    }

    /// `summarize --corpus`, second part: the segments' summaries, as one chat document, asked
    /// `options.instruction` (plain attention when it fits, else through a temporary store).
    public func summarizeSummaries(_ parts: [String], options: SummaryOptions, temporaryStore: TemporaryStoreProvider,
                                   onText: (String) throws -> Void) throws {
        let doc = pipeline.documentTokens(parts.joined(separator: "\n\n"), chat: true).ids
        _ = try pipeline.generate(prompt: doc + pipeline.questionTokens(options.instruction, chat: true, raw: false), options: options,
                                  temporaryStore: temporaryStore, onText: onText)
    }
}
