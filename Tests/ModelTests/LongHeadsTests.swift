import Foundation
import GGUF
import LongHeads
import TestSupport
import Testing
@testable import Model

/// Runs `tokens` through `model` in blocks of `block`, returning all logits rows.
func run(_ model: LlamaModel, _ tokens: [Int32], from: Int = 0, block: Int, attention: Attention) throws -> [Float] {
    var out = [Float]()
    var s = from
    while s < tokens.count {
        let e = min(tokens.count, s + block)
        out += try model.forward(tokens[s..<e], start: s, attention: attention, logits: .all)
        s = e
    }
    return out
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

@Suite struct LongHeadsInvariantTests {
    static func tokens(_ n: Int, seed: UInt64 = 7) -> [Int32] {
        var r = SplitMix(seed: seed)
        return (0..<n).map { _ in Int32(r.next() % 256) }
    }

    static func model() throws -> (LlamaModel, String) {
        let path = try TinyModel().write(name: "lh-\(UUID().uuidString.prefix(8))")
        return (try LlamaModel(file: GGUFFile(path: path), threads: 2, maxBatch: 32), path)
    }

    /// LONGHEADS.md: with a budget covering the whole context, LongHeads is dense attention.
    @Test func fullBudgetEqualsDense() throws {
        let (model, path) = try Self.model()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let toks = Self.tokens(150)
        let dense = try run(model, toks, block: 32, attention: DenseAttention(config: model.config, capacity: 160, pool: model.pool))
        let archive = MemoryArchive()
        let lh = try LongHeadsAttention(config: model.config, parameters: .init(chunkSize: 16, attentionLength: 160),
                                        archive: archive, pool: model.pool)
        // Blocks of 16 aligned with chunks, and blocks of 7 that straddle chunk boundaries.
        let got = try run(model, toks, block: 16, attention: lh)
        #expect(maxAbsDiff(got, dense) < 2e-3)
        #expect(archive.chunkCount == 150 / 16)
        #expect(archive.reads > 0)
        let archive2 = MemoryArchive()
        let lh2 = try LongHeadsAttention(config: model.config, parameters: .init(chunkSize: 16, attentionLength: 160),
                                         archive: archive2, pool: model.pool)
        #expect(maxAbsDiff(try run(model, toks, block: 7, attention: lh2), dense) < 2e-3)
    }

    /// LONGHEADS.md detail 1–2: one rule for prefill and decode, so feeding N+k tokens at once equals N then k steps.
    @Test func prefillEqualsDecodeWithSelection() throws {
        let (model, path) = try Self.model()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let toks = Self.tokens(200, seed: 11)
        let params = LongHeadsParameters(chunkSize: 16, attentionLength: 64)  // K = 4, selective from 64
        let a = try LongHeadsAttention(config: model.config, parameters: params, archive: MemoryArchive(), pool: model.pool)
        let whole = try run(model, toks, block: 16, attention: a)
        let b = try LongHeadsAttention(config: model.config, parameters: params, archive: MemoryArchive(), pool: model.pool)
        var stepwise = try run(model, Array(toks[0..<120]), block: 16, attention: b)
        for i in 120..<200 {
            stepwise += try model.forward(toks[i...i], start: i, attention: b, logits: .all)
        }
        #expect(maxAbsDiff(whole, stepwise) < 1e-4)
        // And selection really happened: a dense run differs.
        let dense = try run(model, toks, block: 32, attention: DenseAttention(config: model.config, capacity: 200, pool: model.pool))
        #expect(maxAbsDiff(whole, dense) > 1e-2)
    }

    /// A LongHeads attention reopened over an archive continues exactly where the first one stopped.
    @Test func continuesFromArchive() throws {
        let (model, path) = try Self.model()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let toks = Self.tokens(180, seed: 5)
        let params = LongHeadsParameters(chunkSize: 16, attentionLength: 64)
        let archive = MemoryArchive()
        let a = try LongHeadsAttention(config: model.config, parameters: params, archive: archive, pool: model.pool)
        let whole = try run(model, toks, block: 16, attention: a)
        let archive2 = MemoryArchive()
        let first = try LongHeadsAttention(config: model.config, parameters: params, archive: archive2, pool: model.pool)
        _ = try run(model, Array(toks[0..<160]), block: 16, attention: first)
        let reopened = try LongHeadsAttention(config: model.config, parameters: params, archive: archive2, pool: model.pool)
        let rest = try run(model, toks, from: 160, block: 16, attention: reopened)
        let V = model.config.vocabSize
        #expect(maxAbsDiff(rest, Array(whole[160 * V..<180 * V])) < 1e-4)
    }
}

@Suite struct LongHeadsReferenceTests {
    /// The engine (local-RoPE keys, per-slot rotated queries, archived pages, block streaming, vectorized
    /// slab scoring) against a naive implementation of each selection rule that re-rotates keys at their
    /// slot positions.
    @Test(arguments: SelectionPolicy.allCases)
    func selectiveAttentionMatchesNaiveRule(policy: SelectionPolicy) throws {
        var tiny = TinyModel()
        tiny.matrixType = .q8_0
        let path = try tiny.write(name: "lh-ref-\(policy.rawValue)")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let toks = LongHeadsInvariantTests.tokens(120, seed: 3)
        // Chunks of 16 tokens hold one Quest sub-chunk; chunks of 128 hold two, so quest-sub max-pools.
        for (w, att, n) in [(16, 64, 120), (128, 512, 700)] where n <= 120 || policy != .paper {
            let toks = n == 120 ? toks : LongHeadsInvariantTests.tokens(n, seed: 9)
            let ref = try ReferenceForward(path: path).logits(toks, longHeads: (w, att, att), policy: policy.rawValue)
            let model = try LlamaModel(file: GGUFFile(path: path), threads: 2, maxBatch: w)
            let lh = try LongHeadsAttention(config: model.config, parameters: .init(chunkSize: w, attentionLength: att, policy: policy),
                                            archive: MemoryArchive(), pool: model.pool)
            let got = try run(model, toks, block: w, attention: lh)
            let V = model.config.vocabSize
            var worst: Float = 0
            for (i, row) in ref.enumerated() {
                let scale = row.map(abs).max()!
                let err = zip(got[i * V..<(i + 1) * V], row).map { abs($0 - $1) }.max()! / scale
                worst = max(worst, err)
            }
            #expect(worst < 0.02, "\(policy) w=\(w): worst relative logit error \(worst)")
            if w == 16 {
                // Selection must be active: dense attention differs from the reference.
                let dense = try ReferenceForward(path: path).logits(toks)
                #expect(maxAbsDiff(dense.flatMap { $0 }, ref.flatMap { $0 }) > 0.05)
            }
        }
    }

    /// Shared chunks (the oracle, retrieved chunks) are forced into every selective head's selection.
    @Test func sharedChunksAreForced() throws {
        let (model, path) = try LongHeadsInvariantTests.model()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let toks = LongHeadsInvariantTests.tokens(160, seed: 4)
        let lh = try LongHeadsAttention(config: model.config, parameters: .init(chunkSize: 16, attentionLength: 64),
                                        archive: MemoryArchive(), pool: model.pool)
        lh.share([2])
        var checked = 0
        lh.selections.observe { record in
            for p in record.positions where p >= 64 && p / 16 >= 4 {
                for h in 0..<model.config.heads {
                    let chosen = Array(record.chunks(position: p, head: h))
                    #expect(chosen.contains(2) && chosen.count == 4 && chosen == chosen.sorted())
                    checked += 1
                }
            }
        }
        _ = try run(model, toks, block: 16, attention: lh)
        #expect(checked > 0)
    }
}
