import Foundation
import GGUF
import LongHeads
import TestSupport
import Testing
@testable import Model

/// Issue 15, part 3: the seams of LongHeads' selection — the rankings behind `ChunkRanking`, the selection
/// recorder, and chunk sources handed to the archive with the chunk.
@Suite struct SelectionSeamTests {
    static let layout = ChunkSummaryLayout(layers: 2, heads: 4, kvHeads: 2, headDim: 8, chunkSize: 128, contents: .full)  // 2 sub-chunks

    /// A chunk's score as the attention computes it through a ranking: the slab column `fill` writes, the
    /// rows `rows` picks, summed over channels in order and max-pooled over sub-chunks (lh_chunk_scores).
    static func seamScore(_ ranking: any ChunkRanking, summary row: [Float], layer: Int, head: Int, query q: [Float]) -> Float {
        let D = layout.headDim, stride = 8
        var slab = [Float](repeating: .nan, count: ranking.rowsPerChunk * D * stride)
        var rows = [Int32](repeating: -1, count: ranking.subs * D)
        slab.withUnsafeMutableBufferPointer { s in
            row.withUnsafeBufferPointer { ranking.fill(slab: s.baseAddress!, stride: stride, column: 3, summary: $0.baseAddress!, layer: layer) }
        }
        q.withUnsafeBufferPointer { ranking.rows(head: head, query: $0.baseAddress!, into: &rows) }
        var best = -Float.infinity
        for s in 0..<ranking.subs {
            var sum: Float = 0
            for d in 0..<D { sum += q[d] * slab[Int(rows[s * D + d]) * stride + 3] }
            best = max(best, sum)
        }
        return best
    }

    /// Each policy's ranking scores a chunk as the policy's plain reference does: the paper, q·(key feature
    /// of the head); quest, the Quest bound over the chunk; quest-sub, the best bound of its sub-chunks.
    @Test(arguments: SelectionPolicy.allCases) func rankingsMatchTheirReferences(policy: SelectionPolicy) {
        let L = Self.layout
        var r = SplitMix(seed: 11)
        func value() -> Float { Float(Int(r.next() % 2001) - 1000) / 250 }
        let D = L.headDim, S = L.subs, G = L.kvHeads
        let ranking = policy.ranking(L)
        for layer in 0..<L.layers {
            // Layer `layer`'s part of a chunk summary: key features, then [G][S][2][D] bounds with min ≤ max.
            var row = (0..<L.floatsPerLayer).map { _ in value() }
            let b = L.bounds(layer: layer) - L.keyFeatures(layer: layer)
            for i in stride(from: b, to: row.count, by: 2 * D) {
                for d in 0..<D where row[i + d] > row[i + D + d] { row.swapAt(i + d, i + D + d) }
            }
            for head in 0..<L.heads {
                let q = (0..<D).map { _ in value() }
                let g = head / (L.heads / G)
                let bound = { (mn: [Float], mx: [Float]) -> Float in
                    q.withUnsafeBufferPointer { qp in mn.withUnsafeBufferPointer { a in mx.withUnsafeBufferPointer { c in
                        questBound(qp.baseAddress!, min: a.baseAddress!, max: c.baseAddress!, D) } } }
                }
                let mins = (0..<S).map { s in Array(row[(b + ((g * S + s) * 2) * D)...].prefix(D)) }
                let maxs = (0..<S).map { s in Array(row[(b + ((g * S + s) * 2 + 1) * D)...].prefix(D)) }
                let expected: Float
                switch policy {
                case .paper:
                    expected = (0..<D).reduce(Float(0)) { $0 + q[$1] * row[head * D + $1] }
                case .questSub:
                    expected = (0..<S).map { bound(mins[$0], maxs[$0]) }.max()!
                case .quest, .questExact, .questLexical:
                    let mn = (0..<D).map { d in mins.map { $0[d] }.min()! }, mx = (0..<D).map { d in maxs.map { $0[d] }.max()! }
                    expected = bound(mn, mx)
                }
                #expect(Self.seamScore(ranking, summary: row, layer: layer, head: head, query: q) == expected, "\(policy) layer \(layer) head \(head)")
            }
        }
        #expect(ranking.rotatesQuery == (policy != .paper))
        #expect(ranking.kept(pick: 2) == (policy == .questExact ? LongHeadsAttention.exactCandidates(pick: 2) : 2))
        #expect(ranking.subs == (policy == .questSub ? S : 1))
    }

    /// Every observer sees every layer's selections of every block, in order; `removeAll` stops them.
    @Test func recorderFeedsEveryObserver() throws {
        let (model, path) = try LongHeadsInvariantTests.model()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let lh = try LongHeadsAttention(config: model.config, parameters: .init(chunkSize: 16, attentionLength: 64),
                                        archive: MemoryArchive(), pool: model.pool)
        final class Log { var a = [String](), b = [String]() }
        let log = Log()
        lh.selections.observe { log.a.append("\($0.layer)@\($0.positions)") }
        lh.selections.observe { r in
            // Selections hold chunk 0 and the current chunk, ascending, for every token and head.
            for p in r.positions {
                for h in 0..<r.heads {
                    let c = Array(r.chunks(position: p, head: h))
                    #expect(c.first == 0 && c.last == Int32(p / 16) && c == c.sorted())
                }
            }
            log.b.append("\(r.layer)@\(r.positions)")
        }
        let toks = LongHeadsInvariantTests.tokens(96, seed: 5)
        _ = try run(model, Array(toks[..<80]), block: 16, attention: lh)
        let L = model.config.layers
        #expect(log.a == stride(from: 0, to: 80, by: 16).flatMap { s in (0..<L).map { "\($0)@\(s..<(s + 16))" } })
        #expect(log.b == log.a)
        lh.selections.removeAll()
        _ = try run(model, toks, from: 80, block: 16, attention: lh)
        #expect(log.a.count == 5 * L)
    }

    /// `ingest(chunk:)` hands the chunk's tokens and source bytes to the archive with its pages, and computes
    /// exactly what a plain forward of the same tokens computes; chunks completed otherwise have no source.
    @Test func chunkSourcesTravelWithTheChunk() throws {
        let (model, path) = try LongHeadsInvariantTests.model()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let parameters = LongHeadsParameters(chunkSize: 16, attentionLength: 64)
        let toks = LongHeadsInvariantTests.tokens(112, seed: 6)
        let viaIngest = MemoryArchive(), plain = MemoryArchive()
        let a = try LongHeadsAttention(config: model.config, parameters: parameters, archive: viaIngest, pool: model.pool)
        let b = try LongHeadsAttention(config: model.config, parameters: parameters, archive: plain, pool: model.pool)
        var sources = [ChunkSource]()
        for c in 0..<6 {
            let source = ChunkSource(tokens: Array(toks[(c * 16)..<((c + 1) * 16)]), byteRange: UInt64(c * 40)..<UInt64(c * 40 + 40))
            try a.ingest(chunk: source, at: c * 16, model: model)
            sources.append(source)
        }
        _ = try run(model, toks, from: 96, block: 16, attention: a)
        _ = try run(model, toks, block: 16, attention: b)
        #expect(viaIngest.sources == sources.map { Optional($0) } + [nil])
        #expect(plain.sources == [ChunkSource?](repeating: nil, count: 7))
        #expect(viaIngest.pages == plain.pages)
    }
}
