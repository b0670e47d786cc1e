import ArgumentParser
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
    @Option(name: .long, help: "How heads rank chunks: quest (default), quest-sub or paper (Docs/SELECTION.md).")
    var policy: String = SelectionPolicy.default.rawValue
    @Option(name: .long, help: "KV precision in the store: f16 or q8.") var precision: String = "f16"
    @Option(name: .long, help: "Memory budget of the decompressed-page cache, MiB.") var memoryBudget: Int = 512

    var parameters: LongHeadsParameters {
        LongHeadsParameters(chunkSize: chunk, attentionLength: attention, beginSelective: selectiveFrom,
                            policy: SelectionPolicy(rawValue: policy) ?? .default)
    }

    var kvPrecision: KVPrecision { precision == "q8" ? .q8 : .f16 }

    func validate() throws {
        if let p = parameters.problem { throw ValidationError(p) }
        guard SelectionPolicy(rawValue: policy) != nil else {
            throw ValidationError("--policy must be one of \(SelectionPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard precision == "f16" || precision == "q8" else { throw ValidationError("--precision must be f16 or q8") }
        guard memoryBudget >= 16 else { throw ValidationError("--memory-budget must be at least 16 MiB") }
    }
}

/// `longheads ingest`: read a document once into a store.
struct Ingest: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a document (FILE or - for stdin) into a LongHeads store: KV pages on disk, LZ4-compressed.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var lh: LongHeadsOptions
    @Argument(help: "The document ('-' reads stdin).") var input: String
    @Option(name: .long, help: "Directory of the store to create.") var store: String
    @Flag(name: .long, help: "Ingest the document as a plain text continuation instead of the opening of a chat user turn.")
    var raw = false

    func run() throws {
        try guarded {
            let text = try readText(path: input)
            let (model, tokenizer) = try modelOptions.load(maxBatch: lh.chunk)
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: lh.memoryBudget << 20)
            let clock = ContinuousClock()
            let t0 = clock.now
            var last = t0
            let info = try pipeline.ingest(text: text, to: store, modelFile: model.file, parameters: lh.parameters,
                                           precision: lh.kvPrecision, chat: !raw) { done, total in
                let now = clock.now
                if (now - last).seconds > 2 || done == total {
                    last = now
                    let s = (now - t0).seconds
                    log(String(format: "ingest: %d/%d tokens, %.0f tok/s, %.1f s", done, total, Double(done) / max(s, 1e-9), s))
                }
            }
            let s = (clock.now - t0).seconds
            let o: [String: Any] = ["store": store, "tokens": info.tokens, "seconds": s, "tokens_per_second": Double(info.tokens) / s,
                                    "peak_rss_bytes": peakRSSBytes(), "parameters": lh.parameters.description, "precision": lh.precision]
            print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
        }
    }
}
