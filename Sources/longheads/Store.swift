import ArgumentParser
import Evaluation
import Dispatch
import Foundation
import Generation
import KVStore
import LongHeads
import Pipeline

/// LongHeads and store options shared by ingest and generate.
struct LongHeadsOptions: ParsableArguments {
    @Option(name: .long, help: "LongHeads chunk size (tokens).") var chunk: Int = LongHeadsParameters.default.chunkSize
    @Option(name: .long, help: "LongHeads attention length: tokens one head reads per query.") var attention: Int = LongHeadsParameters.default.attentionLength
    @Option(name: .long, help: "Plain causal attention below this many tokens (default: the attention length).") var selectiveFrom: Int?
    @Option(name: .long, help: "How heads rank chunks: quest-lexical (default: quest, plus the chunk a question retrieves shared by all heads), quest, quest-sub, quest-exact (experimental) or paper (Docs/SELECTION.md).")
    var policy: String = SelectionPolicy.default.rawValue
    @Option(name: [.customLong("kv"), .customLong("precision")],
            help: "KV format of a new store: f16, q8 or q4 (KIVI 8/4-bit; default \(KVPrecision.default)). --precision is an alias.")
    var precision: String = KVPrecision.default.description
    @Option(name: .long, help: "Memory budget of the KV page cache, MiB.") var memoryBudget: Int = 512

    var parameters: LongHeadsParameters {
        LongHeadsParameters(chunkSize: chunk, attentionLength: attention, beginSelective: selectiveFrom,
                            policy: SelectionPolicy(rawValue: policy) ?? .default)
    }

    var kvPrecision: KVPrecision { KVPrecision(name: precision) ?? .default }

    func validate() throws {
        try checkOption("chunk", chunk, Limits.chunk)
        try checkOption("attention", attention, Limits.attention)
        if let selectiveFrom { try checkOption("selective-from", selectiveFrom, Limits.attention) }
        if let p = parameters.problem { throw ValidationError(p) }
        guard SelectionPolicy(rawValue: policy) != nil else {
            throw ValidationError("--policy must be one of \(SelectionPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard KVPrecision(name: precision) != nil else { throw ValidationError("--kv must be f16, q8 or q4, not '\(precision)'") }
        try checkOption("memory-budget", memoryBudget, Limits.memoryBudgetMiB)
    }
}

/// `longheads ingest`: read a document once into a store, streaming; `--resume` continues an interrupted one.
struct Ingest: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a document (FILE or - for stdin) into a LongHeads store: KV pages on disk, LZ4-compressed.",
        discussion: """
            The document is read and tokenized in blocks, so memory does not grow with it. Chunks are committed \
            every 16 chunks or 2 seconds: after Ctrl-C (which commits what is done and exits 130), kill -9 or a \
            crash, `longheads ingest --resume --store DIR` with the same document continues from the last \
            committed chunk (the store's LongHeads options are used; the committed chunks are checked against \
            the document, exit 65 if it changed). A store whose ingest did not finish cannot be asked.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var lh: LongHeadsOptions
    @Argument(help: "The document ('-' reads stdin).") var input: String
    @Argument(help: "With --corpus: more documents.") var moreInputs: [String] = []
    @Option(name: .long, help: "Directory of the store to create (or to continue, with --resume).") var store: String = ""
    @Option(name: .long, help: "Add the documents as segments of the corpus DIR (Docs/CORPUS.md) instead of one --store.")
    var corpus: String?
    @Option(name: .long, help: "With --corpus: cut each document after paragraphs into segments of about N tokens.")
    var segmentTokens: Int?
    @Option(name: .long, help: "With --corpus: ingest only bytes START:END of the one FILE (a segment from `corpus plan`).")
    var sourceRange: String?
    @Flag(name: .long, help: "With --corpus: do not rebuild the manifest and index (run `corpus index DIR` once all tasks are done).")
    var noIndex = false
    @Flag(name: .long, help: "Ingest the document as a plain text continuation instead of the opening of a chat user turn.")
    var raw = false
    @Flag(name: .long, help: "Continue an interrupted ingest of the same document into --store (a new store if there is none).")
    var resume = false
    @Option(name: .long, help: "Progress on stderr: auto (when stderr is a terminal), tty, json (one object per line), none.")
    var progress: String = "auto"
    @Option(name: .long, help: .hidden) var readBlock: Int = DocumentPipeline.defaultBlockBytes

    func validate() throws {
        guard ["auto", "tty", "json", "none"].contains(progress) else { throw ValidationError("--progress must be auto, tty, json or none") }
        try checkOption("read-block", readBlock, 1...(1 << 30))
        if let corpus {
            guard store.isEmpty, !resume else { throw ValidationError("--corpus takes no --store or --resume (an interrupted segment resumes by itself)") }
            guard !corpus.isEmpty else { throw ValidationError("--corpus needs a directory") }
            guard !(([input] + moreInputs).contains("-")) else { throw ValidationError("--corpus reads files, not standard input") }
            if let segmentTokens { try checkOption("segment-tokens", segmentTokens, 16...(1 << 30)) }
            if let sourceRange {
                _ = try parseSourceRange(sourceRange)
                guard moreInputs.isEmpty, segmentTokens == nil else { throw ValidationError("--source-range takes one FILE and no --segment-tokens") }
            }
        } else {
            guard !store.isEmpty else { throw ValidationError("give --store DIR (or --corpus DIR)") }
            guard moreInputs.isEmpty, segmentTokens == nil, sourceRange == nil, !noIndex else {
                throw ValidationError("several documents, --segment-tokens, --source-range and --no-index need --corpus DIR")
            }
        }
    }

    func run() throws {
        if let corpus { return try runCorpus(corpus, files: [input] + moreInputs) }
        let stop = StopRequest { log("\nlongheads: stopping after the current chunk (again to quit at once)") }
        defer { stop.cancel() }
        do {
            try guarded {
                let source = try openSource(input)
                let (model, tokenizer) = try modelOptions.load(maxBatch: lh.chunk)
                let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: lh.memoryBudget << 20)
                let reporter = ProgressReporter(mode: progress)
                let clock = ContinuousClock()
                let t0 = clock.now
                let summary = try pipeline.ingest(source: source, to: store, resume: resume, modelFile: model.file, parameters: lh.parameters,
                                                  precision: lh.kvPrecision, chat: !raw, blockBytes: readBlock,
                                                  progress: reporter.report, shouldStop: stop.requested)
                try Output.line(try summary.jsonLine(store: store, seconds: (clock.now - t0).seconds, peakRSSBytes: peakRSSBytes()))
            }
        } catch let e as ExitCode where e.rawValue == Exit.dataError && stop.requested() {
            // The stop request was honoured: the message (logged by `guarded`) says how to resume.
            throw ExitCode(128 + stop.signalNumber)
        }
    }
}

/// Ingest progress on stderr (`IngestProgressLog`): `auto` shows a terminal line when stderr is a terminal.
final class ProgressReporter {
    let progressLog: IngestProgressLog

    init(mode: String) {
        let tty = mode == "tty" || (mode == "auto" && isatty(2) != 0)
        progressLog = IngestProgressLog(mode: tty ? .tty : mode == "json" ? .json : .none)
    }

    func report(_ p: IngestProgress) {
        if let text = progressLog.text(for: p) { writeStandardError(text) }
    }
}
