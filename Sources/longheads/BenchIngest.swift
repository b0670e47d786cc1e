import ArgumentParser
import Foundation
import Generation
import LongHeads
import Pipeline

/// `longheads bench ingest`: ingest throughput, peak RSS and store size, then one question cold and warm.
struct BenchIngest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Ingest N tokens of generated prose into a temporary store; JSON: tokens/s, peak RSS, bytes per token, ask latency.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var lh: LongHeadsOptions
    @Option(name: .long, help: "Document tokens (e.g. 8192, 131072).") var tokens: Int = 8192
    @Option(name: .long, help: "Keep the store here instead of a temporary directory.") var store: String?

    /// Varied sentences from templates, so that chunks differ (as in real documents).
    static func prose(words: Int, seed: UInt64) -> String {
        var rng = SeededGenerator(seed: seed)
        let subjects = ["The engineer", "A farmer", "The committee", "Our neighbour", "The old captain", "A student", "The council", "The baker"]
        let verbs = ["repaired", "painted", "counted", "described", "sold", "measured", "carried", "inspected"]
        let objects = ["the bridge", "three lanterns", "a wooden boat", "the northern wall", "forty barrels", "the library roof", "a blue kite", "the harbour gate"]
        let tails = ["before the storm arrived.", "on a quiet Tuesday.", "while the market was closing.", "for the spring festival.", "in the valley near the river.", "after a long discussion."]
        var out = ""
        var n = 0
        while n < words {
            let s = "\(subjects[Int(rng.next() % 8)]) \(verbs[Int(rng.next() % 8)]) \(objects[Int(rng.next() % 8)]) \(tails[Int(rng.next() % 6)]) "
            out += s
            n += s.split(separator: " ").count
            if rng.next() % 7 == 0 { out += "\n" }
        }
        return out
    }

    func run() throws {
        try guarded {
            let (model, tokenizer) = try modelOptions.load(maxBatch: lh.chunk)
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: lh.memoryBudget << 20)
            var text = Self.prose(words: tokens, seed: 42)
            var ids = tokenizer.encode(text)
            while ids.count < tokens { text += Self.prose(words: tokens - ids.count + 16, seed: UInt64(ids.count)); ids = tokenizer.encode(text) }
            let dir = store ?? NSTemporaryDirectory() + "longheads-bench-ingest-\(getpid())"
            defer { if store == nil { try? FileManager.default.removeItem(atPath: dir) } }
            let clock = ContinuousClock()
            let t0 = clock.now
            let info = try pipeline.ingest(text: text, to: dir, modelFile: model.file, parameters: lh.parameters,
                                           precision: lh.kvPrecision, chat: true)
            let ingestSeconds = (clock.now - t0).seconds
            let ingestRSS = peakRSSBytes()
            let bytes = (try FileManager.default.contentsOfDirectory(atPath: dir)).reduce(0) { sum, f in
                sum + ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + f)[.size] as? Int) ?? 0)
            }
            // One question, twice: cold (just opened) and warm (pages in the OS cache).
            var askSeconds = [Double]()
            for _ in 0..<2 {
                let a0 = clock.now
                let q = pipeline.questionTokens("What did the engineer repair?", chat: true, raw: false)
                let (session, logits) = try pipeline.open(store: dir, modelFile: model.file, then: q)
                _ = try pipeline.answer(session: session, first: logits, maxTokens: 16, sampling: .greedy) { _ in }
                askSeconds.append((clock.now - a0).seconds)
            }
            let o: [String: Any] = [
                "bench": "ingest", "tokens": info.tokens, "seconds": ingestSeconds, "tokens_per_second": Double(info.tokens) / ingestSeconds,
                "peak_rss_bytes_ingest": ingestRSS, "peak_rss_bytes": peakRSSBytes(), "store_bytes": bytes,
                "store_bytes_per_token": Double(bytes) / Double(info.tokens), "ask_seconds_cold": askSeconds[0], "ask_seconds_warm": askSeconds[1],
                "ask": "question + 16 answer tokens", "parameters": lh.parameters.description, "precision": lh.precision,
                "memory_budget_mib": lh.memoryBudget, "threads": model.pool.threads,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
        }
    }
}
