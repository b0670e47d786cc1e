import CKernels
import Foundation
import Kernels
import Testing

/// Encoders written from the ggml block definitions, used to build blocks with known values.
enum Encode {
    /// Q4_K / Q5_K 12-byte scale array from 8 six-bit scales and mins.
    static func kScales(_ sc: [Int], _ mn: [Int]) -> [UInt8] {
        var s = [UInt8](repeating: 0, count: 12)
        for j in 0..<4 {
            s[j] = UInt8((sc[j] & 63) | ((sc[j + 4] >> 4) << 6))
            s[j + 4] = UInt8((mn[j] & 63) | ((mn[j + 4] >> 4) << 6))
            s[j + 8] = UInt8((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4))
        }
        return s
    }

    /// Q5_0 / Q5_1 block (ggml block_q5_0 / block_q5_1) from 32 five-bit quants.
    static func q5(d: Float, m: Float?, q: [Int]) -> [UInt8] {
        let off = m == nil ? 2 : 4
        var b = [UInt8](repeating: 0, count: off + 20)
        putU16(&b, 0, f16Bits(d))
        if let m { putU16(&b, 2, f16Bits(m)) }
        var h: UInt32 = 0
        for j in 0..<32 { h |= UInt32(q[j] >> 4) << UInt32(j) }
        for i in 0..<4 { b[off + i] = UInt8((h >> (8 * UInt32(i))) & 0xFF) }
        for j in 0..<16 { b[off + 4 + j] = UInt8((q[j] & 15) | ((q[j + 16] & 15) << 4)) }
        return b
    }

    static func q4K(d: Float, dmin: Float, sc: [Int], mn: [Int], q: [Int]) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 144)
        putU16(&b, 0, f16Bits(d))
        putU16(&b, 2, f16Bits(dmin))
        b.replaceSubrange(4..<16, with: kScales(sc, mn))
        for c in 0..<4 {
            for l in 0..<32 { b[16 + 32 * c + l] = UInt8(q[64 * c + l] | (q[64 * c + 32 + l] << 4)) }
        }
        return b
    }

    static func q5K(d: Float, dmin: Float, sc: [Int], mn: [Int], q: [Int]) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 176)
        putU16(&b, 0, f16Bits(d))
        putU16(&b, 2, f16Bits(dmin))
        b.replaceSubrange(4..<16, with: kScales(sc, mn))
        for c in 0..<4 {
            for l in 0..<32 {
                let lo = q[64 * c + l], hi = q[64 * c + 32 + l]
                b[48 + 32 * c + l] = UInt8((lo & 15) | ((hi & 15) << 4))
                b[16 + l] |= UInt8(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)))
            }
        }
        return b
    }

    static func q6K(d: Float, sc: [Int], q: [Int]) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 210)
        for n in 0..<2 {
            for l in 0..<32 {
                let q1 = q[128 * n + l], q2 = q[128 * n + l + 32]
                let q3 = q[128 * n + l + 64], q4 = q[128 * n + l + 96]
                b[64 * n + l] = UInt8((q1 & 15) | ((q3 & 15) << 4))
                b[64 * n + l + 32] = UInt8((q2 & 15) | ((q4 & 15) << 4))
                b[128 + 32 * n + l] = UInt8((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6))
            }
        }
        for i in 0..<16 { b[192 + i] = UInt8(bitPattern: Int8(sc[i])) }
        putU16(&b, 208, f16Bits(d))
        return b
    }
}

func dequant(_ type: WeightType, _ bytes: [UInt8], count: Int) -> [Float] {
    var out = [Float](repeating: .nan, count: count)
    bytes.withUnsafeBytes { src in
        out.withUnsafeMutableBufferPointer { dequantizeRow(type: type.rawValue, src.baseAddress!, count: count, into: $0.baseAddress!) }
    }
    return out
}

