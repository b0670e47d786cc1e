import ArgumentParser
import Evaluation
import Foundation
import Pipeline

/// `longheads bench ingest`: ingest throughput, peak RSS and store size, then one question cold and warm.
struct BenchIngest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Ingest N tokens of generated prose into a temporary store; JSON: tokens/s, peak RSS, bytes per token, ask latency.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var lh: LongHeadsOptions
    @Option(name: .long, help: "Document tokens (e.g. 8192, 131072).") var tokens: Int = 8192

    func validate() throws { try checkOption("tokens", tokens, Limits.tokens) }
    @Option(name: .long, help: "Keep the store here instead of a temporary directory.") var store: String?
    @Flag(name: .long, help: "Skip the ingest: only ask, on the existing store given by --store.") var askOnly = false

    func run() throws {
        try guarded {
            let (model, tokenizer) = try modelOptions.load(maxBatch: lh.chunk)
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: lh.memoryBudget << 20)
            if askOnly {
                guard let store else { throw ValidationError("--ask-only needs --store") }
                return try Output.line(IngestBenchmark.askOnly(pipeline, store: store))
            }
            try Output.line(IngestBenchmark.run(pipeline, tokens: tokens, parameters: lh.parameters, precision: lh.kvPrecision,
                                                precisionName: lh.precision, memoryBudgetMiB: lh.memoryBudget, store: store,
                                                scratchDirectory: TemporaryStores.directory))
        }
    }
}
