/// How the next token is chosen from logits.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax); otherwise logits are divided by it before softmax.
    public var temperature: Float
    /// Keep only the `topK` most likely tokens (0 = all).
    public var topK: Int
    /// Keep the smallest set of tokens whose probability reaches `topP` (1 = all).
    public var topP: Float
    /// Seed of the random stream, so that a sampled run can be reproduced.
    public var seed: UInt64
    /// Repetition penalty (CTRL, Keskar et al. 2019, arXiv 1909.05858 §4.1): before choosing, the logit of
    /// every token among the last `repeatWindow` generated ones is divided by it when positive and
    /// multiplied by it when negative. 1 = off. Small models decoding greedily over long inputs fall into
    /// loops ("The Agreement is entered into by … The Agreement is entered into by …") that this breaks.
    public var repeatPenalty: Float = 1
    /// Generated tokens the penalty looks back over.
    public var repeatWindow: Int = 64

    /// Greedy decoding.
    public static let greedy = SamplingParameters(temperature: 0, topK: 0, topP: 1, seed: 0)

    /// Sampling parameters; defaults are llama.cpp's (top-k 40, top-p 0.95).
    public init(temperature: Float, topK: Int = 40, topP: Float = 0.95, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }
}

/// xoshiro256** seeded by SplitMix64: small, fast, and the same stream on every platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    /// A generator whose stream is fixed by `seed`.
    public init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }
}

/// Chooses tokens from logits: argmax at temperature 0, else temperature → top-k → top-p → draw.
public struct Sampler {
    /// The parameters in force.
    public let parameters: SamplingParameters
    private var rng: SeededGenerator
    private var candidates: [(id: Int32, logit: Float)] = []

    /// A sampler with its own random stream.
    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SeededGenerator(seed: parameters.seed)
    }

    /// Index of the largest logit (lowest id on ties, as llama.cpp's greedy sampler).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        var bestValue = -Float.infinity
        for i in 0..<logits.count where logits[i] > bestValue {
            bestValue = logits[i]
            best = i
        }
        return Int32(best)
    }

    /// The next token.
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        let p = parameters
        guard p.temperature > 0 else { return Self.argmax(logits) }
        candidates.removeAll(keepingCapacity: true)
        for i in 0..<logits.count { candidates.append((Int32(i), logits[i] / p.temperature)) }
        if p.topK > 0 && p.topK < candidates.count {
            // Partial selection would be faster; a full sort of 49k floats is ~1 ms, negligible per token.
            candidates.sort { $0.logit > $1.logit }
            candidates.removeSubrange(p.topK...)
        } else {
            candidates.sort { $0.logit > $1.logit }
        }
        let m = candidates[0].logit
        var probs = candidates.map { expf($0.logit - m) }
        let total = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= total }
        var keep = probs.count
        if p.topP < 1 {
            var cum: Float = 0
            for (i, pr) in probs.enumerated() {
                cum += pr
                if cum >= p.topP { keep = i + 1; break }
            }
        }
        let mass = probs[0..<keep].reduce(0, +)
        var r = Float(Double(rng.next() >> 11) * 0x1p-53) * mass
        for i in 0..<keep {
            r -= probs[i]
            if r <= 0 { return candidates[i].id }
        }
        return candidates[keep - 1].id
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
