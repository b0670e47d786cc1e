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

    /// Prints one throughput record (`ThroughputBenchmark.Record`).
    static func report(kind: String, tokens: Int, times: [Double], model: LlamaModel) throws {
        try Output.line(try jsonLine(ThroughputBenchmark.Record(bench: kind, tokens: tokens, times: times, threads: model.pool.threads,
                                                                model: (model.file.path as NSString).lastPathComponent)))
    }

    struct Prefill: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Prompt processing: N tokens in one batch from an empty context (llama-bench pp N).")
        @OptionGroup var common: Common
        @Option(name: .long, help: "Prompt tokens.") var tokens: Int = 512

        func validate() throws { try checkOption("tokens", tokens, 1...(1 << 20)) }

        func run() throws {
            try guarded {
                let (model, tok) = try common.modelOptions.load(maxBatch: tokens)
                let ids = ThroughputBenchmark.sampleTokens(tokens) { tok.encode($0) }
                let times = try ThroughputBenchmark.prefill(model, ids: ids, warmup: common.warmup, repetitions: common.repetitions)
                try Bench.report(kind: "prefill", tokens: tokens, times: times, model: model)
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
                let times = try ThroughputBenchmark.decode(model, first: tok.bosID ?? 1, tokens: tokens, warmup: common.warmup,
                                                           repetitions: common.repetitions)
                try Bench.report(kind: "decode", tokens: tokens, times: times, model: model)
            }
        }
    }
}
