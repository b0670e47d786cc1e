import Foundation
import GGUF
import Generation
import LongHeads
import TestSupport
import Testing
import Tokenization
@testable import Model

/// How one text of a `*-logits.jsonl` reference fixture compared (Docs/ARCHITECTURES.md quotes these).
struct ReferenceComparison: CustomStringConvertible {
    var name: String
    /// Positions whose reference top-1/top-2 gap is ≥ 0.25, and how many of them our top-1 matches.
    var topChecked = 0, topAgree = 0
    /// Largest |our logit − reference logit| over the reference's top-5 ids at every position.
    var worst: Float = 0
    var nll = 0.0, refNLL = 0.0
    var description: String {
        "\(name): top-1 \(topAgree)/\(topChecked), worst |Δlogit| \(String(format: "%.3f", worst)), "
            + "mean NLL \(String(format: "%.4f", nll)) vs \(String(format: "%.4f", refNLL))"
    }
}

/// The ids a reference row was computed on, checked to be what our tokenizer makes of the same text
/// (chat rows: ChatML of `user` with the model's default system line), so both sides score identical ids.
func referenceIds(_ row: [String: Any], _ tok: Tokenizer) -> [Int32] {
    let ids = (row["ids"] as! [Int]).map(Int32.init)
    let ours = (row["user"] as? String).map { ChatTemplate.chatML(user: $0, tokenizer: tok) } ?? tok.encode(row["text"] as! String)
    #expect(ours == ids, "\(row["name"]!): our tokenizer's ids differ from the reference's")
    return ids
}

/// Tolerances of shared/reference/README.md (issue 2), on every row of `logits` (a fixture written by
/// Scripts/reference-logits.py): top-1 equal where the reference gap ≥ 0.25, |Δlogit| ≤ 1 on the reference
/// top-5 at every position, mean NLL within 2% relative.
func checkLogits(_ model: LlamaModel, _ tok: Tokenizer, fixture: String) throws -> [ReferenceComparison] {
    let V = model.config.vocabSize
    var out = [ReferenceComparison]()
    for case let row in try fixtureLines(fixture) {
        var r = ReferenceComparison(name: row["name"] as! String)
        let ids = referenceIds(row, tok)
        let top5 = row["top5"] as! [[[Double]]]
        try #require(top5.count == ids.count)
        let logits = try run(model, ids, block: model.maxBatch,
                             attention: DenseAttention(config: model.config, capacity: ids.count, pool: model.pool))
        for i in 0..<ids.count {
            let row = logits[i * V..<(i + 1) * V]
            let ref = top5[i]
            if ref[0][1] - ref[1][1] >= 0.25 {
                r.topChecked += 1
                if row.indices.max(by: { row[$0] < row[$1] })! - i * V == Int(ref[0][0]) { r.topAgree += 1 }
            }
            for pair in ref { r.worst = max(r.worst, abs(row[i * V + Int(pair[0])] - Float(pair[1]))) }
            if i + 1 < ids.count {
                let m = row.max()!
                let lse = Double(m) + log(row.reduce(0.0) { $0 + exp(Double($1 - m)) })
                r.nll += lse - Double(row[i * V + Int(ids[i + 1])])
            }
        }
        r.nll /= Double(ids.count - 1)
        r.refNLL = row["mean_nll"] as! Double
        #expect(r.topAgree == r.topChecked, "\(r)")
        #expect(r.worst <= 1.0, "\(r)")
        #expect(abs(r.nll - r.refNLL) / r.refNLL <= 0.02, "\(r)")
        out.append(r)
    }
    return out
}

