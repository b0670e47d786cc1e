import ArgumentParser
import Corpus
import Evaluation
import Foundation
import Generation
import KVStore
import LongHeads
import Pipeline
import Tokenization

/// Runs `body`, mapping corpus errors to their documented exit codes (then as `guarded`).
func corpusGuarded(_ body: () throws -> Void) throws {
    try guarded {
        do { try body() } catch let e as CorpusError { throw InputError(description: e.description, code: e.exitCode) }
    }
}

/// Parses `--source-range START:END` (bytes, END exclusive).
func parseSourceRange(_ s: String) throws -> Range<Int> {
    let parts = s.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), a >= 0, b > a, b <= 1 << 50 else {
        throw ValidationError("--source-range must be START:END, byte offsets with 0 ≤ START < END (got '\(s)')")
    }
    return a..<b
}

/// The segments `ingest --corpus` and `corpus plan` cut `path` into (`Corpus.plan`).
func planSegments(path: String, segmentTokens: Int?, tokenizer: Tokenizer?) throws -> [Range<Int>] {
    let size = try Corpus.fileSize(path)
    guard size > 0 else { throw PipelineError.emptySource(name: path) }
    guard let segmentTokens, let tokenizer else { return [0..<size] }
    let bytes = try Corpus.readRange(path: path, range: 0..<size)
    return bytes.withUnsafeBytes { b in
        Corpus.plan(b, segmentTokens: segmentTokens, count: { tokenizer.encode(String(decoding: $0, as: UTF8.self)).count })
    }
}

extension Ingest {
    /// `ingest --corpus DIR FILE…`: each file (or `--source-range` of one), cut into segments by
    /// `--segment-tokens`, added as segments; then the manifest and index are rebuilt (unless `--no-index`).
    /// One JSON line per segment on stdout.
    func runCorpus(_ dir: String, files: [String]) throws {
        try corpusGuarded {
            let corpus = Corpus(path: dir)
            let (model, tokenizer) = try modelOptions.load(maxBatch: lh.chunk)
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: lh.memoryBudget << 20)
            let reporter = ProgressReporter(mode: progress)
            for file in files {
                let ranges = try sourceRange.map { [try parseSourceRange($0)] }
                    ?? planSegments(path: file, segmentTokens: segmentTokens, tokenizer: tokenizer)
                for range in ranges {
                    let t0 = ContinuousClock().now
                    let (r, outcome) = try corpus.add(source: file, range: range, pipeline: pipeline, parameters: lh.parameters,
                                                      precision: lh.kvPrecision, chat: !raw, progress: reporter.report)
                    try Output.line(try jsonLine([("segment", r.id), ("source", r.source), ("start", r.start), ("end", r.end),
                                                  ("tokens", r.tokens), ("outcome", outcome.rawValue),
                                                  ("seconds", ((ContinuousClock().now - t0).seconds * 1000).rounded() / 1000)]))
                }
            }
            if !noIndex {
                let m = try corpus.index(opening: ChatTemplate.userTurnOpening(tokenizer: tokenizer).count, vocabularySize: model.config.vocabSize)
                log("ingest: corpus \(dir): \(m.segments.count) segments indexed")
            }
        }
    }
}

/// `longheads corpus`: plan segments, rebuild the manifest and index, list segments.
struct CorpusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "corpus",
        abstract: "Corpora of segment stores: plan segments, index, list (Docs/CORPUS.md).",
        subcommands: [CorpusPlan.self, CorpusIndexCommand.self, CorpusList.self])
}

/// `longheads corpus plan FILE --segment-tokens N`: the byte ranges `ingest --corpus` would cut FILE into.
struct CorpusPlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Print the segments (byte ranges, cut after paragraphs) of FILE as JSON lines: {\"source\", \"start\", \"end\"}.",
        discussion: "Each line can be ingested on its own (a Spark task): longheads ingest --corpus DIR --source-range START:END FILE.")
    @OptionGroup var modelOptions: ModelOptions
    @Argument(help: "The documents.") var files: [String]
    @Option(name: .long, help: "About this many tokens per segment (default: one segment per file).") var segmentTokens: Int?

    func validate() throws {
        if let segmentTokens { try checkOption("segment-tokens", segmentTokens, 16...(1 << 30)) }
        guard !files.isEmpty else { throw ValidationError("give at least one FILE") }
    }

    func run() throws {
        try corpusGuarded {
            let tokenizer = segmentTokens == nil ? nil : try modelOptions.load(maxBatch: 16).1
            for f in files {
                for r in try planSegments(path: f, segmentTokens: segmentTokens, tokenizer: tokenizer) {
                    try Output.line(try jsonLine([("source", f), ("start", r.lowerBound), ("end", r.upperBound)]))
                }
            }
        }
    }
}

/// `longheads corpus index DIR`: merge the segment records into the manifest and the index.
struct CorpusIndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Merge every committed segment of DIR into its manifest and BM25 index (after ingest --corpus --no-index tasks).")
    @OptionGroup var modelOptions: ModelOptions
    @Argument(help: "The corpus directory.") var dir: String

    func run() throws {
        try corpusGuarded {
            let (model, tokenizer) = try modelOptions.load(maxBatch: 16)
            let corpus = Corpus(path: dir)
            let m = try corpus.index(opening: ChatTemplate.userTurnOpening(tokenizer: tokenizer).count, vocabularySize: model.config.vocabSize)
            guard m.model == Corpus.hex(modelFingerprint(model.file)) else {
                throw CorpusError.mismatch(path: corpus.manifestPath, reason: "the segments were made by another model than --model")
            }
            let idx = try CorpusIndex(path: corpus.indexPath)
            try Output.line(try jsonLine([("segments", m.segments.count), ("tokens", m.segments.reduce(0) { $0 + $1.tokens }),
                                          ("chunks", idx.chunkCount), ("terms", idx.termCount), ("postings", idx.postingCount)]))
        }
    }
}

