import ArgumentParser
import Evaluation
import Foundation
import Generation
import Model
import LongHeads
import ModelCache
import Pipeline
import Tokenization

/// `longheads generate`: continue a prompt (or answer it as a chat turn) and print only the continuation.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a continuation of a prompt; prints only the generated text on stdout.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: .long, help: "The prompt text.")
    var prompt: String?

    @Option(name: .long, help: "Read the prompt from this file ('-' for stdin). Without --prompt or --prompt-file, stdin is read.")
    var promptFile: String?

    @Option(name: .long, help: "Most tokens to generate.")
    var maxTokens: Int = 256

    @Option(name: .long, help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0

    @Option(name: .long, help: "Top-k cutoff when sampling (0 = off).")
    var topK: Int = 40

    @Option(name: .long, help: "Top-p (nucleus) cutoff when sampling.")
    var topP: Float = 0.95

    @Option(name: .long, help: "Random seed for sampling.")
    var seed: UInt64 = 0

    @Flag(name: .long, help: "Wrap the prompt in the model's chat template (ChatML) as a user turn.")
    var chat = false

    @Flag(name: .long, help: "Print timing (tokens/s) to stderr.")
    var verbose = false

    @Flag(name: .long, help: "On a long prompt, do not take its last paragraph as a question whose words retrieve a chunk for every head (quest-lexical; Docs/CLI.md).")
    var noRetrieval = false

    @Option(name: .long, help: "Diagnostics: report per layer the share of heads whose selection holds the chunk with this token position, at the last prompt token.")
    var selectionReport: Int?

    @OptionGroup(title: "LongHeads (used when the prompt is longer than the attention length)")
    var lh: LongHeadsOptions

    func validate() throws {
        if prompt != nil && promptFile != nil { throw ValidationError("give either --prompt or --prompt-file, not both") }
        try checkOption("max-tokens", maxTokens, 0...Limits.tokens.upperBound)
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be a finite number ≥ 0") }
        try checkOption("top-k", topK, 0...(1 << 24))
        if let selectionReport { try checkOption("selection-report", selectionReport, 0...Limits.tokens.upperBound) }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
    }

    func run() throws {
        try guarded {
            let text = try prompt ?? readText(path: promptFile ?? "-")
            guard !text.isEmpty else { throw GenerationError.emptyPrompt }
            let (model, tokenizer) = try modelOptions.load()
            let ids = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: 0).promptTokens(text, chat: chat)
            guard !ids.isEmpty else { throw GenerationError.emptyPrompt }
            let sampling = SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed)
            if ids.count + maxTokens > lh.parameters.beginSelective {
                // Past the selective threshold: LongHeads through a temporary store, removed afterwards.
                try generateLong(text: text, ids: ids, model: model, tokenizer: tokenizer, sampling: sampling)
                return
            }
            let attention = DenseAttention(config: model.config, capacity: ids.count + maxTokens, pool: model.pool)
            let result = try Generator(model: model, tokenizer: tokenizer).generate(
                prompt: ids, maxTokens: maxTokens, sampling: sampling,
                attention: attention) { piece in try Output.write(piece) }
            try Output.write("\n")
            if verbose {
                log(String(format: "prompt: %d tokens in %.3f s (%.1f tok/s); generated: %d tokens in %.3f s (%.1f tok/s); stop: %@",
                           result.promptTokens, result.promptSeconds, Double(result.promptTokens) / result.promptSeconds,
                           result.tokens.count, result.generationSeconds,
                           Double(result.tokens.count) / max(result.generationSeconds, 1e-9), result.stopReason.rawValue))
            }
        }
    }
}

extension Generate {
    func generateLong(text: String, ids: [Int32], model: LlamaModel, tokenizer: Tokenizer, sampling: SamplingParameters) throws {
        // Removed on return, error, Ctrl-C / SIGTERM, and by the next longheads after a crash (issue 14:
        // an interrupted generate left its store behind).
        try withTemporaryStore("generate") { dir in
            try generateLong(text: text, ids: ids, model: model, tokenizer: tokenizer, sampling: sampling, dir: dir)
        }
    }

    func generateLong(text: String, ids: [Int32], model: LlamaModel, tokenizer: Tokenizer, sampling: SamplingParameters, dir: String) throws {
        let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: lh.memoryBudget << 20)
        // The prompt's last paragraph is read as `ask` reads a question: its tokens retrieve a chunk (issue 15).
        let questionStart = noRetrieval ? nil : pipeline.questionStart(ofPrompt: text, chat: chat, ids: ids)
        if verbose, let questionStart {
            log("generate: retrieval query: tokens \(questionStart)..<\(ids.count): "
                + String(reflecting: tokenizer.decode(Array(ids[questionStart...]))))
        }
        let g = try pipeline.generateLong(ids: ids, questionStart: questionStart, chat: chat, storeAt: dir, parameters: lh.parameters,
                                          precision: lh.kvPrecision, maxTokens: maxTokens, sampling: sampling, prepare: { attention in
            guard let target = selectionReport else { return }
            let chunk = Int32(target / lh.chunk)
            attention.selections.observe { record in
                guard let hits = record.heads(holding: chunk, at: ids.count - 1) else { return }
                log("selection: layer \(record.layer) chunk \(chunk) held by \(hits)/\(record.heads) heads")
            }
        }, onRead: { g in
            if verbose, g.questionStart != nil { log("generate: retrieved chunks \(g.sharedChunks)") }
        }) { try Output.write($0) }
        try Output.write("\n")
        if verbose {
            log(String(format: "longheads %@: prompt %d tokens in %.3f s (%.1f tok/s); generated %d tokens in %.3f s",
                       lh.parameters.description, ids.count, g.promptSeconds, Double(ids.count) / g.promptSeconds,
                       g.tokens.count, g.answerSeconds))
        }
    }
}

/// `longheads tokenize`: print token ids.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of TEXT (plain text: special-token strings are not parsed), space separated.")

    @OptionGroup var modelOptions: ModelOptions

    @Argument(help: "Text to tokenize ('-' reads stdin).")
    var text: String

    func run() throws {
        try guarded {
            let (_, tokenizer) = try modelOptions.openTokenizer()
            let s = text == "-" ? try readText(path: "-") : text
            let ids = tokenizer.encode(s)
            try Output.line(ids.map(String.init).joined(separator: " "))
        }
    }
}
