import Foundation
import GGUF
import Generation
import ModelCache
import LongHeads
import TestSupport
import Testing
@testable import Model

/// The default model, if present: `$LONGHEADS_MODEL` or the cache (Scripts/test.sh fetches it).
let realModelPath: String? = {
    if let p = ProcessInfo.processInfo.environment["LONGHEADS_MODEL"], FileManager.default.fileExists(atPath: p) { return p }
    return ModelCache().cachedPath(of: .smolLM2)
}()

/// Loaded once for all tests of the suite (loading repacks ~100 MB of weights).
nonisolated(unsafe) let realModel: LlamaModel? = realModelPath.flatMap { try? LlamaModel(file: GGUFFile(path: $0), threads: 2, maxBatch: 128) }

func fixtureLines(_ name: String) throws -> [[String: Any]] {
    let url = Bundle.module.url(forResource: "Fixtures/" + name, withExtension: nil)!
    return try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
        try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
}

@Suite(.serialized, .enabled(if: realModel != nil, "default model not fetched (run Scripts/test.sh)"))
struct DefaultModelReferenceTests {
    /// `logits.jsonl`: float32 forward pass on the dequantized weights (transformers). Tolerances from
    /// the fixture's README: top-1 equal where the reference gap ≥ 0.25; |Δlogit| ≤ 1 on the top-5;
    /// mean NLL within 2%.
    @Test func logitsMatchReference() throws {
        let model = try #require(realModel)
        let V = model.config.vocabSize
        for case let row in try fixtureLines("logits.jsonl") {
            let name = row["name"] as! String
            let ids = (row["ids"] as! [Int]).map(Int32.init)
            let top5 = row["top5"] as! [[[Double]]]
            let att = DenseAttention(config: model.config, capacity: ids.count, pool: model.pool)
            var logits = [Float]()
            var s = 0
            while s < ids.count {
                let e = min(ids.count, s + model.maxBatch)
                logits += try model.forward(ids[s..<e], start: s, attention: att, logits: .all)
                s = e
            }
            var nll = 0.0
            var topAgree = 0, topChecked = 0, worst: Float = 0
            for i in 0..<ids.count {
                let r = logits[i * V..<(i + 1) * V]
                let ref = top5[i]
                let best = r.indices.max { r[$0] < r[$1] }! - i * V
                if ref[0][1] - ref[1][1] >= 0.25 {
                    topChecked += 1
                    if best == Int(ref[0][0]) { topAgree += 1 }
                }
                for pair in ref { worst = max(worst, abs(r[i * V + Int(pair[0])] - Float(pair[1]))) }
                if i + 1 < ids.count {
                    let m = r.max()!
                    let lse = Double(m) + log(r.reduce(0.0) { $0 + exp(Double($1 - m)) })
                    nll += lse - Double(r[i * V + Int(ids[i + 1])])
                }
            }
            nll /= Double(ids.count - 1)
            let refNLL = row["mean_nll"] as! Double
            #expect(topAgree == topChecked, "\(name): top-1 agrees at \(topAgree)/\(topChecked) clear positions")
            #expect(worst <= 1.0, "\(name): worst top-5 logit error \(worst)")
            #expect(abs(nll - refNLL) / refNLL <= 0.02, "\(name): mean NLL \(nll) vs \(refNLL)")
        }
    }

    /// LONGHEADS.md invariant on the default model: with an attention length covering the whole context,
    /// LongHeads (chunks archived as pages, local-RoPE keys, queries rotated per slot, partial softmaxes
    /// merged) gives the logits of dense attention.
    @Test func longHeadsWithFullBudgetEqualsDense() throws {
        let model = try #require(realModel)
        let V = model.config.vocabSize
        var ids = [Int32]()
        for case let row in try fixtureLines("logits.jsonl") { ids += (row["ids"] as! [Int]).map(Int32.init) }
        while ids.count < 384 { ids += ids }
        ids = Array(ids.prefix(384))
        let dense = try run(model, ids, block: 64, attention: DenseAttention(config: model.config, capacity: ids.count, pool: model.pool))
        let lh = try LongHeadsAttention(config: model.config, parameters: .init(chunkSize: 64, attentionLength: 384),
                                        archive: MemoryArchive(), pool: model.pool)
        let got = try run(model, ids, block: 64, attention: lh)
        let (worst, topAgree) = logitAgreement(got, dense, vocab: V)
        #expect(worst < 0.05, "worst logit difference \(worst)")
        print("longheads vs dense on the default model: worst logit difference \(worst), top-1 \(topAgree)/\(ids.count)")
        #expect(topAgree >= ids.count - 2, "top-1 agrees at \(topAgree)/\(ids.count)")
    }

    /// `greedy.jsonl`: 32 greedy tokens, reproduced up to the first near-tie (gap < 0.25).
    @Test func greedyMatchesReference() throws {
        let model = try #require(realModel)
        for case let row in try fixtureLines("greedy.jsonl") {
            let name = row["name"] as! String
            let ids = (row["ids"] as! [Int]).map(Int32.init)
            let want = (row["greedy_ids"] as! [Int]).map(Int32.init)
            let gaps = row["top1_top2_gap"] as! [Double]
            let firstTie = gaps.firstIndex { $0 < 0.25 } ?? want.count
            let att = DenseAttention(config: model.config, capacity: ids.count + want.count, pool: model.pool)
            var logits = try model.forward(ids[...], start: 0, attention: att, logits: .last)
            var got = [Int32]()
            for step in 0..<firstTie {
                let next = Sampler.argmax(logits)
                got.append(next)
                logits = try model.forward([next], start: ids.count + step, attention: att, logits: .last)
            }
            #expect(got == Array(want[0..<firstTie]), "\(name): first \(firstTie) greedy tokens")
        }
    }
}