/// `longheads corpus list DIR`: the manifest, one JSON line per segment.
struct CorpusList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Print DIR's manifest: one JSON line per segment.")
    @Argument(help: "The corpus directory.") var dir: String

    func run() throws {
        try corpusGuarded {
            let (m, _) = try Corpus(path: dir).open()
            for r in m.segments {
                try Output.line(try jsonLine([("segment", r.id), ("source", r.source), ("start", r.start), ("end", r.end),
                                              ("tokens", r.tokens), ("chunks", r.chunks), ("kv", r.kv)]))
            }
        }
    }
}

extension CorpusSource {
    /// As a JSON object: file, start, end, segment, chunk, score.
    var json: RawJSON {
        RawJSON(text: (try? jsonLine([("file", file), ("start", start), ("end", end), ("segment", segment), ("chunk", chunk),
                                      ("score", (score * 1000).rounded() / 1000)])) ?? "{}")
    }
}

extension Ask {
    /// `ask --corpus DIR (QUESTION | --questions Q.jsonl)`: each question is ranked against the corpus index;
    /// the `--segments` segments holding its best chunks are opened one after the other and answered from.
    func answerCorpus(_ dir: String, batch: [Question]?, single: String?) throws {
        try corpusGuarded {
            let (model, tokenizer) = try modelOptions.load(maxBatch: 256)
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: memoryBudget << 20)
            let reader = try CorpusReader(corpus: Corpus(path: dir), pipeline: pipeline)
            let selectionPolicy = policy.flatMap(SelectionPolicy.init(rawValue:))
            let clock = ContinuousClock()
            for q in batch ?? [Question(id: 1, text: single ?? "", line: 0)] {
                let t0 = clock.now
                let hits = try reader.rank(q.text, limit: max(sources, segments, 1) * 4)
                let open = reader.segments(for: hits, limit: segments)
                var answers = [SegmentAnswer]()
                for (k, s) in open.enumerated() {
                    answers.append(try reader.answer(q.text, segment: s, hits: hits, raw: raw, maxTokens: maxTokens, policy: selectionPolicy) { piece in
                        if batch == nil && k == 0 { try Output.write(piece) }
                    })
                }
                let cited = reader.sources(Array(hits.prefix(sources)))
                let seconds = (clock.now - t0).seconds
                if batch == nil {
                    try Output.write("\n")
                    if verbose {
                        log("sources: " + (try jsonLine([("sources", cited.map(\.json))])))
                        log(String(format: "ask: %d segments opened of %d, %.3f s, peak RSS %d MiB", open.count, reader.manifest.segments.count,
                                   seconds, peakRSSBytes() >> 20))
                    }
                } else {
                    var fields: [(String, Any)] = [("id", q.id), ("answer", answers[0].text.trimmingCharacters(in: .whitespacesAndNewlines)),
                                                   ("seconds", (seconds * 1000).rounded() / 1000),
                                                   ("segment", answers[0].segment.id), ("sources", cited.map(\.json))]
                    if answers.count > 1 {
                        fields.append(("answers", answers.map { a in
                            RawJSON(text: (try? jsonLine([("segment", a.segment.id), ("source", a.segment.source), ("start", a.segment.start),
                                                          ("end", a.segment.end),
                                                          ("answer", a.text.trimmingCharacters(in: .whitespacesAndNewlines))])) ?? "{}")
                        }))
                    }
                    try Output.line(try jsonLine(fields))
                }
            }
        }
    }
}

extension Summarize {
    /// `summarize --corpus DIR`: each segment's store is asked `--instruction` in manifest order (one line
    /// `SOURCE START:END: summary` each, one segment open at a time), then the summaries, as one document,
    /// are summarized (`Overall: …`).
    func summarizeCorpus(_ dir: String) throws {
        try corpusGuarded {
            let (model, tokenizer) = try modelOptions.load(maxBatch: max(256, chunk))
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: memoryBudget << 20)
            let reader = try CorpusReader(corpus: Corpus(path: dir), pipeline: pipeline)
            var parts = [String]()
            for r in reader.manifest.segments {
                let (session, logits) = try pipeline.open(store: reader.corpus.storePath(r.id), modelFile: model.file,
                                                          then: pipeline.questionTokens(instruction, chat: r.chat, raw: false))
                var text = ""
                _ = try pipeline.answer(session: session, first: logits, maxTokens: maxTokens, sampling: options.sampling) { text += $0 }
                let line = text.split(whereSeparator: \.isNewline).joined(separator: " ").trimmingCharacters(in: .whitespaces)
                try Output.line("\(r.source) \(r.start):\(r.end): \(line)")
                parts.append(line)
            }
            try Output.write("Overall: ")
            let doc = pipeline.documentTokens(parts.joined(separator: "\n\n"), chat: true).ids
            _ = try pipeline.generate(prompt: doc + pipeline.questionTokens(instruction, chat: true, raw: false), options: options,
                                      temporaryStore: { label, body in try withTemporaryStore(label, body) }) {
                try Output.write($0.replacingOccurrences(of: "\n", with: " "))
            }
            try Output.write("\n")
        }
    }
}
