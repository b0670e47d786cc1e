import Foundation
import GGUF
import KVStore
import LongHeads
import Model
import Pipeline
import TestSupport
import Testing
import Tokenization

/// LongHeads over a quantized store (issue 13): with an attention length covering the whole prompt it
/// is dense attention (LONGHEADS.md), so the logits after a prompt read back from an f16, q8 or q4 store
/// stay within the format's error of dense attention over the exact K/V.
@Suite struct QuantizedStoreTests {
    @Test func fullBudgetOverEachFormatStaysCloseToDense() throws {
        let modelPath = try TinyModel().write(name: "quant-dense")
        defer { try? FileManager.default.removeItem(atPath: modelPath) }
        let file = try GGUFFile(path: modelPath)
        let model = try LlamaModel(file: file, threads: 2, maxBatch: 16)
        let p = DocumentPipeline(model: model, tokenizer: try Tokenizer(gguf: file), budgetBytes: 16 << 20)
        var rng = SplitMix(seed: 11)
        let ids = (0..<150).map { _ in Int32(rng.next() % 256) }
        // Dense attention over the exact (float) K/V: the logits after the last token.
        let denseAttention = DenseAttention(config: model.config, capacity: 160, pool: model.pool)
        var s = 0
        var dense = [Float]()
        while s < ids.count {
            let e = min(ids.count, s + 16)
            dense = Array(try model.forward(ids[s..<e], start: s, attention: denseAttention, logits: .last))
            s = e
        }
        let scale = dense.map(abs).max()!
        var diffs: [KVPrecision: Float] = [:]
        for precision in KVPrecision.allCases {
            let dir = temp("quant-\(precision)-\(UUID().uuidString.prefix(6))")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let (session, logits) = try p.run(prompt: ids, storeAt: dir, modelFile: file,
                                              parameters: LongHeadsParameters(chunkSize: 16, attentionLength: 160), precision: precision, chat: false)
            #expect(try StoreReader.open(at: dir).geometry.precision == precision)
            #expect(session.info.tokens == ids.count - 1)
            let got = Array(logits)
            #expect(got.count == dense.count)
            diffs[precision] = zip(got, dense).map { abs($0 - $1) }.max()! / scale
            // The greedy next token is the dense one.
            #expect(got.indices.max { got[$0] < got[$1] } == dense.indices.max { dense[$0] < dense[$1] }, "\(precision)")
        }
        // Relative to the largest logit: f16 as the float tolerance of the dense invariant; q8 and q4 within
        // their rounding. The tiny model's random weights give K/V spread evenly over their range, the worst
        // case for a uniform grid (measured: f16 0.0009, q8 0.023, q4 0.24; real K/V: Docs/PERFORMANCE.md).
        #expect(diffs[.f16]! < 2e-3, "\(diffs)")
        #expect(diffs[.q8]! < 0.05, "\(diffs)")
        #expect(diffs[.q4]! < 0.4, "\(diffs)")
        #expect(diffs[.f16]! <= diffs[.q8]! && diffs[.q8]! <= diffs[.q4]!, "\(diffs)")
        print("LongHeads over a store vs dense, max |Δlogit| / max |logit|: \(diffs.sorted { $0.key.rawValue < $1.key.rawValue })")
    }
}
