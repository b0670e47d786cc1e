import ArgumentParser
import Foundation
import LongHeads
import Pipeline

/// `longheads filter`: grep by meaning. Passes the records of stdin for which the model answers a yes/no
/// question with yes, byte for byte, in order, as soon as each is decided.
struct Filter: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pass the records of standard input for which the model answers QUESTION with yes.",
        discussion: """
            Records are lines (default), paragraphs (--paragraphs: separated by blank lines), NUL-terminated \
            (-z), or JSON lines whose string field NAME is asked about (--field NAME). A record passes when \
            P(yes) ≥ --threshold, where P(yes) is the model's next-token probability of "yes" against "no" \
            after a plain-text prompt: four generic yes/no examples, the record, the question. A small model \
            may never reach 0.5: choose --threshold from --score on a labelled sample (Samples/README.md). \
            Passing records are written byte for byte (terminator included), in order, each as soon as it is \
            decided; standard input is read as it arrives. Short records that arrive together are scored in one \
            forward pass (up to 512 tokens; the same scores as one at a time), run before any read that would \
            wait. Blank records are never asked and count as "no". \
            A record longer than the attention length runs through LongHeads (a temporary store), where the \
            question retrieves the record's chunk that shares its rare words, as in `ask`. Empty \
            input: a message on stderr, exit 0.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @Argument(help: "A yes/no question about each record.") var question: String
    @Flag(name: .long, help: "Records are paragraphs separated by blank lines.") var paragraphs = false
    @Flag(name: [.customShort("z"), .customLong("null-data")], help: "Records are terminated by NUL bytes.") var nul = false
    @Option(name: .long, help: "Records are JSON lines; ask about this string field (the whole line passes through).")
    var field: String?
    @Flag(name: [.customShort("v"), .customLong("invert-match")], help: "Pass the records answered no.") var invert = false
    @Flag(name: .long, help: "Prefix each passing record with P(yes) and a tab (JSON lines: add a \"score\" field).")
    var score = false
    @Option(name: .long, help: "P(yes) at or above which a record is a yes.") var threshold: Double = 0.5
    @Option(name: .long, help: "Memory budget of the KV page cache for long records, MiB.") var memoryBudget: Int = 512
    @Option(name: .long, help: "Most bytes of one record (terminator included); a longer one ends the run with exit 65, naming it.")
    var maxRecordBytes: Int = RecordSplitter.defaultMaxRecordBytes
    @Flag(name: .long, help: "Print counts and timing to stderr at the end.") var verbose = false
    @Option(name: .long, help: ArgumentHelp("Prompt template with {text} once and {question} anywhere (\\n: newline).", visibility: .hidden))
    var template: String = YesNoClassifier.defaultTemplate
    @Flag(name: .long, help: ArgumentHelp("Use the template as a chat user turn, not as plain text.", visibility: .hidden))
    var chat = false
    @Option(name: .long, help: ArgumentHelp("Most tokens of short records packed into one forward pass (0: each record alone).",
                                            visibility: .hidden))
    var batchTokens: Int = Filter.defaultBatchTokens

    /// Tokens packed into one forward pass by default: records of ~50 tokens, ten or so per pass.
    static let defaultBatchTokens = 512

    func validate() throws {
        if [paragraphs, nul, field != nil].filter({ $0 }).count > 1 {
            throw ValidationError("give at most one of --paragraphs, -z, --field")
        }
        if let field, field.isEmpty { throw ValidationError("--field needs a name") }
        try checkOption("memory-budget", memoryBudget, Limits.memoryBudgetMiB)
        guard threshold.isFinite else { throw ValidationError("--threshold must be a number") }
        try checkOption("max-record-bytes", maxRecordBytes, 1...(1 << 34))
        try checkOption("batch-tokens", batchTokens, 0...4096)
    }

    func run() throws {
        try guarded {
            guard !question.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw InputError(description: "the question is empty")
            }
            // The model's batch holds the packed records (and at least 256 tokens, for the prompt and long records).
            let (model, tokenizer) = try modelOptions.load(maxBatch: max(256, batchTokens))
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: memoryBudget << 20)
            // Long records are read through LongHeads via stores under one directory, removed at exit (Ctrl-C too).
            try withTemporaryStore("filter") { tmp in
                try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
                let classifier: YesNoClassifier
                do {
                    classifier = try YesNoClassifier(pipeline: pipeline, question: question, template: template, chat: chat,
                                                     temporaryDirectory: tmp)
                } catch let e as ClassifierError {
                    throw InputError(description: e.description)
                }
                try filterRecords(classifier)
            }
        }
    }

    /// Reads stdin as it arrives and writes the passing records (`RecordFilter`).
    func filterRecords(_ classifier: YesNoClassifier) throws {
        let splitter = RecordSplitter(mode: paragraphs ? .paragraphs : nul ? .nul : .lines, maxRecordBytes: maxRecordBytes)
        let filter = RecordFilter(classifier: classifier, splitter: splitter, threshold: threshold, invert: invert, batchTokens: batchTokens,
                                  text: { try $0.text(field: field, source: "standard input") }) { r, d in
            if d.passes { try Output.write(score ? r.scored(d.probability, json: field != nil) : r.bytes) }
        }
        let clock = ContinuousClock()
        let t0 = clock.now
        // A record is written as soon as its batch is scored (`RecordFilter.run`).
        try filter.run(fileDescriptor: STDIN_FILENO, name: "standard input")
        if filter.records == 0 { log("longheads: filter: no records on standard input") }
        if verbose {
            let s = (clock.now - t0).seconds
            log(String(format: "filter: %d records, %d passed, %.1f s (%.1f records/s); packed: %d tokens in %d passes",
                       filter.records, filter.passed, s, Double(filter.records) / max(s, 1e-9), filter.packedTokens, filter.passes))
        }
    }
}
