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

/// `longheads ask`: answer a question from a store.
struct Ask: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Answer a question about an ingested document; prints the answer.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "The store to read.") var store: String
    @Argument(help: "The question (with --raw: text appended verbatim for the model to continue).") var text: String
    @Flag(name: .long, help: "Append TEXT verbatim and let the model continue (no chat turn).") var raw = false
    @Option(name: .long, help: "Most tokens to generate.") var maxTokens: Int = 64
    @Option(name: .long, help: "Memory budget of the decompressed-page cache, MiB.") var memoryBudget: Int = 512
    @Option(name: .long, help: "Selection policy for the question and answer (default: the one the store was ingested with).")
    var policy: String?
    @Flag(name: .long, help: "Print timing and cache figures to stderr.") var verbose = false

    func validate() throws {
        if let policy, SelectionPolicy(rawValue: policy) == nil {
            throw ValidationError("--policy must be one of \(SelectionPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        try guarded {
            guard !text.isEmpty else { throw GenerationError.emptyPrompt }
            let (model, tokenizer) = try modelOptions.load(maxBatch: 256)
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: memoryBudget << 20)
            let clock = ContinuousClock()
            let t0 = clock.now
            let reader = try StoreReader.open(at: store)
            let chat = reader.header.flags & 1 != 0
            let q = pipeline.questionTokens(text, chat: chat, raw: raw)
            let (session, logits) = try pipeline.open(store: store, modelFile: model.file, then: q,
                                                      policy: policy.flatMap(SelectionPolicy.init(rawValue:)))
            let t1 = clock.now
            let out = FileHandle.standardOutput
            let ids = try pipeline.answer(session: session, first: logits, maxTokens: maxTokens, sampling: .greedy) {
                out.write(Data($0.utf8))
            }
            out.write(Data("\n".utf8))
            if verbose {
                let st = session.archive.cache.statistics
                log(String(format: "ask: %@; open+question %.3f s, %d answer tokens in %.3f s; cache hits %d misses %d; peak RSS %d MiB",
                           session.info.parameters.description, (t1 - t0).seconds, ids.count, (clock.now - t1).seconds,
                           st.hits, st.misses, peakRSSBytes() >> 20))
            }
        }
    }
}

/// `longheads verify`: check every byte of a store.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check every page, header and feature file of a store; name what is damaged.")
    @Option(name: .long, help: "The store to check.") var store: String

    func run() throws {
        try guarded {
            let reader = try StoreReader.open(at: store)
            let problems = reader.verify()
            if problems.isEmpty {
                print("ok: \(store): \(reader.chunkCount) chunks, \(reader.tokenCount) tokens")
            } else {
                for p in problems { log("longheads: error: \(p)") }
                throw ExitCode(Exit.dataError)
            }
        }
    }
}
