import ArgumentParser
import Evaluation
import Foundation
import Generation
import KVStore
import LongHeads
import Model
import Pipeline
import Tokenization

/// `longheads summarize`: a summary of a document, written as it is generated.
struct Summarize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarize a document (FILE or - for stdin); the summary is written to stdout as it is generated.",
        discussion: """
            A document whose prompt fits the attention length is summarized with plain attention; a longer one \
            is read whole through LongHeads: ingested into --store DIR (kept, so that `ask --store DIR` can \
            follow) or into a temporary store (removed afterwards), then asked for a summary (--instruction). \
            Without FILE, --store DIR summarizes an ingested document again (no ingest; try another \
            --instruction). --sections writes one line per section, "TITLE: summary", then "Overall: summary" of the whole \
            document. Sections start at Markdown headings (lines starting with #); a document without \
            headings is cut into parts of --section-tokens tokens.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @Argument(help: "The document ('-' reads stdin); omit it to summarize the document of an existing --store.") var input: String?
    @Option(name: .long, help: "Most tokens per summary.") var maxTokens: Int = 160
    @Option(name: .long, help: "Repetition penalty over the last 64 summary tokens (1 = off); greedy decoding of a small model loops without it.")
    var repeatPenalty: Float = 1.3
    @Option(name: .long, help: "With FILE: ingest a long document into this new store and keep it (default: a temporary store). Without FILE: summarize this existing store.")
    var store: String?
    @Flag(name: .long, help: "One summary line per section, then an overall one.") var sections = false
    @Option(name: .long, help: "Summarize a corpus (Docs/CORPUS.md): one line per segment, then one of those summaries.")
    var corpus: String?
    @Option(name: .long, help: "Without headings, --sections cuts the document into parts of this many tokens.")
    var sectionTokens: Int = 768
    @Option(name: .long, help: "LongHeads chunk size (tokens).") var chunk: Int = LongHeadsParameters.default.chunkSize
    @Option(name: .long, help: "LongHeads attention length; shorter prompts use plain attention.")
    var attention: Int = LongHeadsParameters.default.attentionLength
    @Option(name: .long, help: "Memory budget of the KV page cache, MiB.") var memoryBudget: Int = 512
    @Option(name: .long, help: "What to ask after the document.") var instruction: String = SummaryOptions.defaultInstruction
    @Flag(name: .long, help: "Print timing to stderr.") var verbose = false

    var parameters: LongHeadsParameters { LongHeadsParameters(chunkSize: chunk, attentionLength: attention) }

    var options: SummaryOptions {
        SummaryOptions(instruction: instruction, maxTokens: maxTokens, repeatPenalty: repeatPenalty, parameters: parameters,
                       sectionTokens: sectionTokens)
    }

    func validate() throws {
        try checkOption("max-tokens", maxTokens, Limits.tokens)
        try checkOption("chunk", chunk, Limits.chunk)
        try checkOption("attention", attention, Limits.attention)
        guard repeatPenalty.isFinite, repeatPenalty >= 1 else { throw ValidationError("--repeat-penalty must be ≥ 1") }
        try checkOption("section-tokens", sectionTokens, 16...Limits.tokens.upperBound)
        if let p = parameters.problem { throw ValidationError(p) }
        try checkOption("memory-budget", memoryBudget, Limits.memoryBudgetMiB)
        if corpus != nil {
            guard input == nil, store == nil, !sections else { throw ValidationError("--corpus takes no FILE, --store or --sections") }
            return
        }
        switch (input, store) {
        case (nil, nil): throw ValidationError("give the document (FILE or -), or --store DIR of an ingested one")
        case (nil, _?) where sections: throw ValidationError("--sections needs the document text: give FILE")
        case (_?, let store?) where FileManager.default.fileExists(atPath: store):
            throw ValidationError("--store \(store) exists; give a new directory, or omit FILE to summarize that store")
        default: break
        }
    }

    func run() throws {
        if let corpus { return try summarizeCorpus(corpus) }
        try guarded {
            guard let input else { return try summarizeStore(store!) }
            // --sections needs the text; otherwise the document is streamed (`DocumentPipeline.summarize`).
            let text = sections ? try readText(path: input) : nil
            if let text, !text.contains(where: { !$0.isWhitespace }) { throw PipelineError.blankDocument(name: input == "-" ? "standard input" : input) }
            // Opened before the model is loaded: a directory or a closed stdin is named at once (exit 66).
            let source = sections ? nil : try DocumentSource(path: input)
            let (model, tokenizer) = try modelOptions.load(maxBatch: max(256, chunk))
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: memoryBudget << 20)
            let clock = ContinuousClock()
            let t0 = clock.now
            let shown = IngestProgressLog(mode: verbose ? .brief(label: "summarize: ingest ", interval: 5) : .none)
            let temporary: TemporaryStoreProvider = { label, body in try withTemporaryStore(label, body) }
            if let text {
                var first = true
                _ = try pipeline.summarizeSections(text: text, name: input, options: options, temporaryStore: temporary, onSection: { title in
                    try Output.write((first ? "" : "\n") + title + ": ")
                    first = false
                }, onText: { try Output.write(oneLine($0)) })
            } else if let source {
                let s = try pipeline.summarize(source: source, options: options, store: store, temporaryStore: temporary,
                                               progress: { shown.text(for: $0).map(writeStandardError) }, onText: { try Output.write($0) })
                if verbose && s.reading == .store {
                    log(String(format: "summarize: ingested %d tokens in %.1f s", s.ingestedTokens, s.ingestSeconds))
                }
            }
            try Output.write("\n")
            if verbose { log(String(format: "summarize: %.1f s, peak RSS %d MiB", (clock.now - t0).seconds, peakRSSBytes() >> 20)) }
        }
    }

    /// The document of an existing store, asked for a summary (no ingest).
    func summarizeStore(_ store: String) throws {
        let (model, tokenizer) = try modelOptions.load(maxBatch: max(256, chunk))
        let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: memoryBudget << 20)
        let clock = ContinuousClock()
        let t0 = clock.now
        _ = try DocumentSession(pipeline: pipeline, store: store).summarize(options) { try Output.write($0) }
        try Output.write("\n")
        if verbose { log(String(format: "summarize: %.1f s, peak RSS %d MiB", (clock.now - t0).seconds, peakRSSBytes() >> 20)) }
    }
}

/// Keeps a section's summary on one line.
private func oneLine(_ s: String) -> String {
    s.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
}
