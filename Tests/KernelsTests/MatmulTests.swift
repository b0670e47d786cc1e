import CKernels
@testable import Kernels
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// (rows, cols, tokens): rows not multiples of 16, token counts hitting every tile remainder.
let matmulShapes: [(Int, Int, Int)] = [
    (1, 32, 1), (17, 64, 3), (45, 256, 17), (100, 576, 5), (33, 1536, 17), (16, 512, 9), (70, 96, 2),
]

func randomActivations(tokens: Int, cols: Int, rng: inout SplitMix64) -> [Float] {
    (0..<tokens * cols).map { i in
        // Mostly small values with occasional outliers, as in transformer activations.
        Float.random(in: -1...1, using: &rng) * (i % 37 == 5 ? 20 : 1)
    }
}

@Suite("Matmul")
struct MatmulTests {
    static let pool = ThreadPool(threads: 2)

    @Test(arguments: WeightType.allCases, KernelPath.allCases)
    func matchesReference(type: WeightType, path: KernelPath) throws {
        guard path.isSupported else { return }
        for precision in ActivationPrecision.allCases {
            try checkAgainstReference(type: type, path: path, precision: precision)
        }
    }

    func checkAgainstReference(type: WeightType, path: KernelPath, precision: ActivationPrecision) throws {
        var rng = SplitMix64(seed: UInt64(type.rawValue) * 31 + 5)
        let split = precision == .int16Split
        for (rows, c, tokens) in matmulShapes {
            let cols = type.blockSize == 256 ? (c + 255) / 256 * 256 : c
            let data = randomWeights(type, rows: rows, cols: cols, rng: &rng)
            let m = try data.withUnsafeBytes {
                try PackedMatrix(type: type.rawValue, data: $0.baseAddress!, rows: rows, cols: cols)
            }
            let x = randomActivations(tokens: tokens, cols: cols, rng: &rng)
            let acts = QuantizedActivations(cols: cols, maxTokens: tokens + 2, precision: precision)
            x.withUnsafeBufferPointer { acts.quantize($0.baseAddress!, tokens: tokens, pool: Self.pool) }
            var out = [Float](repeating: .nan, count: rows * tokens)
            out.withUnsafeMutableBufferPointer {
                matmul(m, acts, tokens: tokens, into: $0.baseAddress!, pool: Self.pool, path: path)
            }

            // 1. Against the packed weights times the dequantized int8 activations: only float
            //    rounding differs.
            var wp = [Float](repeating: 0, count: rows * cols)
            wp.withUnsafeMutableBufferPointer { p in
                for r in 0..<rows { m.dequantizeRow(r, into: p.baseAddress! + r * cols) }
            }
            var xq = [Float](repeating: 0, count: tokens * cols)
            xq.withUnsafeMutableBufferPointer { p in
                for t in 0..<tokens { acts.dequantize(token: t, into: p.baseAddress! + t * cols) }
            }
            let refQ = referenceMatmul(wp, rows: rows, cols: cols, xq, tokens: tokens)
            let mag = referenceMatmul(wp.map(abs), rows: rows, cols: cols, xq.map(abs), tokens: tokens)
            var worst: Float = 0
            for i in 0..<rows * tokens {
                let rel = abs(out[i] - refQ[i]) / max(mag[i], 1e-30)
                if !(rel <= worst) { worst = rel }
            }
            #expect(worst < 2e-5, "\(type) \(path) \(precision) \(rows)x\(cols) T=\(tokens): relative error \(worst)")

            // 2. Against the original weights and float activations: within the bound of the
            //    activation rounding (half a step: da/2 for int8, da/508 for the int16 split) plus
            //    the weight requantization and float rounding.
            let w = dequantizeMatrix(type, data, rows: rows, cols: cols)
            let ref = referenceMatmul(w, rows: rows, cols: cols, x, tokens: tokens)
            var xErr = [Float](repeating: 0, count: tokens * cols)
            for t in 0..<tokens {
                for b in 0..<cols / 32 {
                    let o = t * cols + 32 * b
                    let amax = x[o..<o + 32].map(abs).max()!
                    let step = split ? amax / 127 / 254 : amax / 127
                    for j in 0..<32 { xErr[o + j] = step / 2 * 1.0001 }
                }
            }
            let wErr = zip(w, wp).map { abs($0 - $1) }
            let b1 = referenceMatmul(wp.map(abs), rows: rows, cols: cols, xErr, tokens: tokens)
            let b2 = referenceMatmul(wErr, rows: rows, cols: cols, x.map(abs), tokens: tokens)
            let magX = referenceMatmul(w.map(abs), rows: rows, cols: cols, x.map(abs), tokens: tokens)
            var violations = 0
            let slack: Float = split ? 4e-6 : 2e-5
            for i in 0..<rows * tokens where !(abs(out[i] - ref[i]) <= b1[i] + b2[i] + slack * magX[i]) {
                violations += 1
            }
            #expect(violations == 0, "\(type) \(path) \(precision) \(rows)x\(cols) T=\(tokens)")
        }
    }

