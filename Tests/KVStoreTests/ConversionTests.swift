import CStoreSupport
import Foundation
import Testing
@testable import KVStore

// Serialized: two tests switch the process-wide scalar/SIMD choice.
@Suite("CRC-32C and f16 / q8 conversion", .serialized)
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
            var q1 = [UInt8](repeating: 0, count: cs_q8_bytes(n)), q2 = q1
            var c1: UInt32 = 0, c2: UInt32 = 0
            cs_force_scalar(1)
            cs_f32_to_f16(&h1, x, n)
            cs_f32_to_q8(&q1, x.map { $0.isFinite ? $0 : 1 }, n)
            c1 = cs_crc32c(0, x, 4 * n)
            cs_force_scalar(0)
            cs_f32_to_f16(&h2, x, n)
            cs_f32_to_q8(&q2, x.map { $0.isFinite ? $0 : 1 }, n)
            c2 = cs_crc32c(0, x, 4 * n)
            #expect(h1 == h2, "f16 differs for n=\(n)")
            #expect(q1 == q2, "q8 differs for n=\(n)")
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

    /// Decoding in place from the tail of the float buffer (how pages are read) equals decoding from a
    /// separate buffer, for lengths around every SIMD block boundary.
    @Test func inPlaceDecodeEqualsOutOfPlace() {
        var rng = TestRNG(seed: 9)
        for scalar in [0, 1] as [Int32] {
            cs_force_scalar(scalar)
            for n in [1, 2, 3, 8, 15, 16, 17, 31, 32, 33, 34, 64, 65, 95, 96, 97, 1000, 98_304] {
                let x = (0..<n).map { _ in rng.gaussian() }
                for precision in [KVPrecision.f16, .q8] {
                    let bytes = precision.encodedBytes(floats: n)
                    var enc = [UInt8](repeating: 0, count: bytes)
                    enc.withUnsafeMutableBytes { e in
                        if precision == .f16 { cs_f32_to_f16(e.baseAddress!.assumingMemoryBound(to: UInt16.self), x, n) } else {
                            cs_f32_to_q8(e.baseAddress!.assumingMemoryBound(to: UInt8.self), x, n)
                        }
                    }
                    var separate = [Float](repeating: 0, count: n)
                    enc.withUnsafeBytes { e in
                        if precision == .f16 { cs_f16_to_f32(&separate, e.baseAddress!.assumingMemoryBound(to: UInt16.self), n) } else {
                            cs_q8_to_f32(&separate, e.baseAddress!.assumingMemoryBound(to: UInt8.self), n)
                        }
                    }
                    var inPlace = [Float](repeating: 0, count: n)
                    inPlace.withUnsafeMutableBufferPointer { d in
                        let tail = UnsafeMutableRawPointer(d.baseAddress!) + 4 * n - bytes
                        enc.withUnsafeBytes { tail.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
                        if precision == .f16 { cs_f16_to_f32(d.baseAddress!, tail.assumingMemoryBound(to: UInt16.self), n) } else {
                            cs_q8_to_f32(d.baseAddress!, tail.assumingMemoryBound(to: UInt8.self), n)
                        }
                    }
                    #expect(separate == inPlace, "\(precision) n=\(n) scalar=\(scalar)")
                    separate.withUnsafeBufferPointer { expectClose(x, $0, precision: precision) }
                }
            }
        }
        cs_force_scalar(0)
    }
}
