import Foundation
import GGUF
import KVStore
import LongHeads
import Model
import Pipeline
import TestSupport
import Testing
import Tokenization

/// Stores that keep the chunk bounds only (`ChunkSummaryContents.bounds`, the default for the Quest
/// policies): the same selections and logits as a store with the full summaries, in a features file a
/// fraction of the size; policies that read the full summaries are refused on them, by name.
@Suite struct SummaryContentsTests {
    @Test func boundsStoreAnswersAsTheFullOne() throws {
        let modelPath = try TinyModel().write(name: "summary-contents")
        defer { try? FileManager.default.removeItem(atPath: modelPath) }
        let file = try GGUFFile(path: modelPath)
        let model = try LlamaModel(file: file, threads: 2, maxBatch: 16)
        let p = DocumentPipeline(model: model, tokenizer: try Tokenizer(gguf: file), budgetBytes: 16 << 20)
        var rng = SplitMix(seed: 5)
        let ids = (0..<300).map { _ in Int32(rng.next() % 256) }
        let c = model.config
        for policy in [SelectionPolicy.quest, .questLexical, .questExact] {
            var logits = [ChunkSummaryContents: [Float]]()
            var featureFloats = [ChunkSummaryContents: Int]()
            for contents in ChunkSummaryContents.allCases {
                let dir = temp("summary-\(contents)-\(UUID().uuidString.prefix(6))")
                defer { try? FileManager.default.removeItem(atPath: dir) }
                // Chunks of 16, a head reads 4 of them: the selective part reads the summaries from chunk 4 on.
                let parameters = LongHeadsParameters(chunkSize: 16, attentionLength: 64, policy: policy, summary: contents)
                let (session, out) = try p.run(prompt: ids, storeAt: dir, modelFile: file, parameters: parameters, precision: .f16, chat: false)
                #expect(session.info.summaryContents == contents)
                logits[contents] = Array(out)
                featureFloats[contents] = try StoreReader.open(at: dir).geometry.featureFloatsPerChunk
            }
            // Bit for bit: the chunk's bound is the min/max the sub-chunk bounds merge to.
            #expect(logits[.bounds] == logits[.full], "\(policy)")
            #expect(featureFloats[.bounds] == c.layers * c.kvHeads * 2 * c.headDim)
            #expect(featureFloats[.full] == c.layers * (c.heads * c.headDim + c.kvHeads * 2 * c.headDim))
        }
    }

    @Test func fullSummaryPoliciesAreRefusedOnBoundsStores() throws {
        let modelPath = try TinyModel().write(name: "summary-refusal")
        defer { try? FileManager.default.removeItem(atPath: modelPath) }
        let file = try GGUFFile(path: modelPath)
        let model = try LlamaModel(file: file, threads: 2, maxBatch: 16)
        let p = DocumentPipeline(model: model, tokenizer: try Tokenizer(gguf: file), budgetBytes: 16 << 20)
        let ids = (0..<120).map { Int32($0 % 200 + 3) }
        // The defaults keep what the policy reads.
        #expect(LongHeadsParameters(chunkSize: 16, attentionLength: 64).summary == .bounds)
        #expect(LongHeadsParameters(chunkSize: 16, attentionLength: 64, policy: .paper).summary == .full)
        #expect(LongHeadsParameters(chunkSize: 16, attentionLength: 64, policy: .questSub).summary == .full)
        #expect(LongHeadsParameters(chunkSize: 16, attentionLength: 64, policy: .paper, summary: .bounds).problem != nil)
        let dir = temp("summary-refusal-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try p.run(prompt: ids, storeAt: dir, modelFile: file, parameters: LongHeadsParameters(chunkSize: 16, attentionLength: 64),
                      precision: .q4, chat: false)
        for policy in [SelectionPolicy.paper, .questSub] {
            #expect(throws: PipelineError.self) { _ = try p.open(store: dir, modelFile: file, then: [5, 6], policy: policy) }
            do { _ = try p.open(store: dir, modelFile: file, then: [5, 6], policy: policy) } catch {
                #expect("\(error)".contains("policy \(policy.rawValue) reads the full chunk summaries"))
            }
        }
        // The Quest policies answer from it.
        _ = try p.open(store: dir, modelFile: file, then: [5, 6], policy: .quest)
    }
}
