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
            let m = try corpus.ingest(files: files, sourceRange: try sourceRange.map(parseSourceRange), segmentTokens: segmentTokens,
                                      pipeline: pipeline, parameters: lh.parameters, precision: lh.kvPrecision, chat: !raw, index: !noIndex,
                                      progress: reporter.report) { try Output.line(try $0.jsonLine()) }
            if let m { log("ingest: corpus \(dir): \(m.segments.count) segments indexed") }
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
                for r in try Corpus.planSegments(path: f, segmentTokens: segmentTokens, tokenizer: tokenizer) {
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
            try Output.line(try Corpus(path: dir).indexReport(model: model, tokenizer: tokenizer))
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
            for r in m.segments { try Output.line(try r.listLine()) }
        }
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
            for q in batch ?? [Question(id: 1, text: single ?? "", line: 0)] {
                let a = try reader.ask(q.text, segments: segments, sources: sources, raw: raw, maxTokens: maxTokens, policy: selectionPolicy) {
                    if batch == nil { try Output.write($0) }
                }
                if batch == nil {
                    try Output.write("\n")
                    if verbose {
                        log("sources: " + (try jsonLine([("sources", a.sources.map(\.json))])))
                        log(String(format: "ask: %d segments opened of %d, %.3f s, peak RSS %d MiB", a.answers.count, reader.manifest.segments.count,
                                   a.seconds, peakRSSBytes() >> 20))
                    }
                } else {
                    try Output.line(try a.jsonLine(id: q.id))
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
            let parts = try reader.summarizeSegments(options) { r, line in try Output.line("\(r.source) \(r.start):\(r.end): \(line)") }
            try Output.write("Overall: ")
            try reader.summarizeSummaries(parts, options: options, temporaryStore: { label, body in try withTemporaryStore(label, body) }) {
                try Output.write($0.replacingOccurrences(of: "\n", with: " "))
            }
            try Output.write("\n")
        }
    }
}
