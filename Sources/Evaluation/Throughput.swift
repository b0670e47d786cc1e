import Foundation
import Generation
import Model

/// `bench prefill` and `bench decode`: model throughput from an empty context (llama-bench pp N / tg N).
public enum ThroughputBenchmark {
    /// Token ids of ordinary English text, repeated to `count` tokens, so that the benchmark runs real data.
    public static func sampleTokens(_ count: Int, tokenizer: (String) -> [Int32]) -> [Int32] {
        let text = """
            The lighthouse keeper climbed the spiral stairs every evening at dusk. From the gallery he could see \
            the whole bay: the fishing boats returning, the ferry to the island, and far out, the dark line where \
            the weather was coming from. He wrote the wind speed in a small notebook, then lit the lamp.
            """
        let ids = tokenizer(text)
        return (0..<count).map { ids[$0 % ids.count] }
    }

    /// Seconds of each timed run of `ids` in one batch from an empty context (after `warmup` untimed runs).
    public static func prefill(_ model: LlamaModel, ids: [Int32], warmup: Int, repetitions: Int) throws -> [Double] {
        let attention = DenseAttention(config: model.config, capacity: ids.count, pool: model.pool)
        return try timed(warmup: warmup, repetitions: repetitions) {
            _ = try model.forward(ids[...], start: 0, attention: attention, logits: .last)
        }
    }

    /// Seconds of each timed run of `tokens` greedy steps one token at a time from `first`.
    public static func decode(_ model: LlamaModel, first: Int32, tokens: Int, warmup: Int, repetitions: Int) throws -> [Double] {
        let attention = DenseAttention(config: model.config, capacity: tokens + 1, pool: model.pool)
        return try timed(warmup: warmup, repetitions: repetitions) {
            var next = first
            for i in 0..<tokens {
                let logits = try model.forward([next], start: i, attention: attention, logits: .last)
                next = Sampler.argmax(logits)
            }
        }
    }

    static func timed(warmup: Int, repetitions: Int, _ body: () throws -> Void) throws -> [Double] {
        var times = [Double]()
        let clock = ContinuousClock()
        for r in 0..<(warmup + repetitions) {
            let t0 = clock.now
            try body()
            if r >= warmup { times.append((clock.now - t0).seconds) }
        }
        return times
    }

    /// The JSON line of a throughput benchmark: the median of `times` and all of them.
    public struct Record: Encodable, Sendable {
        /// Kind, tokens, median seconds, tokens per second, peak RSS, threads and model file name.
        public var bench: String, tokens: Int, seconds: Double, tokensPerSecond: Double, peakRssBytes: Int, threads: Int, model: String
        /// Timed runs and the seconds of each.
        public var repetitions: Int, secondsAll: [Double]

        /// The record of `times` (non-empty) for `tokens` tokens.
        public init(bench: String, tokens: Int, times: [Double], threads: Int, model: String) {
            let median = times.sorted()[times.count / 2]
            (self.bench, self.tokens, seconds, tokensPerSecond) = (bench, tokens, median, Double(tokens) / median)
            (peakRssBytes, self.threads, self.model, repetitions, secondsAll) = (peakRSSBytes(), threads, model, times.count, times)
        }
    }
}