    /// All paths quantize activations bit-identically, in both precisions.
    @Test(arguments: ActivationPrecision.allCases)
    func quantizationIsIdenticalAcrossPaths(precision: ActivationPrecision) {
        var rng = SplitMix64(seed: 9)
        let cols = 576, tokens = 13
        let planes = precision == .int16Split ? 2 : 1
        var x = randomActivations(tokens: tokens, cols: cols, rng: &rng)
        for k in 0..<32 { x[k] = 0 } // an all-zero block
        var results: [[Int8]] = []
        var scales: [[Float]] = []
        for path in KernelPath.allCases where path.isSupported {
            let acts = QuantizedActivations(cols: cols, maxTokens: tokens, precision: precision)
            x.withUnsafeBufferPointer { acts.quantize($0.baseAddress!, tokens: tokens, pool: Self.pool, path: path) }
            let a = acts.storage.pointee
            #expect(Int(a.planes) == planes)
            results.append(Array(UnsafeBufferPointer(start: a.q, count: tokens * cols * planes)))
            scales.append(Array(UnsafeBufferPointer(start: a.ds, count: tokens * cols / 16)))
        }
        #expect(results.count >= 1)
        for i in 1..<results.count {
            #expect(results[i] == results[0])
            #expect(scales[i] == scales[0])
        }
        // Every plane stays in [-127, 127] (vpdpbusd and the AVX2 sign trick rely on it).
        #expect(results[0].allSatisfy { $0 >= -127 })
        // Quantization error of each value is at most half a step (da/2, or da/508 split).
        let acts = QuantizedActivations(cols: cols, maxTokens: tokens, precision: precision)
        #expect(acts.precision == precision)
        x.withUnsafeBufferPointer { acts.quantize($0.baseAddress!, tokens: tokens) }
        var xq = [Float](repeating: 0, count: cols)
        for t in 0..<tokens {
            xq.withUnsafeMutableBufferPointer { acts.dequantize(token: t, into: $0.baseAddress!) }
            for b in 0..<cols / 32 {
                let o = t * cols + 32 * b
                let step = x[o..<o + 32].map(abs).max()! / 127 / (planes == 2 ? 254 : 1)
                // Half a step, plus float rounding (of 127/amax, x * that, and s * Q): a few
                // 1e-7 of amax, i.e. up to ~0.01 of the split's step.
                let bound = step * (planes == 2 ? 0.51 : 0.5001)
                for j in 0..<32 { #expect(abs(xq[32 * b + j] - x[o + j]) <= bound) }
            }
        }
    }

    @Test func defaultPrecisionIsInt16Split() {
        #expect(QuantizedActivations(cols: 64, maxTokens: 1).precision == ActivationPrecision.default)
        if getenv("LONGHEADS_ACTIVATIONS") == nil { #expect(ActivationPrecision.default == .int16Split) }
    }

    /// The point of the int16 split: against float activations (and the exact weights) its error
    /// is at least 50x below int8's on every path, on activations with outlier channels.
    @Test(arguments: [WeightType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K])
    func int16SplitIsFiftyTimesMoreAccurate(type: WeightType) throws {
        var rng = SplitMix64(seed: 21 + UInt64(type.rawValue))
        let rows = 48, cols = 768, tokens = 9
        let data = randomWeights(type, rows: rows, cols: cols, rng: &rng)
        let m = try data.withUnsafeBytes { try PackedMatrix(type: type.rawValue, data: $0.baseAddress!, rows: rows, cols: cols) }
        var x = (0..<tokens * cols).map { _ in Float.random(in: -1...1, using: &rng) }
        for t in 0..<tokens { for ch in [7, 100, 333, 640] { x[t * cols + ch] *= 40 } }
        // Float reference: ggml weights dequantized, float activations, double accumulation.
        var ref = [Float](repeating: 0, count: rows * tokens)
        data.withUnsafeBytes { w in
            x.withUnsafeBufferPointer { xp in
                ref.withUnsafeMutableBufferPointer { op in
                    precondition(lh_ref_matmul(Int32(type.rawValue), w.baseAddress, Int64(rows), Int64(cols),
                                               xp.baseAddress, Int32(tokens), op.baseAddress) == 0)
                }
            }
        }
        let scale = ref.map(abs).max()!
        for path in KernelPath.allCases where path.isSupported {
            var worst: [ActivationPrecision: Float] = [:]
            for precision in ActivationPrecision.allCases {
                let acts = QuantizedActivations(cols: cols, maxTokens: tokens, precision: precision)
                x.withUnsafeBufferPointer { acts.quantize($0.baseAddress!, tokens: tokens, path: path) }
                var out = [Float](repeating: .nan, count: rows * tokens)
                out.withUnsafeMutableBufferPointer { matmul(m, acts, tokens: tokens, into: $0.baseAddress!, pool: Self.pool, path: path) }
                worst[precision] = zip(out, ref).map { abs($0 - $1) }.max()! / scale
            }
            let e8 = worst[.int8]!, e16 = worst[.int16Split]!
            #expect(e16 * 50 <= e8, "\(type) \(path): int8 \(e8), int16 split \(e16)")
            // Measured: int8 0.009-0.020 of the largest output, split 4.5e-5-7e-5 (200-300x less).
            #expect(e16 < 1.5e-4, "\(type) \(path): int16 split error \(e16) of the largest output")
        }
    }

    /// firstToken, outStride and the multi-matrix form address the right memory only.
    @Test(arguments: ActivationPrecision.allCases)
    func offsetsStridesAndMulti(precision: ActivationPrecision) throws {
        var rng = SplitMix64(seed: 11)
        let cols = 128, tokens = 6
        let shapes = [(40, WeightType.q4_1), (16, .q8_0), (9, .q4_0)]
        let mats = try shapes.map { rows, type in
            let d = randomWeights(type, rows: rows, cols: cols, rng: &rng)
            return try d.withUnsafeBytes { try PackedMatrix(type: type.rawValue, data: $0.baseAddress!, rows: rows, cols: cols) }
        }
        let x = randomActivations(tokens: tokens, cols: cols, rng: &rng)
        let acts = QuantizedActivations(cols: cols, maxTokens: tokens, precision: precision)
        x.withUnsafeBufferPointer { acts.quantize($0.baseAddress!, tokens: tokens) }
        for path in KernelPath.allCases where path.isSupported {
            for m in mats {
                var full = [Float](repeating: 0, count: m.rows * tokens)
                full.withUnsafeMutableBufferPointer { matmul(m, acts, tokens: tokens, into: $0.baseAddress!, pool: Self.pool, path: path) }
                // Tokens 2..<5 written with a wider stride: padding keeps its sentinel.
                let stride = m.rows + 3
                var part = [Float](repeating: -7, count: stride * 3)
                part.withUnsafeMutableBufferPointer {
                    matmul(m, acts, tokens: 3, into: $0.baseAddress!, pool: nil, firstToken: 2, outStride: stride, path: path)
                }
                for t in 0..<3 {
                    #expect(Array(part[t * stride..<t * stride + m.rows]) == Array(full[(t + 2) * m.rows..<(t + 3) * m.rows]))
                    #expect(part[t * stride + m.rows..<(t + 1) * stride].allSatisfy { $0 == -7 })
                }
            }
        }
        var outs = mats.map { [Float](repeating: 0, count: $0.rows * tokens) }
        var singles = outs
        for i in mats.indices {
            singles[i].withUnsafeMutableBufferPointer { matmul(mats[i], acts, tokens: tokens, into: $0.baseAddress!, pool: nil) }
        }
        let ptrs = outs.indices.map { i in UnsafeMutablePointer<Float>.allocate(capacity: outs[i].count) }
        defer { ptrs.forEach { $0.deallocate() } }
        matmul(mats, acts, tokens: tokens, into: ptrs, pool: Self.pool)
        for i in mats.indices {
            outs[i] = Array(UnsafeBufferPointer(start: ptrs[i], count: outs[i].count))
            #expect(outs[i] == singles[i])
        }
    }

    @Test func activePathIsReported() {
        #expect(KernelPath.allCases.map(\.rawValue).contains(KernelPath.activePath))
        #expect(KernelPath.scalar.isSupported)
        #expect(KernelPath.active.isSupported)
    }
}
