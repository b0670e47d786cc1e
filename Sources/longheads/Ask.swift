import ArgumentParser
import Evaluation
import Foundation
import Generation
import KVStore
import LongHeads
import Pipeline

/// `longheads ask`: answer one question or a file of questions about a document, from a store or from a
/// file ingested into a temporary store.
struct Ask: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer questions about a document: from a store (--store), or a FILE ingested into a temporary store.",
        discussion: """
            ask --store DIR QUESTION             prints the answer
            ask FILE QUESTION                    ingests FILE into a temporary store (removed afterwards), answers
            ask --store DIR --questions Q.jsonl  one JSON line per question: id, answer, seconds, sources
            ask FILE --questions Q.jsonl         the same over a temporary store

            Q.jsonl holds one {"id": …, "question": "…"} per line ('-' reads stdin; blank lines are skipped); \
            the whole file is checked before the first question is answered, and a bad line is named. \
            sources are the byte ranges of the document chunks the heads selected most while answering: \
            [{"start": byte, "end": byte, "chunk": index, "share": fraction of the counted selections}]. \
            Chunk 0 and the two most recent chunks, which every head reads, are not counted, so a document \
            shorter than the selective start (default 1024 tokens) has no sources.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "The store to read.") var store: String?
    @Option(name: .long, help: "A corpus (Docs/CORPUS.md): route each question to the segments holding its best chunks.") var corpus: String?
    @Option(name: .long, help: "With --corpus: segments opened per question (each answers; the first's answer is printed).") var segments: Int = 1
    @Option(name: .long, help: "A JSONL file of questions ('-' reads stdin): {\"id\": …, \"question\": \"…\"} per line.")
    var questions: String?
    @Argument(help: ArgumentHelp("QUESTION with --store; FILE QUESTION (or FILE with --questions) without.", valueName: "file-or-question"))
    var inputs: [String] = []
    @Flag(name: .long, help: "Append the question verbatim and let the model continue (no chat turn); with FILE, ingest it as plain text.")
    var raw = false
    @Option(name: .long, help: "Most tokens to generate per answer.") var maxTokens: Int = 64
    @Option(name: .long, help: "Memory budget of the KV page cache, MiB.") var memoryBudget: Int = 512
    @Option(name: .long, help: "Selection policy for the question and answer (default: the one the store was ingested with).")
    var policy: String?
    @Option(name: .long, help: "Citations per answer in --questions output.") var sources: Int = 3
    @Option(name: .long, help: "With FILE: LongHeads chunk size (tokens).") var chunk: Int = LongHeadsParameters.default.chunkSize
    @Option(name: .long, help: "With FILE: LongHeads attention length.") var attention: Int = LongHeadsParameters.default.attentionLength
    @Flag(name: .long, help: "Print timing, cache figures and (single question) sources to stderr.") var verbose = false
    @Option(name: .long, help: ArgumentHelp("Diagnosis: append per question the selection counts per layer and chunk (JSON lines).", visibility: .hidden))
    var tallyOut: String?

    func validate() throws {
        if let policy, SelectionPolicy(rawValue: policy) == nil {
            throw ValidationError("--policy must be one of \(SelectionPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard store == nil || corpus == nil else { throw ValidationError("give --store or --corpus, not both") }
        try checkOption("segments", segments, 1...64)
        let expected = (store == nil && corpus == nil ? 1 : 0) + (questions == nil ? 1 : 0)
        guard inputs.count == expected else {
            if corpus != nil { throw ValidationError("give one question: ask --corpus DIR QUESTION (or --questions Q.jsonl and no other argument)") }
            switch (store != nil, questions != nil) {
            case (true, true): throw ValidationError("with --store and --questions, give no other argument")
            case (true, false): throw ValidationError("give the question: ask --store DIR QUESTION")
            case (false, true): throw ValidationError("give the document: ask FILE --questions Q.jsonl (or --store DIR)")
            case (false, false): throw ValidationError("give a document and a question: ask FILE QUESTION, or ask --store DIR QUESTION")
            }
        }
        if store == nil && questions == "-" && inputs.first == "-" {
            throw ValidationError("the document and the questions cannot both be standard input")
        }
        try checkOption("max-tokens", maxTokens, Limits.tokens)
        try checkOption("sources", sources, 0...10_000)
        try checkOption("chunk", chunk, Limits.chunk)
        try checkOption("attention", attention, Limits.attention)
        try checkOption("memory-budget", memoryBudget, Limits.memoryBudgetMiB)
        if store == nil, let p = LongHeadsParameters(chunkSize: chunk, attentionLength: attention).problem { throw ValidationError(p) }
    }

    func run() throws {
        try guarded {
            // Every question is checked before the model is loaded: a bad line costs nothing.
            let batch = try questions.map { try loadQuestions(path: $0) }
            let single = questions == nil ? inputs.last : nil
            if let single, single.isEmpty { throw GenerationError.emptyPrompt }
            if let corpus { return try answerCorpus(corpus, batch: batch, single: single) }
            if let store {
                let (model, tokenizer) = try modelOptions.load(maxBatch: 256)
                let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: memoryBudget << 20)
                try answer(store: store, pipeline: pipeline, batch: batch, single: single)
                return
            }
            // Streamed: the document is read in blocks, never whole (a huge file costs no more memory than a small one).
            let source = try DocumentSource(path: inputs[0])
            let (model, tokenizer) = try modelOptions.load(maxBatch: max(256, chunk))
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: memoryBudget << 20)
            try withTemporaryStore("ask") { dir in
                let clock = ContinuousClock()
                let t0 = clock.now
                let parameters = LongHeadsParameters(chunkSize: chunk, attentionLength: attention,
                                                     policy: policy.flatMap(SelectionPolicy.init(rawValue:)) ?? .default)
                let shown = IngestProgressLog(mode: verbose ? .brief(label: "ingest: ", interval: 2) : .none)
                let info = try pipeline.ingest(source: source, to: dir, modelFile: model.file, parameters: parameters,
                                               precision: .default, chat: !raw, progress: { shown.text(for: $0).map(writeStandardError) }).info
                if verbose || batch != nil {
                    log(String(format: "ask: ingested %d tokens into a temporary store in %.1f s", info.tokens, (clock.now - t0).seconds))
                }
                try answer(store: dir, pipeline: pipeline, batch: batch, single: single)
            }
        }
    }

    /// Answers the single question (plain text) or every question of the batch (JSON lines) from `store`,
    /// opened once (`DocumentSession`): every question starts from the committed document.
    func answer(store: String, pipeline: DocumentPipeline, batch: [Question]?, single: String?) throws {
        let session = try DocumentSession(pipeline: pipeline, store: store)
        let selectionPolicy = policy.flatMap(SelectionPolicy.init(rawValue:))
        if let hint = session.retrievalHint(policy: selectionPolicy) { log("ask: " + hint) }
        let cite = sources > 0 && (batch != nil || verbose)
        let options = AskOptions(maxTokens: maxTokens, raw: raw, policy: selectionPolicy, sources: cite ? sources : 0)
        if verbose && cite {
            let clock = ContinuousClock(), tb = clock.now
            _ = try session.citationBaseline(raw: raw, policy: selectionPolicy)
            log(String(format: "ask: citation baseline (%d probes) in %.3f s", DocumentPipeline.citationProbes.count, (clock.now - tb).seconds))
        }
        for q in batch ?? [Question(id: 1, text: single ?? "", line: 0)] {
            let before = session.archive.cache.statistics
            // Appended after the answer is printed (a tally that cannot be written fails after the answer).
            var counted: (question: SourceTally, answer: SourceTally)?
            let a = try session.ask(q.text, options: options, tallies: tallyOut == nil ? nil : { counted = ($0, $1) }) { piece in
                if batch == nil { try Output.write(piece) }
            }
            if batch == nil {
                try Output.write("\n")
                if cite { log("sources: " + (try jsonLine([("sources", a.sources.map(\.json))]))) }
            } else {
                try Output.line(try a.jsonLine(id: q.id))
            }
            // Diagnosis (`--tally-out`): one JSON line of per-layer selection counts of the question and of the answer.
            if let tallyOut, let counted {
                let line = try SourceTally.diagnosisLine(id: q.id, question: counted.question, answer: counted.answer, reader: session.reader)
                do { try appendLine(line, toFile: tallyOut) } catch let e as AppendError {
                    throw InputError(description: "--tally-out \(e)", code: Exit.ioError)
                }
            }
            if verbose {
                let st = session.archive.cache.statistics
                log(String(format: "ask: %@; open+question %.3f s, %d answer tokens in %.3f s; cache hits %d misses %d; peak RSS %d MiB",
                           session.info.parameters.description,
                           a.openSeconds, a.tokens, a.seconds - a.openSeconds, st.hits - before.hits, st.misses - before.misses,
                           peakRSSBytes() >> 20))
            }
        }
    }
}

/// Reads and checks a whole JSONL questions file ('-': stdin); a bad line is named by its number
/// (`parseQuestions`, exit 65); a file that cannot be read is named (exit 66).
func loadQuestions(path: String) throws -> [Question] {
    let (bytes, name) = try readBytes(path: path)
    do { return try parseQuestions(bytes, name: name) } catch let e as QuestionsError {
        throw InputError(description: e.description)
    }
}

/// `longheads verify`: check every byte of a store.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check every page, header and feature file of a store; name what is damaged.")
    @Option(name: .long, help: "The store to check.") var store: String

    func run() throws {
        try guarded {
            switch try verifyStore(at: store) {
            case .damaged(let problems):
                for p in problems { log("longheads: error: \(p)") }
                throw ExitCode(Exit.dataError)
            case .ok(let chunks, let tokens):
                try Output.line("ok: \(store): \(chunks) chunks, \(tokens) tokens")
            }
        }
    }
}
