import CKernels
import Kernels

/// Deterministic generator so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func f16Bits(_ x: Float) -> UInt16 { Float16(x).bitPattern }

func putU16(_ bytes: inout [UInt8], _ offset: Int, _ v: UInt16) {
    bytes[offset] = UInt8(v & 0xFF)
    bytes[offset + 1] = UInt8(v >> 8)
}

/// Random but valid ggml data: random quants, small finite f16 scales, floats in [-1, 1].
func randomWeights(_ type: WeightType, rows: Int, cols: Int, rng: inout SplitMix64) -> [UInt8] {
    let rowBytes = type.rowBytes(count: cols)!
    var bytes = (0..<rows * rowBytes).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let blocks = rows * rowBytes / type.blockBytes
    for b in 0..<blocks {
        let o = b * type.blockBytes
        let d = Float.random(in: 0.002...0.05, using: &rng) * (Bool.random(using: &rng) ? 1 : -1)
        switch type {
        case .q4_0, .q8_0, .q5_0:
            putU16(&bytes, o, f16Bits(d))
        case .q4_1, .q5_1:
            putU16(&bytes, o, f16Bits(abs(d)))
            putU16(&bytes, o + 2, f16Bits(-Float.random(in: 0...0.4, using: &rng)))
        case .q4_K, .q5_K:
            putU16(&bytes, o, f16Bits(abs(d) / 16))
            putU16(&bytes, o + 2, f16Bits(Float.random(in: 0...0.01, using: &rng)))
        case .q6_K:
            putU16(&bytes, o + 208, f16Bits(abs(d) / 64))
        case .f16:
            putU16(&bytes, o, f16Bits(Float.random(in: -1...1, using: &rng)))
        case .bf16:
            putU16(&bytes, o, UInt16(Float.random(in: -1...1, using: &rng).bitPattern >> 16))
        case .f32:
            let bits = Float.random(in: -1...1, using: &rng).bitPattern
            for i in 0..<4 { bytes[o + i] = UInt8((bits >> (8 * UInt32(i))) & 0xFF) }
        }
    }
    return bytes
}

/// Reference dequantization of a whole matrix (row-major floats).
func dequantizeMatrix(_ type: WeightType, _ bytes: [UInt8], rows: Int, cols: Int) -> [Float] {
    var out = [Float](repeating: 0, count: rows * cols)
    let rb = type.rowBytes(count: cols)!
    bytes.withUnsafeBytes { src in
        out.withUnsafeMutableBufferPointer { dst in
            for r in 0..<rows {
                dequantizeRow(type: type.rawValue, src.baseAddress! + r * rb, count: cols,
                              into: dst.baseAddress! + r * cols)
            }
        }
    }
    return out
}

/// out[t][r] = sum_k w[r][k] x[t][k] in double (C reference over F32 data).
func referenceMatmul(_ w: [Float], rows: Int, cols: Int, _ x: [Float], tokens: Int) -> [Float] {
    var out = [Float](repeating: 0, count: rows * tokens)
    w.withUnsafeBytes { wp in
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                let rc = lh_ref_matmul(Int32(LH_TYPE_F32), wp.baseAddress, Int64(rows), Int64(cols),
                                       xp.baseAddress, Int32(tokens), op.baseAddress)
                precondition(rc == 0)
            }
        }
    }
    return out
}
