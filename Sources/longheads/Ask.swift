import ArgumentParser
import Foundation
import Generation
import KVStore
import LongHeads
import Pipeline

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