/// `greedy`: the reference's greedy ids reproduced up to its first near-tie (gap < 0.25), as issue 2 asks.
/// Past that tie the free-running continuations may part legitimately, so the rest is checked teacher-forced:
/// fed the reference's own tokens, our top-1 must be the reference's at every step whose gap is ≥ 0.25.
/// Returns "name: free n, forced a/c of m" per row (free-run tokens compared; clear forced steps that
/// agree / clear steps; tokens the reference produced).
func checkGreedy(_ model: LlamaModel, _ tok: Tokenizer, fixture: String) throws -> [String] {
    var out = [String]()
    for case let row in try fixtureLines(fixture) {
        let name = row["name"] as! String
        let ids = referenceIds(row, tok)
        let want = (row["greedy_ids"] as! [Int]).map(Int32.init)
        let gaps = row["top1_top2_gap"] as! [Double]
        try #require(gaps.count == want.count && !want.isEmpty)
        let firstTie = gaps.firstIndex { $0 < 0.25 } ?? want.count

        // Free run up to the first near-tie.
        var att = DenseAttention(config: model.config, capacity: ids.count + want.count, pool: model.pool)
        var got = [Int32]()
        var logits = try model.forward(ids[...], start: 0, attention: att, logits: .last)
        for step in 0..<firstTie {
            got.append(Sampler.argmax(logits))
            if step + 1 < firstTie { logits = try model.forward([got[step]], start: ids.count + step, attention: att, logits: .last) }
        }
        #expect(got == Array(want[0..<firstTie]), "\(name): \(tok.decode(got).debugDescription) vs reference \(tok.decode(Array(want[0..<firstTie])).debugDescription)")

        // Teacher-forced over all steps.
        att = DenseAttention(config: model.config, capacity: ids.count + want.count, pool: model.pool)
        logits = try model.forward(ids[...], start: 0, attention: att, logits: .last)
        var clear = 0, agree = 0
        for step in 0..<want.count {
            if gaps[step] >= 0.25 {
                clear += 1
                let top = Sampler.argmax(logits)
                if top == want[step] { agree += 1 }
                #expect(top == want[step], "\(name) step \(step) (forced): \(top) vs reference \(want[step]) (gap \(gaps[step]))")
            }
            if step + 1 < want.count { logits = try model.forward([want[step]], start: ids.count + step, attention: att, logits: .last) }
        }
        out.append("\(name): free \(firstTie), forced \(agree)/\(clear) of \(want.count)")
    }
    return out
}

/// Issue 12: Qwen2.5-Coder-0.5B's logits against a float32 transformers forward pass of the same GGUF
/// (Fixtures/qwen2-logits.jsonl, qwen2-greedy.jsonl; Scripts/reference-logits.py). In the Qwen2 suite so
/// the model is loaded once and its tests run one at a time.
extension Qwen2ModelTests {
    @Test func logitsMatchFloatReference() throws {
        let (model, tok) = try #require(Self.loaded)
        let rows = try checkLogits(model, tok, fixture: "qwen2-logits.jsonl")
        #expect(rows.count >= 6)
        print("qwen2.5-coder-0.5b vs float reference: " + rows.map(\.description).joined(separator: "; "))
    }

    @Test func greedyMatchesFloatReferenceUpToFirstNearTie() throws {
        let (model, tok) = try #require(Self.loaded)
        let rows = try checkGreedy(model, tok, fixture: "qwen2-greedy.jsonl")
        print("qwen2.5-coder-0.5b greedy vs float reference: " + rows.joined(separator: "; "))
    }
}

/// Qwen2.5-Coder-1.5B-Instruct (Q4_K/Q6_K): `$LONGHEADS_QWEN15_MODEL`, only when set (CI does not fetch 1.5b).
let qwen15ModelPath: String? = ProcessInfo.processInfo.environment["LONGHEADS_QWEN15_MODEL"].flatMap {
    FileManager.default.fileExists(atPath: $0) ? $0 : nil
}

/// Issue 12 on the larger named model: the same texts, logits only (Fixtures/qwen2-1.5b-logits.jsonl,
/// `Scripts/reference-logits.py MODEL Tests/ModelTests/Fixtures/qwen2-1.5b 0`).
@Suite(.serialized, .enabled(if: qwen15ModelPath != nil, "set LONGHEADS_QWEN15_MODEL to a qwen2.5-coder-1.5b GGUF"))
struct Qwen15ReferenceTests {
    @Test func logitsMatchFloatReference() throws {
        let f = try GGUFFile(path: try #require(qwen15ModelPath))
        let model = try LlamaModel(file: f, threads: 2, maxBatch: 64)
        let tok = try Tokenizer(gguf: f)
        let rows = try checkLogits(model, tok, fixture: "qwen2-1.5b-logits.jsonl")
        #expect(rows.count >= 6)
        print("qwen2.5-coder-1.5b vs float reference: " + rows.map(\.description).joined(separator: "; "))
    }
}
