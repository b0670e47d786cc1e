import CKernels
import CStoreSupport
import Foundation
import TestSupport
import Testing

/// Attention over q8/q4 pages with the dequantization fused into the kernel (`lh_attn_update_kivi`, issue
/// 13) against decode-then-attend: the page decoded by the store's codec (`cs_kivi_decode`) and read by
/// `lh_attn_update`. The fused kernel dequantizes with the codec's operations (a product, then a sum) and
/// folds the same tiles in the same order, so the two must agree bit for bit — the AVX-512 path with
/// the AVX-512 path, the plain reference with the plain reference.
@Suite struct FusedKiviAttentionTests {
    struct Case: CustomStringConvertible {
        /// KV heads, chunk tokens, head width, keys read (n ≤ w), queries.
        let G: Int, w: Int, D: Int, n: Int, nq: Int
        var description: String { "G\(G) w\(w) D\(D) n\(n) nq\(nq)" }
    }

    static let cases = [
        Case(G: 3, w: 256, D: 64, n: 256, nq: 3),   // SmolLM2-135M's page, one decode step's queries
        Case(G: 2, w: 64, D: 64, n: 64, nq: 40),    // many queries per tile (streaming)
        Case(G: 2, w: 48, D: 64, n: 37, nq: 5),     // a partial last chunk, the last key group of 3 tiles
        Case(G: 1, w: 80, D: 16, n: 80, nq: 4),     // key groups of 4 tiles and 1 tile
        Case(G: 2, w: 32, D: 24, n: 29, nq: 2),     // D not a multiple of 16: the plain path only
        Case(G: 1, w: 32, D: 144, n: 32, nq: 3),    // wider than the stack scratch
        Case(G: 1, w: 16, D: 16, n: 16, nq: 300),   // more queries than the stack's per-query ends
    ]

    /// A float page in the store's layout with tokens ≥ n zeroed (as a partial chunk is written), its
    /// encoding, and the encoding decoded back to floats by the codec.
    static func page(_ c: Case, bits: Int32, seed: UInt64) -> (encoded: [UInt8], decoded: [Float]) {
        var r = SplitMix(seed: seed)
        let headFloats = c.w * c.D
        var floats = [Float](repeating: 0, count: 2 * c.G * headFloats)
        for g in 0..<c.G {
            for t in 0..<c.n {
                // Keys: a per-channel offset (KIVI's outlier channels) plus noise; values: noise.
                for d in 0..<c.D {
                    let k = Float(d % 7) - 3 + (r.nextFloat() * 2 - 1)
                    floats[g * headFloats + (t / 16) * 16 * c.D + d * 16 + t % 16] = k
                    floats[(c.G + g) * headFloats + t * c.D + d] = r.nextFloat() * 2 - 1
                }
            }
        }
        let (G, w, D) = (Int32(c.G), Int32(c.w), Int32(c.D))
        var encoded = [UInt8](repeating: 0, count: cs_kivi_bytes(bits, G, w, D))
        cs_kivi_encode(&encoded, floats, bits, G, w, D)
        var decoded = [Float](repeating: 0, count: floats.count)
        var params = [UInt16](repeating: 0, count: cs_kivi_param_bytes(G, w, D) / 2)
        cs_kivi_decode(&decoded, encoded, &params, bits, G, w, D)
        return (encoded, decoded)
    }

    typealias FloatKernel = (UnsafePointer<Float>, Int32, Int32, Int32, UnsafePointer<Float>, UnsafePointer<Float>, Int32, Int32,
                             UnsafePointer<Int32>?, Float, UnsafeMutablePointer<lh_softmax_state>, UnsafeMutablePointer<Float>, Int32) -> Void
    typealias KiviKernel = (UnsafePointer<Float>, Int32, Int32, Int32, UnsafePointer<lh_kivi_page>, Int32, Int32, UnsafePointer<Int32>?,
                            Float, UnsafeMutablePointer<lh_softmax_state>, UnsafeMutablePointer<Float>, Int32) -> Void

    /// Runs both paths over every KV head of two pages in turn (the online softmax carried from the first
    /// into the second, as LongHeads merges slots) and returns (decode-then-attend, fused) as the raw
    /// accumulators and states, unnormalized.
    static func run(_ c: Case, bits: Int32, limits: [Int32]?, float: FloatKernel, fused: KiviKernel) -> ([Float], [Float]) {
        let pages = [page(c, bits: bits, seed: UInt64(c.w * 31 + c.D) &+ UInt64(bits)), page(c, bits: bits, seed: 99 &+ UInt64(bits))]
        var r = SplitMix(seed: 5)
        let q = (0..<(c.nq * c.D)).map { _ in (r.nextFloat() * 2 - 1) * 2 }
        let scale = 1 / Float(c.D).squareRoot()
        let headFloats = c.w * c.D
        var outA = [Float](), outB = [Float]()
        for g in 0..<c.G {
            var stA = [lh_softmax_state](repeating: lh_softmax_state(m: -.infinity, l: 0), count: c.nq), stB = stA
            var accA = [Float](repeating: 0, count: c.nq * c.D), accB = accA
            for p in pages {
                p.decoded.withUnsafeBufferPointer { dp in
                    float(q, Int32(c.D), Int32(c.nq), Int32(c.D), dp.baseAddress! + g * headFloats, dp.baseAddress! + (c.G + g) * headFloats,
                          Int32(c.D), Int32(c.n), limits, scale, &stA, &accA, Int32(c.D))
                }
                p.encoded.withUnsafeBytes { eb in
                    let base = eb.baseAddress!
                    var kp = lh_kivi_page(params: base.assumingMemoryBound(to: UInt16.self),
                                          codes: (base + cs_kivi_param_bytes(Int32(c.G), Int32(c.w), Int32(c.D))).assumingMemoryBound(to: UInt8.self),
                                          bits: bits, kvHeads: Int32(c.G), chunk: Int32(c.w))
                    fused(q, Int32(c.D), Int32(c.nq), Int32(c.D), &kp, Int32(g), Int32(c.n), limits, scale, &stB, &accB, Int32(c.D))
                }
            }
            outA += accA + stA.flatMap { [$0.m, $0.l] }
            outB += accB + stB.flatMap { [$0.m, $0.l] }
        }
        return (outA, outB)
    }

