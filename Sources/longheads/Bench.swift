import ArgumentParser
import Evaluation
import Foundation
import Generation
import Model

/// `longheads bench`: throughput and memory figures as one JSON line (stdout).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks; each prints one JSON line: tokens, seconds, tokens_per_second, peak_rss_bytes, threads, model.",
        subcommands: [Prefill.self, Decode.self, BenchIngest.self, BenchPasskey.self, BenchNiah.self])

    /// Options shared by the benchmarks.
    struct Common: ParsableArguments {
        @OptionGroup var modelOptions: ModelOptions
        @Option(name: .long, help: "Timed repetitions; the median is reported.") var repetitions: Int = 3
        @Option(name: .long, help: "Untimed warm-up runs.") var warmup: Int = 1

        func validate() throws {
            try checkOption("repetitions", repetitions, Limits.repetitions)
            try checkOption("warmup", warmup, 0...Limits.repetitions.upperBound)
        }
    }

    /// Token ids of ordinary English text, repeated to `count` tokens, so that the benchmark runs real data.
    static func sampleTokens(_ count: Int, tokenizer: (String) -> [Int32]) -> [Int32] {
        let text = """
            The lighthouse keeper climbed the spiral stairs every evening at dusk. From the gallery he could see \
            the whole bay: the fishing boats returning, the ferry to the island, and far out, the dark line where \
            the weather was coming from. He wrote the wind speed in a small notebook, then lit the lamp.
            """
        let ids = tokenizer(text)
        return (0..<count).map { ids[$0 % ids.count] }
    }

    static func report(kind: String, tokens: Int, times: [Double], threads: Int, model: String, extra: [String: Any] = [:]) throws {
        let sorted = times.sorted()
        let median = sorted[sorted.count / 2]
        var o: [String: Any] = [
            "bench": kind, "tokens": tokens, "seconds": median, "tokens_per_second": Double(tokens) / median,
            "peak_rss_bytes": peakRSSBytes(), "threads": threads, "model": model,
            "repetitions": times.count, "seconds_all": times,
        ]
        o.merge(extra) { a, _ in a }
        let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
        try Output.line(String(decoding: data, as: UTF8.self))
    }

    struct Prefill: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Prompt processing: N tokens in one batch from an empty context (llama-bench pp N).")
        @OptionGroup var common: Common
        @Option(name: .long, help: "Prompt tokens.") var tokens: Int = 512

        func validate() throws { try checkOption("tokens", tokens, 1...(1 << 20)) }

        func run() throws {
            try guarded {
                let (model, tok) = try common.modelOptions.load(maxBatch: tokens)
                let ids = Bench.sampleTokens(tokens) { tok.encode($0) }
                let attention = DenseAttention(config: model.config, capacity: tokens, pool: model.pool)
                var times = [Double]()
                let clock = ContinuousClock()
                for r in 0..<(common.warmup + common.repetitions) {
                    let t0 = clock.now
                    _ = try model.forward(ids[...], start: 0, attention: attention, logits: .last)
                    let dt = (clock.now - t0).seconds
                    if r >= common.warmup { times.append(dt) }
                }
                try Bench.report(kind: "prefill", tokens: tokens, times: times, threads: model.pool.threads,
                             model: (model.file.path as NSString).lastPathComponent)
            }
        }
    }

    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Generation: N tokens one at a time from an empty context (llama-bench tg N).")
        @OptionGroup var common: Common
        @Option(name: .long, help: "Generated tokens.") var tokens: Int = 128

        func validate() throws { try checkOption("tokens", tokens, 1...(1 << 20)) }

        func run() throws {
            try guarded {
                let (model, tok) = try common.modelOptions.load(maxBatch: 1)
                let attention = DenseAttention(config: model.config, capacity: tokens + 1, pool: model.pool)
                var times = [Double]()
                let clock = ContinuousClock()
                let first = tok.bosID ?? 1
                for r in 0..<(common.warmup + common.repetitions) {
                    var next = first
                    let t0 = clock.now
                    for i in 0..<tokens {
                        let logits = try model.forward([next], start: i, attention: attention, logits: .last)
                        next = Sampler.argmax(logits)
                    }
                    let dt = (clock.now - t0).seconds
                    if r >= common.warmup { times.append(dt) }
                }
                try Bench.report(kind: "decode", tokens: tokens, times: times, threads: model.pool.threads,
                             model: (model.file.path as NSString).lastPathComponent)
            }
        }
    }
}
