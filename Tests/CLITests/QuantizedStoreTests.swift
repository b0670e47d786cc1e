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

/// LongHeads' chunk read of q8/q4 pages with the dequantization fused into the attention (issue 13):
/// over the tiny model, asking a store with `fusedReads` on (pages stay encoded in the cache and the
/// kernel dequantizes tile by tile) gives the same logits, bit for bit, as decoding each page first, in
/// the streamed read of the question and in decode steps from the answer cache.
@Suite struct FusedQuantizedReadTests {
    @Test(arguments: [KVPrecision.q8, .q4])
    func fusedReadGivesTheLogitsOfDecodeThenAttend(precision: KVPrecision) throws {
        let modelPath = try TinyModel().write(name: "fused-\(precision)")
        defer { try? FileManager.default.removeItem(atPath: modelPath) }
        let file = try GGUFFile(path: modelPath)
        let model = try LlamaModel(file: file, threads: 2, maxBatch: 16)
        let p = DocumentPipeline(model: model, tokenizer: try Tokenizer(gguf: file), budgetBytes: 16 << 20)
        var rng = SplitMix(seed: 23)
        // 12 chunks of 16 and a tail of 9; K = 4 chunks per query, so heads select among the archived ones.
        let ids = (0..<201).map { _ in Int32(rng.next() % 256) }
        let question = (0..<21).map { _ in Int32(rng.next() % 256) }
        let dir = temp("fused-\(precision)-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try p.run(prompt: ids, storeAt: dir, modelFile: file, parameters: LongHeadsParameters(chunkSize: 16, attentionLength: 64),
                      precision: precision, chat: false)
        func ask(fused: Bool) throws -> (logits: [[UInt32]], cache: PageCache.Statistics, form: PageCache.Form, fusedReads: Int) {
            var archive: StoreArchive?
            let (session, first) = try p.open(store: dir, modelFile: file, then: question) { attention in
                archive = attention.archive as? StoreArchive
                archive?.fusedReads = fused
            }
            let a = try #require(archive)
            var out = [first.map(\.bitPattern)]
            var pos = session.position
            var next = Int32(first.indices.max { first[$0] < first[$1] }!)
            for _ in 0..<6 {  // decode steps, through the answer cache
                let l = try model.forward([next][...], start: pos, attention: session.attention, logits: .last)
                out.append(l.map(\.bitPattern))
                next = Int32(l.indices.max { l[$0] < l[$1] }!)
                pos += 1
            }
            return (out, a.cache.statistics, a.cacheForm, a.fusedPageReads)
        }
        let fused = try ask(fused: true)
        let decoded = try ask(fused: false)
        #expect(fused.form == .encoded)
        // The fused run read its archived chunks encoded, the other one none.
        #expect(fused.fusedReads > 0 && decoded.fusedReads == 0, "\(fused.fusedReads) / \(decoded.fusedReads)")
        #expect(fused.logits.count == decoded.logits.count)
        for (i, (a, b)) in zip(fused.logits, decoded.logits).enumerated() {
            #expect(a == b, "\(precision): logits differ at step \(i)")
        }
        // The decode steps read archived pages through the cache, which holds them at their encoded size.
        let g = try StoreReader.open(at: dir).geometry
        #expect(fused.cache.hits + fused.cache.misses > 0)
        #expect(fused.cache.residentBytes % (g.encodedPageBytes ?? 1) == 0 && fused.cache.residentBytes < fused.cache.misses * g.pageBytes)
    }
}
