import CStoreSupport
import Foundation
import Testing
@testable import KVStore

// Serialized: two tests switch the process-wide scalar/SIMD choice.
@Suite("CRC-32C, f16 conversion and the KIVI q8/q4 codec", .serialized)
struct ConversionTests {
    @Test func crc32cKnownValues() {
        let s = Array("123456789".utf8)
        #expect(cs_crc32c(0, s, s.count) == 0xE306_9283)
        #expect(cs_crc32c(0, s, 0) == 0)
        // Continuing a CRC over two pieces equals the CRC of the whole.
        let long = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let whole = cs_crc32c(0, long, long.count)
        let part = long.withUnsafeBytes { cs_crc32c(cs_crc32c(0, $0.baseAddress!, 333), $0.baseAddress! + 333, 667) }
        #expect(whole == part)
    }

    @Test func scalarAndSIMDAgreeBitForBit() {
        var rng = TestRNG(seed: 42)
        for n in [1, 7, 15, 16, 17, 31, 32, 33, 63, 100, 1000] {
            var x = (0..<n).map { _ in rng.gaussian() * 3 }
            if n > 10 { x[1] = 70000; x[2] = -1e9; x[3] = 1e-6; x[4] = -3e-8; x[5] = .infinity; x[6] = 0 }
            var h1 = [UInt16](repeating: 0, count: n), h2 = h1
            var c1: UInt32 = 0, c2: UInt32 = 0
            cs_force_scalar(1)
            cs_f32_to_f16(&h1, x, n)
            c1 = cs_crc32c(0, x, 4 * n)
            cs_force_scalar(0)
            cs_f32_to_f16(&h2, x, n)
            c2 = cs_crc32c(0, x, 4 * n)
            #expect(h1 == h2, "f16 differs for n=\(n)")
            #expect(c1 == c2, "crc differs for n=\(n)")
        }
    }

    @Test func f16SpecialValues() {
        let x: [Float] = [0, -0.0, 1, -2, 65504, 65519, 65520, 1e9, -.infinity, 6.1035156e-05, 5.9604645e-08, 2e-8, .nan]
        var h = [UInt16](repeating: 0, count: x.count)
        for scalar in [1, 0] as [Int32] {
            cs_force_scalar(scalar)
            cs_f32_to_f16(&h, x, x.count)
            #expect(Array(h[0..<12]) == [0, 0x8000, 0x3C00, 0xC000, 0x7BFF, 0x7BFF, 0x7BFF, 0x7BFF, 0xFBFF, 0x0400, 0x0001, 0x0000])
            #expect(h[12] & 0x7C00 == 0x7C00 && h[12] & 0x3FF != 0, "NaN stays NaN")
        }
        cs_force_scalar(0)
    }

