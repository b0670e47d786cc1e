import Foundation
import GGUF
import Kernels
import TestSupport
import Testing
@testable import Model

/// `PackedAttention` (a shared prefix and several segments in one batch) against the plain
/// `DenseAttention` running each segment alone after the same prefix: the same bits.
@Suite struct PackedAttentionTests {
    static func tinyModel(_ name: String) throws -> (LlamaModel, String) {
        let path = try TinyModel().write(name: name)
        return (try LlamaModel(file: GGUFFile(path: path), threads: 2, maxBatch: 64), path)
    }

    /// Prefix lengths on and off the 16-key tile boundary (0: no prefix), prefixes fed in one or two pieces.
    static let prefixes: [[Int]] = [[], [5], [16], [13, 8], [32, 7]]

    /// With `shared` tokens at the start of the batch that every segment continues (0: none).
    @Test(arguments: prefixes, [0, 6, 11])
    func attentionEqualsDensePerSegment(prefixPieces: [Int], shared: Int) throws {
        let (model, path) = try Self.tinyModel("packed-attn-\(prefixPieces.count)-\(prefixPieces.first ?? 0)-\(shared)")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = model.config
        let (qRow, kvRow) = (c.heads * c.headDim, c.kvHeads * c.headDim)
        var rng = SplitMix(seed: UInt64(prefixPieces.reduce(7, +) + 100 * shared))
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextFloat() * 4 - 2 } }
        struct QKV { var q: [Float]; var k: [Float]; var v: [Float] }
        // Per layer: q, k, v of `n` tokens.
        func tokens(_ n: Int) -> [QKV] { (0..<c.layers).map { _ in QKV(q: random(n * qRow), k: random(n * kvRow), v: random(n * kvRow)) } }
        func attend(_ a: Attention, _ x: [QKV], start: Int, count: Int) throws -> [[Float]] {
            try x.enumerated().map { l, t in
                var (q, k, v) = (t.q, t.k, t.v)  // attend rotates q and k in place
                var out = [Float](repeating: .nan, count: count * qRow)
                try a.attend(layer: l, start: start, count: count, q: &q, k: &k, v: &v, out: &out)
                return out
            }
        }
        let P = prefixPieces.reduce(0, +)
        let prefix = prefixPieces.map(tokens)
        let lengths = [3, 1, 17, 9, 16]
        let segments = lengths.map(tokens)
        let common = tokens(shared)

        let packed = PackedAttention(config: c, prefixCapacity: 64, pool: model.pool)
        packed.extendPrefix()
        var at = 0
        for (piece, n) in zip(prefix, prefixPieces) {
            _ = try attend(packed, piece, start: at, count: n)
            at += n
        }
        #expect(packed.prefixCount == P)
        packed.pack(shared: shared, segments: lengths)
        let concatenated = (0..<c.layers).map { l in
            QKV(q: common[l].q + segments.flatMap { $0[l].q }, k: common[l].k + segments.flatMap { $0[l].k },
                v: common[l].v + segments.flatMap { $0[l].v })
        }
        let got = try attend(packed, concatenated, start: P, count: shared + lengths.reduce(0, +))

        var first = shared
        for (s, n) in lengths.enumerated() {
            let dense = DenseAttention(config: c, capacity: 96, pool: model.pool)
            at = 0
            for (piece, m) in zip(prefix, prefixPieces) {
                _ = try attend(dense, piece, start: at, count: m)
                at += m
            }
            if shared > 0 {
                let want = try attend(dense, common, start: P, count: shared)
                for l in 0..<c.layers { #expect(Array(got[l][0..<shared * qRow]) == want[l], "shared tokens, layer \(l)") }
            }
            let want = try attend(dense, segments[s], start: P + shared, count: n)
            for l in 0..<c.layers {
                #expect(Array(got[l][first * qRow..<(first + n) * qRow]) == want[l], "segment \(s), layer \(l)")
            }
            first += n
        }
        // A second batch with another layout reads the same prefix.
        packed.pack(segments: [lengths[2]])
        let again = try attend(packed, segments[2], start: P, count: lengths[2])
        let alone = DenseAttention(config: c, capacity: 96, pool: model.pool)
        at = 0
        for (piece, m) in zip(prefix, prefixPieces) {
            _ = try attend(alone, piece, start: at, count: m)
            at += m
        }
        #expect(again == (try attend(alone, segments[2], start: P, count: lengths[2])))
    }

    /// The whole model: packed records read at each one's last token equal each record run alone.
    @Test func forwardEqualsEachSegmentAlone() throws {
        let (model, path) = try Self.tinyModel("packed-forward")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let V = model.config.vocabSize
        let prefix: [Int32] = "Text: some prefix\n".utf8.map { Int32($0) }   // 18 tokens: off the tile boundary
        let texts = ["a fox", "b", "the dog sleeps on the sofa all day\nQ:", "xyz 123"]
        let records: [[Int32]] = texts.map { t in t.utf8.map { Int32($0) } }
        let packed = PackedAttention(config: model.config, prefixCapacity: 32, pool: model.pool)
        packed.extendPrefix()
        _ = try model.forward(prefix[...], start: 0, attention: packed, logits: .none)
        packed.pack(segments: records.map(\.count))
        let all = Array(try model.forward(records.flatMap { $0 }[...], start: prefix.count, attention: packed, logits: .all))
        var last = [Int](), end = 0
        for r in records { end += r.count; last.append(end - 1) }
        packed.pack(segments: records.map(\.count))
        let picked = Array(try model.forward(records.flatMap { $0 }[...], start: prefix.count, attention: packed, logits: .rows(last)))
        var first = 0
        for (i, r) in records.enumerated() {
            let dense = DenseAttention(config: model.config, capacity: 64, pool: model.pool)
            _ = try model.forward(prefix[...], start: 0, attention: dense, logits: .none)
            let alone = Array(try model.forward(r[...], start: prefix.count, attention: dense, logits: .all))
            let rows: [Float] = Array(all[first * V..<(first + r.count) * V])
            let lastRow: [Float] = Array(picked[i * V..<(i + 1) * V])
            let aloneLast: [Float] = Array(alone[(r.count - 1) * V..<r.count * V])
            #expect(rows == alone, "record \(i)")
            #expect(lastRow == aloneLast, "record \(i), last row")
            first += r.count
        }
    }
}
