import CKernels
import Foundation
import TestSupport
import Testing

/// lh_attn_update (AVX-512 when available) against its plain C reference, and online-softmax merging
/// against one-shot softmax attention.
@Suite struct AttentionKernelTests {
    struct Case { let D: Int; let n: Int; let nq: Int }

    static func random(_ n: Int, _ r: inout SplitMix, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in (r.nextFloat() * 2 - 1) * scale }
    }

    /// Plain softmax attention of one query over rows of keys/values.
    static func direct(q: [Float], keys: [[Float]], values: [[Float]], scale: Float) -> [Float] {
        let s = keys.map { k in zip(q, k).reduce(Float(0)) { $0 + $1.0 * $1.1 } * scale }
        let m = s.max()!
        let e = s.map { expf($0 - m) }
        let z = e.reduce(0, +)
        var out = [Float](repeating: 0, count: q.count)
        for (j, v) in values.enumerated() { for d in 0..<q.count { out[d] += e[j] / z * v[d] } }
        return out
    }

    @Test(arguments: [Case(D: 64, n: 256, nq: 3), Case(D: 64, n: 37, nq: 1), Case(D: 128, n: 100, nq: 9), Case(D: 16, n: 5, nq: 4), Case(D: 64, n: 1, nq: 2)])
    func fastPathMatchesReferenceAndDirect(c: Case) {
        var r = SplitMix(seed: UInt64(c.D * 1000 + c.n))
        let tiles = (c.n + 15) / 16
        var kt = [Float](repeating: .nan, count: tiles * 16 * c.D)  // padding must never be read into results
        var keys = [[Float]]()
        for j in 0..<c.n {
            let k = Self.random(c.D, &r, scale: 2)
            keys.append(k)
            kt.withUnsafeMutableBufferPointer { lh_store_key_tiled($0.baseAddress!, Int32(c.D), Int32(j), k) }
        }
        let values = (0..<c.n).map { _ in Self.random(c.D, &r) }
        let vflat = values.flatMap { $0 }
        let q = Self.random(c.nq * c.D, &r, scale: 2)
        let limits = (0..<c.nq).map { Int32(max(1, c.n - $0 * 3)) }  // different causal limits per query
        let scale = 1 / Float(c.D).squareRoot()
        func runKernel(_ f: (UnsafePointer<Float>, Int32, Int32, Int32, UnsafePointer<Float>, UnsafePointer<Float>, Int32, Int32,
                             UnsafePointer<Int32>?, Float, UnsafeMutablePointer<lh_softmax_state>, UnsafeMutablePointer<Float>, Int32) -> Void,
                       split: Int) -> [Float] {
            var st = [lh_softmax_state](repeating: lh_softmax_state(m: -.infinity, l: 0), count: c.nq)
            var acc = [Float](repeating: 0, count: c.nq * c.D)
            // Feed the keys in two pieces (tiles [0, split) and the rest) to exercise the merging.
            let firstN = min(c.n, split * 16)
            let lim1 = limits.map { min($0, Int32(firstN)) }
            f(q, Int32(c.D), Int32(c.nq), Int32(c.D), kt, vflat, Int32(c.D), Int32(firstN), lim1, scale, &st, &acc, Int32(c.D))
            if firstN < c.n {
                let lim2 = limits.map { max(0, $0 - Int32(firstN)) }
                kt.withUnsafeBufferPointer { ktb in
                    vflat.withUnsafeBufferPointer { vb in
                        f(q, Int32(c.D), Int32(c.nq), Int32(c.D), ktb.baseAddress! + split * 16 * c.D, vb.baseAddress! + firstN * c.D,
                          Int32(c.D), Int32(c.n - firstN), lim2, scale, &st, &acc, Int32(c.D))
                    }
                }
            }
            for i in 0..<c.nq { for d in 0..<c.D { acc[i * c.D + d] /= st[i].l } }
            return acc
        }
        let fast = runKernel(lh_attn_update, split: 1)
        let ref = runKernel(lh_attn_update_ref, split: 1000)
        for i in 0..<c.nq {
            let n = Int(limits[i])
            let want = Self.direct(q: Array(q[i * c.D..<(i + 1) * c.D]), keys: Array(keys[0..<n]), values: Array(values[0..<n]), scale: scale)
            for d in 0..<c.D {
                #expect(abs(fast[i * c.D + d] - want[d]) < 1e-4, "fast q\(i) d\(d)")
                #expect(abs(ref[i * c.D + d] - want[d]) < 1e-4, "ref q\(i) d\(d)")
            }
        }
    }

    /// lh_chunk_scores (selection scores, AVX-512 when available) gives the reference's bits, for slab widths
    /// with and without a tail of fewer than 16 chunks and with one or several sub-chunks.
    @Test(arguments: [(1, 5), (1, 64), (1, 77), (4, 200), (4, 256), (2, 8)])
    func chunkScoresMatchReferenceBitForBit(subs: Int, m: Int) {
        var r = SplitMix(seed: UInt64(subs * 1000 + m))
        let D = 64, stride = (m + 7) / 8 * 8, slabRows = 2 * 3 * subs * D
        let slab = Self.random(slabRows * stride, &r, scale: 3)
        let q = Self.random(D, &r, scale: 2)
        let rows = (0..<(subs * D)).map { _ in Int32(r.next() % UInt64(slabRows)) }
        var fast = [Float](repeating: .nan, count: m), ref = [Float](repeating: .nan, count: m)
        lh_chunk_scores(q, Int32(D), slab, Int32(stride), rows, Int32(subs), Int32(m), &fast)
        lh_chunk_scores_ref(q, Int32(D), slab, Int32(stride), rows, Int32(subs), Int32(m), &ref)
        #expect(fast.map(\.bitPattern) == ref.map(\.bitPattern))
        // And the plain Swift loop (the selection's documented rule).
        for x in 0..<m {
            var best = -Float.infinity
            for s in 0..<subs {
                var acc: Float = 0
                for d in 0..<D { acc += q[d] * slab[Int(rows[s * D + d]) * stride + x] }
                best = max(best, acc)
            }
            #expect(best.bitPattern == ref[x].bitPattern)
        }
    }
}
