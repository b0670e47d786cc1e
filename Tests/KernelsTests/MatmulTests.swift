import CKernels
@testable import Kernels
import Testing

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
        var rng = SplitMix64(seed: UInt64(type.rawValue) * 31 + 5)
        for (rows, c, tokens) in matmulShapes {
            let cols = type.blockSize == 256 ? (c + 255) / 256 * 256 : c
            let data = randomWeights(type, rows: rows, cols: cols, rng: &rng)
            let m = try data.withUnsafeBytes {
                try PackedMatrix(type: type.rawValue, data: $0.baseAddress!, rows: rows, cols: cols)
            }
            let x = randomActivations(tokens: tokens, cols: cols, rng: &rng)
            let acts = QuantizedActivations(cols: cols, maxTokens: tokens + 2)
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
            #expect(worst < 2e-5, "\(type) \(path) \(rows)x\(cols) T=\(tokens): relative error \(worst)")

            // 2. Against the original weights and float activations: within the bound of the
            //    int8 activation rounding (da/2 per element) plus the weight requantization.
            let w = dequantizeMatrix(type, data, rows: rows, cols: cols)
            let ref = referenceMatmul(w, rows: rows, cols: cols, x, tokens: tokens)
            var xErr = [Float](repeating: 0, count: tokens * cols)
            for t in 0..<tokens {
                for b in 0..<cols / 32 {
                    let o = t * cols + 32 * b
                    let amax = x[o..<o + 32].map(abs).max()!
                    for j in 0..<32 { xErr[o + j] = amax / 127 / 2 * 1.0001 }
                }
            }
            let wErr = zip(w, wp).map { abs($0 - $1) }
            let b1 = referenceMatmul(wp.map(abs), rows: rows, cols: cols, xErr, tokens: tokens)
            let b2 = referenceMatmul(wErr, rows: rows, cols: cols, x.map(abs), tokens: tokens)
            let magX = referenceMatmul(w.map(abs), rows: rows, cols: cols, x.map(abs), tokens: tokens)
            var violations = 0
            for i in 0..<rows * tokens where !(abs(out[i] - ref[i]) <= b1[i] + b2[i] + 2e-5 * magX[i]) {
                violations += 1
            }
            #expect(violations == 0, "\(type) \(path) \(rows)x\(cols) T=\(tokens)")
        }
    }

    /// All paths quantize activations bit-identically.
    @Test func quantizationIsIdenticalAcrossPaths() {
        var rng = SplitMix64(seed: 9)
        let cols = 576, tokens = 13
        var x = randomActivations(tokens: tokens, cols: cols, rng: &rng)
        for k in 0..<32 { x[k] = 0 } // an all-zero block
        var results: [[Int8]] = []
        var scales: [[Float]] = []
        for path in KernelPath.allCases where path.isSupported {
            let acts = QuantizedActivations(cols: cols, maxTokens: tokens)
            x.withUnsafeBufferPointer { acts.quantize($0.baseAddress!, tokens: tokens, pool: Self.pool, path: path) }
            let a = acts.storage.pointee
            results.append(Array(UnsafeBufferPointer(start: a.q, count: tokens * cols)))
            scales.append(Array(UnsafeBufferPointer(start: a.ds, count: tokens * cols / 16)))
        }
        #expect(results.count >= 1)
        for i in 1..<results.count {
            #expect(results[i] == results[0])
            #expect(scales[i] == scales[0])
        }
        // Quantization error of each value is at most half a step.
        let acts = QuantizedActivations(cols: cols, maxTokens: tokens)
        x.withUnsafeBufferPointer { acts.quantize($0.baseAddress!, tokens: tokens) }
        var xq = [Float](repeating: 0, count: cols)
        for t in 0..<tokens {
            xq.withUnsafeMutableBufferPointer { acts.dequantize(token: t, into: $0.baseAddress!) }
            for b in 0..<cols / 32 {
                let o = t * cols + 32 * b
                let step = x[o..<o + 32].map(abs).max()! / 127
                for j in 0..<32 { #expect(abs(xq[32 * b + j] - x[o + j]) <= step * 0.5001) }
            }
        }
    }

    /// firstToken, outStride and the multi-matrix form address the right memory only.
    @Test func offsetsStridesAndMulti() throws {
        var rng = SplitMix64(seed: 11)
        let cols = 128, tokens = 6
        let shapes = [(40, WeightType.q4_1), (16, .q8_0), (9, .q4_0)]
        let mats = try shapes.map { rows, type in
            let d = randomWeights(type, rows: rows, cols: cols, rng: &rng)
            return try d.withUnsafeBytes { try PackedMatrix(type: type.rawValue, data: $0.baseAddress!, rows: rows, cols: cols) }
        }
        let x = randomActivations(tokens: tokens, cols: cols, rng: &rng)
        let acts = QuantizedActivations(cols: cols, maxTokens: tokens)
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