@Suite("Dequantization")
struct DequantizeTests {
    @Test func typeTables() {
        #expect(WeightType.q4_0.blockSize == 32 && WeightType.q4_0.blockBytes == 18)
        #expect(WeightType.q4_1.blockBytes == 20 && WeightType.q8_0.blockBytes == 34)
        #expect(WeightType.q5_0.blockSize == 32 && WeightType.q5_0.blockBytes == 22 && WeightType.q5_1.blockBytes == 24)
        #expect(WeightType.q4_K.blockSize == 256 && WeightType.q4_K.blockBytes == 144)
        #expect(WeightType.q5_K.blockBytes == 176 && WeightType.q6_K.blockBytes == 210)
        #expect(WeightType.f16.rowBytes(count: 10) == 20 && WeightType.bf16.rowBytes(count: 3) == 6)
        #expect(WeightType.q4_0.rowBytes(count: 576) == 18 * 18)
        #expect(WeightType.q4_K.rowBytes(count: 100) == nil)
    }

    @Test func halfConversions() {
        for x: Float in [0, -0.0, 1, -2.5, 65504, 6.1035156e-05, 5.9604645e-08, 0.333251953125, 1e-3] {
            #expect(lh_fp16_to_fp32(f16Bits(x)) == Float(Float16(x)))
            #expect(lh_fp32_to_fp16(x) == f16Bits(x))
        }
        #expect(lh_fp32_to_fp16(1e6) == 0x7C00)
        #expect(lh_fp16_to_fp32(0x7C00) == .infinity)
        #expect(lh_bf16_to_fp32(0x3FC0) == 1.5)
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let h = UInt16.random(in: 0...0x7BFF, using: &rng)
            #expect(lh_fp16_to_fp32(h) == Float(Float16(bitPattern: h)))
            let x = Float.random(in: -70000...70000, using: &rng) * Float.random(in: 0...1, using: &rng)
            #expect(lh_fp32_to_fp16(x) == f16Bits(x))
        }
    }

    @Test func floatTypes() {
        let xs: [Float] = [1, -2.5, 0.5, 1024, -0.125, 3.75]
        var f32 = [UInt8]()
        var f16 = [UInt8]()
        var bf16 = [UInt8]()
        for x in xs {
            withUnsafeBytes(of: x.bitPattern.littleEndian) { f32 += $0 }
            withUnsafeBytes(of: f16Bits(x).littleEndian) { f16 += $0 }
            withUnsafeBytes(of: UInt16(x.bitPattern >> 16).littleEndian) { bf16 += $0 }
        }
        #expect(dequant(.f32, f32, count: 6) == xs)
        #expect(dequant(.f16, f16, count: 6) == xs)
        #expect(dequant(.bf16, bf16, count: 6) == xs)
    }

    @Test func q4_0() {
        // d = 0.5, byte j = low nibble j (elements 0..15), high nibble 15 - j (elements 16..31).
        var b = [UInt8](repeating: 0, count: 18)
        putU16(&b, 0, f16Bits(0.5))
        for j in 0..<16 { b[2 + j] = UInt8(j | ((15 - j) << 4)) }
        let y = dequant(.q4_0, b, count: 32)
        #expect(y[0] == -4 && y[15] == 3.5 && y[16] == 3.5 && y[31] == -4)
        for j in 0..<16 {
            #expect(y[j] == 0.5 * Float(j - 8))
            #expect(y[j + 16] == 0.5 * Float(7 - j))
        }
    }

    @Test func q4_1() {
        var b = [UInt8](repeating: 0, count: 20)
        putU16(&b, 0, f16Bits(0.25))
        putU16(&b, 2, f16Bits(-1))
        for j in 0..<16 { b[4 + j] = UInt8(j | ((15 - j) << 4)) }
        let y = dequant(.q4_1, b, count: 32)
        for j in 0..<16 {
            #expect(y[j] == 0.25 * Float(j) - 1)
            #expect(y[j + 16] == 0.25 * Float(15 - j) - 1)
        }
    }

    @Test func q8_0() {
        var b = [UInt8](repeating: 0, count: 34)
        putU16(&b, 0, f16Bits(0.125))
        for j in 0..<32 { b[2 + j] = UInt8(bitPattern: Int8(j * 8 - 128 + j / 4)) }
        let y = dequant(.q8_0, b, count: 32)
        for j in 0..<32 { #expect(y[j] == 0.125 * Float(j * 8 - 128 + j / 4)) }
    }

    @Test func q5_0() {
        let q = (0..<32).map { ($0 * 13 + 5) % 32 }
        let y = dequant(.q5_0, Encode.q5(d: -0.375, m: nil, q: q), count: 32)
        for j in 0..<32 { #expect(y[j] == -0.375 * Float(q[j] - 16), "element \(j)") }
    }

    @Test func q5_1() {
        let q = (0..<32).map { ($0 * 7 + 3) % 32 }
        let y = dequant(.q5_1, Encode.q5(d: 0.125, m: -2.5, q: q), count: 32)
        for j in 0..<32 { #expect(y[j] == 0.125 * Float(q[j]) - 2.5, "element \(j)") }
    }

    /// Blocks quantized and dequantized by the `gguf` Python package (Scripts/golden-q5.py): the
    /// reference must give the same floats bit for bit, and the packed form must hold them exactly.
    @Test(arguments: [WeightType.q5_0, .q5_1])
    func goldenBlocksFromOutsideImplementation(type: WeightType) throws {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/q5-golden.json", withExtension: nil))
        let root = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let types = try #require(root["types"] as? [String: Any])
        let entries = try #require(types[type.description] as? [[String: Any]])
        #expect(entries.count >= 8)
        var all = [UInt8](), expected = [Float]()
        for (i, e) in entries.enumerated() {
            let hex = try #require(e["bytes"] as? String)
            let bytes = stride(from: 0, to: hex.count, by: 2).map { k in
                UInt8(hex.dropFirst(k).prefix(2), radix: 16)!
            }
            #expect(bytes.count == type.blockBytes, "block \(i)")
            let values = try #require(e["values"] as? [Double]).map { Float($0) }
            #expect(dequant(type, bytes, count: 32) == values, "\(type) golden block \(i)")
            all += bytes
            expected += values
        }
        // The same blocks as one row, through the packed format every ISA path multiplies with.
        let cols = 32 * entries.count
        let m = try all.withUnsafeBytes { try PackedMatrix(type: type.rawValue, data: $0.baseAddress!, rows: 1, cols: cols) }
        #expect(m.isExact && m.bits == 8)
        var row = [Float](repeating: .nan, count: cols)
        row.withUnsafeMutableBufferPointer { m.dequantizeRow(0, into: $0.baseAddress!) }
        #expect(row == expected)
    }

    @Test func q4_K() {
        let sc = [1, 2, 3, 63, 17, 33, 48, 60], mn = [0, 5, 9, 2, 63, 31, 16, 40]
        let q = (0..<256).map { ($0 * 7 + $0 / 5) % 16 }
        let y = dequant(.q4_K, Encode.q4K(d: 0.5, dmin: 0.25, sc: sc, mn: mn, q: q), count: 256)
        for i in 0..<256 {
            let s = i / 32
            #expect(y[i] == 0.5 * Float(sc[s]) * Float(q[i]) - 0.25 * Float(mn[s]), "element \(i)")
        }
    }

    @Test func q5_K() {
        let sc = [63, 1, 40, 7, 20, 33, 62, 9], mn = [3, 63, 0, 12, 41, 30, 16, 58]
        let q = (0..<256).map { ($0 * 11 + $0 / 3) % 32 }
        let y = dequant(.q5_K, Encode.q5K(d: 0.25, dmin: 0.5, sc: sc, mn: mn, q: q), count: 256)
        for i in 0..<256 {
            let s = i / 32
            #expect(y[i] == 0.25 * Float(sc[s]) * Float(q[i]) - 0.5 * Float(mn[s]), "element \(i)")
        }
    }

    @Test func q6_K() {
        let sc = [1, -2, 3, 127, -128, 5, 6, -7, 8, 9, 10, -11, 12, 13, 14, 100]
        let q = (0..<256).map { ($0 * 13 + $0 / 7) % 64 }
        let y = dequant(.q6_K, Encode.q6K(d: 0.5, sc: sc, q: q), count: 256)
        for i in 0..<256 {
            #expect(y[i] == 0.5 * Float(sc[i / 16]) * Float(q[i] - 32), "element \(i)")
        }
    }

    @Test func packedValuesAreExactForBlockTypes() throws {
        var rng = SplitMix64(seed: 1)
        for type in [WeightType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K] {
            let rows = 19, cols = 512
            let data = randomWeights(type, rows: rows, cols: cols, rng: &rng)
            let ref = dequantizeMatrix(type, data, rows: rows, cols: cols)
            let m = try data.withUnsafeBytes { try PackedMatrix(type: type.rawValue, data: $0.baseAddress!, rows: rows, cols: cols) }
            #expect(m.isExact)
            var row = [Float](repeating: 0, count: cols)
            for r in 0..<rows {
                row.withUnsafeMutableBufferPointer { m.dequantizeRow(r, into: $0.baseAddress!) }
                #expect(Array(ref[r * cols..<(r + 1) * cols]) == row, "\(type) row \(r)")
            }
        }
    }

    /// Requantized types stay within half a step of an 8-bit grid spanning each block of 32.
    @Test func requantizationErrorBound() throws {
        var rng = SplitMix64(seed: 2)
        for type in [WeightType.q6_K, .f16, .bf16, .f32] {
            let rows = 7, cols = 256
            let data = randomWeights(type, rows: rows, cols: cols, rng: &rng)
            let ref = dequantizeMatrix(type, data, rows: rows, cols: cols)
            let m = try data.withUnsafeBytes { try PackedMatrix(type: type.rawValue, data: $0.baseAddress!, rows: rows, cols: cols) }
            #expect(!m.isExact && m.bits == 8)
            var row = [Float](repeating: 0, count: cols)
            for r in 0..<rows {
                row.withUnsafeMutableBufferPointer { m.dequantizeRow(r, into: $0.baseAddress!) }
                for b in 0..<cols / 32 {
                    let blk = ref[(r * cols + 32 * b)..<(r * cols + 32 * b + 32)]
                    let bound = (blk.max()! - blk.min()!) / 510 * 1.001 + 1e-7
                    for j in 0..<32 {
                        #expect(abs(row[32 * b + j] - ref[r * cols + 32 * b + j]) <= bound, "\(type) r\(r) k\(32 * b + j)")
                    }
                }
            }
        }
    }

    @Test func packErrors() {
        let bytes = [UInt8](repeating: 0, count: 4096)
        bytes.withUnsafeBytes { p in
            #expect(throws: KernelError.invalidShape(type: 2, rows: 2, cols: 48)) {
                try PackedMatrix(type: 2, data: p.baseAddress!, rows: 2, cols: 48)
            }
            #expect(throws: KernelError.invalidShape(type: 12, rows: 1, cols: 32)) {
                try PackedMatrix(type: 12, data: p.baseAddress!, rows: 1, cols: 32)
            }
            #expect(throws: KernelError.invalidShape(type: 0, rows: 0, cols: 32)) {
                try PackedMatrix(type: 0, data: p.baseAddress!, rows: 0, cols: 32)
            }
            #expect(throws: KernelError.unsupportedType(type: 10, rows: 1, cols: 32)) {
                try PackedMatrix(type: 10, data: p.baseAddress!, rows: 1, cols: 32)
            }
        }
        #expect(KernelError.unsupportedType(type: 10, rows: 1, cols: 32).description.contains("type 10"))
    }
}