    /// f16 decoded in place from the tail of the float buffer (how pages are read) equals decoding from
    /// a separate buffer, for lengths around every SIMD block boundary.
    @Test func inPlaceDecodeEqualsOutOfPlace() {
        var rng = TestRNG(seed: 9)
        for scalar in [0, 1] as [Int32] {
            cs_force_scalar(scalar)
            for n in [1, 2, 3, 8, 15, 16, 17, 31, 32, 33, 34, 64, 65, 95, 96, 97, 1000, 98_304] {
                let x = (0..<n).map { _ in rng.gaussian() }
                var enc = [UInt16](repeating: 0, count: n)
                cs_f32_to_f16(&enc, x, n)
                var separate = [Float](repeating: 0, count: n)
                cs_f16_to_f32(&separate, enc, n)
                var inPlace = [Float](repeating: 0, count: n)
                inPlace.withUnsafeMutableBufferPointer { d in
                    let tail = UnsafeMutableRawPointer(d.baseAddress!) + 2 * n
                    enc.withUnsafeBytes { tail.copyMemory(from: $0.baseAddress!, byteCount: 2 * n) }
                    cs_f16_to_f32(d.baseAddress!, tail.assumingMemoryBound(to: UInt16.self), n)
                }
                #expect(separate == inPlace, "f16 n=\(n) scalar=\(scalar)")
                for i in 0..<n { #expect(abs(x[i] - separate[i]) <= max(abs(x[i]) * 0.000_488_3, 3e-8)) }
            }
        }
        cs_force_scalar(0)
    }

    /// Page geometries around the codec's edges: one tile, a last key group of fewer than 4 tiles, head
    /// dims below, at and off the 16-lane vectors, and the real SmolLM2 page.
    static let kiviShapes: [(G: Int, w: Int, D: Int)] = [(1, 16, 8), (2, 48, 8), (1, 80, 3), (2, 32, 16), (2, 64, 24), (3, 256, 64)]

    /// KV-like test page: per-channel scales from 0.1 to 8 and an outlier channel in the keys (KIVI's
    /// observation), per-token scales in the values; some exact zeros, a constant group, a non-finite value.
    static func kiviPage(G: Int, w: Int, D: Int, rng: inout TestRNG) -> [Float] {
        var x = [Float](repeating: 0, count: 2 * G * w * D)
        for g in 0..<G {
            for t in 0..<w {
                for d in 0..<D {
                    let kScale: Float = d == 1 ? 30 : 0.1 + Float(d % 8)
                    x[g * w * D + (t / 16) * 16 * D + d * 16 + t % 16] = 2 + rng.gaussian() * kScale  // keys: offset + per-channel scale
                    x[(G + g) * w * D + t * D + d] = rng.gaussian() * (0.05 + Float(t % 5))
                }
            }
        }
        x[5] = 0
        for d in 0..<D { x[(G + 0) * w * D + 2 * D + d] = 0.25 }  // value token 2 of head 0: a constant group
        return x
    }

    static func kiviEncode(_ x: [Float], bits: Int32, _ s: (G: Int, w: Int, D: Int)) -> [UInt8] {
        var enc = [UInt8](repeating: 0xAA, count: cs_kivi_bytes(bits, Int32(s.G), Int32(s.w), Int32(s.D)))
        cs_kivi_encode(&enc, x, bits, Int32(s.G), Int32(s.w), Int32(s.D))
        return enc
    }

    /// Every decoded value lies within half a step of its group (per key channel over 64 tokens, per value
    /// token), with groups computed independently of the codec (`kiviGroups`), for q8 and q4; the SIMD
    /// decode equals the scalar reference bit for bit, out of place and in place from the buffer's tail.
    @Test(arguments: [Int32(8), 4])
    func kiviRoundTripWithinGroupBounds(bits: Int32) {
        var rng = TestRNG(seed: 13)
        for s in Self.kiviShapes {
            let (G, w, D) = (Int32(s.G), Int32(s.w), Int32(s.D))
            var x = Self.kiviPage(G: s.G, w: s.w, D: s.D, rng: &rng)
            let enc = Self.kiviEncode(x, bits: bits, s)
            let n = x.count
            var params = [UInt16](repeating: 0, count: cs_kivi_param_bytes(G, w, D) / 2)
            var ref = [Float](repeating: .nan, count: n), fast = ref
            cs_kivi_decode_ref(&ref, enc, &params, bits, G, w, D)
            cs_kivi_decode(&fast, enc, &params, bits, G, w, D)
            #expect(ref.withUnsafeBytes { Array($0) } == fast.withUnsafeBytes { Array($0) }, "SIMD decode differs, \(s) q\(bits)")
            var inPlace = [Float](repeating: .nan, count: n)
            inPlace.withUnsafeMutableBufferPointer { d in
                let tail = UnsafeMutableRawPointer(d.baseAddress!) + 4 * n - enc.count
                enc.withUnsafeBytes { tail.copyMemory(from: $0.baseAddress!, byteCount: enc.count) }
                cs_kivi_decode(d.baseAddress!, tail.assumingMemoryBound(to: UInt8.self), &params, bits, G, w, D)
            }
            #expect(inPlace == ref, "in-place decode differs, \(s) q\(bits)")
            let g = StoreGeometry(layers: 1, kvHeads: s.G, queryHeads: s.G, headDim: s.D, chunkSize: s.w, precision: bits == 8 ? .q8 : .q4)
            #expect(g.encodedPageBytes == enc.count)
            ref.withUnsafeBufferPointer { expectClose(x, $0, geometry: g) }
            // The constant value group decodes exactly; the zero key stays within its channel's bound (above).
            #expect((0..<s.D).allSatisfy { ref[s.G * s.w * s.D + 2 * s.D + $0] == 0.25 })
            // Non-finite inputs are stored as 0 (they never come from a finite model; no NaN on disk).
            x[7] = .nan
            x[n - 1] = .infinity
            var dec = [Float](repeating: 0, count: n)
            cs_kivi_decode_ref(&dec, Self.kiviEncode(x, bits: bits, s), &params, bits, G, w, D)
            #expect(dec.allSatisfy { $0.isFinite })
        }
    }

    /// Keys are grouped per channel and values per token (KIVI section 3): a huge outlier in one key
    /// channel, or in one value token, leaves the error of every other channel, or token, as small as without it.
    @Test(arguments: [Int32(8), 4])
    func kiviOutliersStayInTheirGroup(bits: Int32) {
        var rng = TestRNG(seed: 5)
        let s = (G: 1, w: 64, D: 16)
        let base = Self.kiviPage(G: s.G, w: s.w, D: s.D, rng: &rng)
        var spiked = base
        for t in 0..<s.w { spiked[(t / 16) * 16 * s.D + 4 * 16 + t % 16] *= 1000 }  // key channel 4, all tokens
        for d in 0..<s.D { spiked[s.G * s.w * s.D + 9 * s.D + d] *= 1000 }  // value token 9
        func errors(_ x: [Float]) -> [Float] {
            var params = [UInt16](repeating: 0, count: cs_kivi_param_bytes(1, Int32(s.w), Int32(s.D)) / 2)
            var dec = [Float](repeating: 0, count: x.count)
            cs_kivi_decode_ref(&dec, Self.kiviEncode(x, bits: bits, s), &params, bits, 1, Int32(s.w), Int32(s.D))
            return zip(x, dec).map { abs($0 - $1) }
        }
        let e0 = errors(base), e1 = errors(spiked)
        let groups = kiviGroups(StoreGeometry(layers: 1, kvHeads: 1, queryHeads: 1, headDim: s.D, chunkSize: s.w, precision: .q8))
        let spikedGroups = Set([groups[4 * 16], groups[s.G * s.w * s.D + 9 * s.D]])
        for i in 0..<base.count where !spikedGroups.contains(groups[i]) { #expect(e1[i] == e0[i], "value \(i) affected by another group's outlier") }
    }
}
