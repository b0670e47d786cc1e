import ArgumentParser
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

    /// Greedy, with the repetition penalty.
    var sampling: SamplingParameters {
        var s = SamplingParameters.greedy
        s.repeatPenalty = repeatPenalty
        return s
    }
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
    @Option(name: .long, help: "Memory budget of the decompressed-page cache, MiB.") var memoryBudget: Int = 512
    @Option(name: .long, help: "What to ask after the document.") var instruction: String = Summarize.defaultInstruction
    @Flag(name: .long, help: "Print timing to stderr.") var verbose = false

    /// The default request. "Summarize the text above in a few sentences." made SmolLM2-135M continue a log
    /// file instead of describing it; this wording gets prose (Samples/README.md).
    static let defaultInstruction = "Write a short summary of the text above."

    var parameters: LongHeadsParameters { LongHeadsParameters(chunkSize: chunk, attentionLength: attention) }

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
            // --sections needs the text; otherwise the document is streamed (`summarizeWhole`).
            let text = sections ? try readText(path: input) : nil
            if let text, !text.contains(where: { !$0.isWhitespace }) { throw Self.empty(input == "-" ? "standard input" : input) }
            // Opened before the model is loaded: a directory or a closed stdin is named at once (exit 66).
            let source = sections ? nil : try DocumentSource(path: input)
            let (model, tokenizer) = try modelOptions.load(maxBatch: max(256, chunk))
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: memoryBudget << 20)
            let clock = ContinuousClock()
            let t0 = clock.now
            if let text {
                for s in self.sections(of: text, tokenizer: tokenizer) {
                    try Output.write(s.title + ": ")
                    let ids = ChatTemplate.userTurnOpening(tokenizer: tokenizer) + s.ids
                        + pipeline.questionTokens(instruction, chat: true, raw: false)
                    try generate(prompt: ids, pipeline: pipeline) { try Output.write(oneLine($0)) }
                    try Output.write("\n")
                }
                try Output.write("Overall: ")
                try summarizeWhole(DocumentSource(bytes: Array(text.utf8), name: input), pipeline: pipeline) { try Output.write(oneLine($0)) }
            } else if let source {
                try summarizeWhole(source, pipeline: pipeline) { try Output.write($0) }
            }
            try Output.write("\n")
            if verbose { log(String(format: "summarize: %.1f s, peak RSS %d MiB", (clock.now - t0).seconds, peakRSSBytes() >> 20)) }
        }
    }

    /// The empty-document error.
    static func empty(_ name: String) -> InputError { InputError(description: "\(name): the document is empty") }

    /// The whole document: plain attention if it fits (and no store is wanted), else LongHeads over a store.
    /// Only the document's head is read to decide: a document of more than `beginSelective` × (longest token)
    /// bytes has more tokens than plain attention takes, and is streamed into the store without ever being
    /// held whole, so its length costs disk, not memory (as `ingest` and `ask FILE`).
    func summarizeWhole(_ source: DocumentSource, pipeline: DocumentPipeline, onText: (String) throws -> Void) throws {
        let question = pipeline.questionTokens(instruction, chat: true, raw: false)
        let tokenizer = pipeline.tokenizer
        let longest = (0..<tokenizer.vocabularySize).reduce(1) { max($0, tokenizer.pieceBytes(Int32($1)).count) }
        let limit = parameters.beginSelective * longest
        let head = try source.peek(limit + 1)
        if head.count <= limit {
            let text = try decodeUTF8(Data(head), source: source.name)
            guard text.contains(where: { !$0.isWhitespace }) else { throw Self.empty(source.name) }
            let (doc, _) = pipeline.documentTokens(text, chat: true)
            if store == nil && doc.count + question.count + maxTokens <= parameters.beginSelective {
                return try generate(prompt: doc + question, pipeline: pipeline, onText: onText)
            }
        }
        func viaStore(_ dir: String) throws {
            let clock = ContinuousClock()
            let t0 = clock.now
            var last = t0
            let info = try pipeline.ingest(source: source, to: dir, modelFile: pipeline.model.file, parameters: parameters,
                                           precision: .default, chat: true, progress: { p in
                let now = clock.now
                if verbose, (now - last).seconds > 5 || p.done {
                    last = now
                    log(String(format: "summarize: ingest %d tokens, %.1f s", p.tokens, (now - t0).seconds))
                }
            }).info
            if verbose { log(String(format: "summarize: ingested %d tokens in %.1f s", info.tokens, (clock.now - t0).seconds)) }
            let (session, logits) = try pipeline.open(store: dir, modelFile: pipeline.model.file, then: question)
            _ = try pipeline.answer(session: session, first: logits, maxTokens: maxTokens, sampling: sampling, onText: onText)
        }
        if let store { try viaStore(store) } else { try withTemporaryStore("summarize", viaStore) }
    }

    /// The document of an existing store, asked for a summary (no ingest).
    func summarizeStore(_ store: String) throws {
        let (model, tokenizer) = try modelOptions.load(maxBatch: max(256, chunk))
        let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: memoryBudget << 20)
        let clock = ContinuousClock()
        let t0 = clock.now
        let chat = try StoreReader.open(at: store).header.flags & 1 != 0
        let (session, logits) = try pipeline.open(store: store, modelFile: model.file,
                                                  then: pipeline.questionTokens(instruction, chat: chat, raw: false))
        _ = try pipeline.answer(session: session, first: logits, maxTokens: maxTokens, sampling: sampling) { try Output.write($0) }
        try Output.write("\n")
        if verbose { log(String(format: "summarize: %.1f s, peak RSS %d MiB", (clock.now - t0).seconds, peakRSSBytes() >> 20)) }
    }

    /// Generates from a complete prompt: plain attention when it fits, else LongHeads via a temporary store.
    func generate(prompt ids: [Int32], pipeline: DocumentPipeline, onText: (String) throws -> Void) throws {
        if ids.count + maxTokens <= parameters.beginSelective {
            let dense = DenseAttention(config: pipeline.model.config, capacity: ids.count + maxTokens, pool: pipeline.model.pool)
            _ = try Generator(model: pipeline.model, tokenizer: pipeline.tokenizer).generate(
                prompt: ids, maxTokens: maxTokens, sampling: sampling, attention: dense, onText: onText)
            return
        }
        try withTemporaryStore("summarize") { dir in
            let (session, logits) = try pipeline.run(prompt: ids, storeAt: dir, modelFile: pipeline.model.file,
                                                     parameters: parameters, precision: .default, chat: true)
            _ = try pipeline.answer(session: session, first: logits, maxTokens: maxTokens, sampling: sampling, onText: onText)
        }
    }

    /// Sections: from each Markdown heading to the next (text before the first heading is one more), or,
    /// without headings, parts of `sectionTokens` tokens.
    func sections(of text: String, tokenizer: Tokenizer) -> [(title: String, ids: [Int32])] {
        var out = [(title: String, ids: [Int32])]()
        var title = "Preamble", body = ""
        func flush() {
            if body.contains(where: { !$0.isWhitespace }) { out.append((title, tokenizer.encode(body))) }
        }
        var headings = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("#"), case let t = line.drop(while: { $0 == "#" }), t.isEmpty || t.first == " " {
                flush()
                headings += 1
                title = t.trimmingCharacters(in: .whitespaces)
                if title.isEmpty { title = "Section \(headings)" }
                body = ""
            }
            body += line + "\n"
        }
        flush()
        if headings > 0 { return out }
        let ids = tokenizer.encode(text)
        return stride(from: 0, to: ids.count, by: sectionTokens).map { lo in
            let hi = min(ids.count, lo + sectionTokens)
            return ("Part \(lo / sectionTokens + 1) (tokens \(lo + 1)-\(hi))", Array(ids[lo..<hi]))
        }
    }
}

/// Keeps a section's summary on one line.
private func oneLine(_ s: String) -> String {
    s.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
}