    static func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }

    @Test(arguments: cases, [Int32(8), 4])
    func fusedEqualsDecodeThenAttendBitForBit(c: Case, bits: Int32) {
        // Causal limits that end inside a tile, on a tile boundary, at 0 and past n; and none.
        let limits: [Int32] = (0..<c.nq).map { i in [Int32(c.n), 1, 0, 17, Int32(c.n) - 5, 16, Int32(c.n) + 9][i % 7] }
        for lim in [nil, limits] {
            let (a, b) = Self.run(c, bits: bits, limits: lim, float: lh_attn_update, fused: lh_attn_update_kivi)
            #expect(Self.bits(a) == Self.bits(b), "dispatched paths, \(c) q\(bits) limits \(lim != nil)")
            let (ra, rb) = Self.run(c, bits: bits, limits: lim, float: lh_attn_update_ref, fused: lh_attn_update_kivi_ref)
            #expect(Self.bits(ra) == Self.bits(rb), "references, \(c) q\(bits) limits \(lim != nil)")
            // The fast path against the plain one: the same attention within float rounding (FMA and the
            // vector exp; AttentionKernelTests bounds the float kernels the same way).
            let scaleA = a.map(abs).max() ?? 1
            let worst = zip(a, ra).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-4 * max(1, scaleA), "fast vs reference \(worst), \(c) q\(bits)")
        }
    }

    /// Time per read of one SmolLM2-135M page (3 KV heads, 256 tokens, D 64) by `nq` queries per KV head,
    /// cycling over 64 copies of the page (25 MB of floats: out of the caches, as an `ask`'s 90 pages are),
    /// three ways: attention over floats already in the cache (the old path's cache hit), the old miss
    /// (decode the whole page, then attend) and the fused read. `KIVI_BENCH=1 swift test --filter
    /// FusedKiviAttentionTests`; Docs/PERFORMANCE.md quotes it.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["KIVI_BENCH"] != nil))
    func benchmark() {
        let c = Case(G: 3, w: 256, D: 64, n: 256, nq: 3)
        let (G, w, D) = (Int32(c.G), Int32(c.w), Int32(c.D))
        for bits in [Int32(4), 8] {
            let p = Self.page(c, bits: bits, seed: 1)
            let copies = 64
            let decodedPages = (0..<copies).map { _ in p.decoded.map { $0 } }
            let encodedPages = (0..<copies).map { _ in p.encoded.map { $0 } }
            var next = 0
            var params = [UInt16](repeating: 0, count: cs_kivi_param_bytes(G, w, D) / 2)
            var floats = [Float](repeating: 0, count: p.decoded.count)
            for nq in [3, 64] {
                var r = SplitMix(seed: 2)
                let q = (0..<(nq * c.D)).map { _ in r.nextFloat() * 2 - 1 }
                var st = [lh_softmax_state](repeating: lh_softmax_state(m: -.infinity, l: 0), count: nq)
                var acc = [Float](repeating: 0, count: nq * c.D)
                let scale = 1 / Float(c.D).squareRoot()
                func attendFloats(_ f: UnsafePointer<Float>) {
                    for g in 0..<c.G {
                        lh_attn_update(q, D, Int32(nq), D, f + g * c.w * c.D, f + (c.G + g) * c.w * c.D, D, w, nil, scale, &st, &acc, D)
                    }
                }
                func time(_ body: () -> Void) -> Double {
                    var best = Double.infinity
                    // Best of many short runs: on the shared machine, the quiet moments.
                    for _ in 0..<40 {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        for _ in 0..<32 { body() }
                        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 32 / 1000)
                    }
                    return best
                }
                let hit = time {
                    next = (next + 1) % copies
                    decodedPages[next].withUnsafeBufferPointer { attendFloats($0.baseAddress!) }
                }
                let miss = time {
                    next = (next + 1) % copies
                    cs_kivi_decode(&floats, encodedPages[next], &params, bits, G, w, D)
                    floats.withUnsafeBufferPointer { attendFloats($0.baseAddress!) }
                }
                let fused = time {
                    next = (next + 1) % copies
                    encodedPages[next].withUnsafeBytes { eb in
                        var kp = lh_kivi_page(params: eb.baseAddress!.assumingMemoryBound(to: UInt16.self),
                                              codes: (eb.baseAddress! + cs_kivi_param_bytes(G, w, D)).assumingMemoryBound(to: UInt8.self),
                                              bits: bits, kvHeads: G, chunk: w)
                        for g in 0..<c.G { lh_attn_update_kivi(q, D, Int32(nq), D, &kp, Int32(g), w, nil, scale, &st, &acc, D) }
                    }
                }
                print(String(format: "[kivi bench] q%d, %d queries per KV head: floats in cache %.1f µs, decode + attend %.1f µs, fused %.1f µs per page",
                             bits, nq, hit, miss, fused))
            }
        }
    }
}
