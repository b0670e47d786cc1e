import Foundation
import GGUF
import TestSupport
import Testing
@testable import Model

/// Metadata that parses but is nonsense, and tokenizer/weights mismatches: refused at load with an
/// error naming the key or tensor (issue 14), where they used to load and produce garbage or trap.
@Suite struct ModelValidationTests {
    /// Loads the tiny model after `edit`, expecting a `ModelError` whose message names `mentions`.
    func expectRefused(mentions: String, sourceLocation: SourceLocation = #_sourceLocation,
                       _ edit: (inout GGUFWriter, TinyModel) -> Void) {
        let tiny = TinyModel()
        var (w, _) = tiny.gguf()
        edit(&w, tiny)
        do {
            _ = try LlamaModel(file: GGUFFile(bytes: w.serialized(), name: "bad.gguf"), threads: 1, maxBatch: 4)
            Issue.record("loaded a model that names '\(mentions)' wrongly", sourceLocation: sourceLocation)
        } catch let e as ModelError {
            #expect(e.description.contains(mentions), "\(e)", sourceLocation: sourceLocation)
            #expect(e.description.hasPrefix("bad.gguf: "), "\(e)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: [Float(0), -10000, .nan, .infinity])
    func ropeBaseMustBeFinitePositive(base: Float) {
        expectRefused(mentions: "llama.rope.freq_base") { w, _ in w.set("llama.rope.freq_base", .float32(base)) }
    }

    @Test(arguments: [Float(0), -1e-5, .nan])
    func rmsEpsilonMustBeFinitePositive(eps: Float) {
        expectRefused(mentions: "llama.attention.layer_norm_rms_epsilon") { w, _ in
            w.set("llama.attention.layer_norm_rms_epsilon", .float32(eps))
        }
    }

    @Test func blockCountMustMatchTheBlocksPresent() {
        // 1 declared where 2 exist (the issue's "7 layers declared where 30 exist").
        expectRefused(mentions: "llama.block_count") { w, _ in w.set("llama.block_count", .uint32(1)) }
        // More declared than exist: the first missing block's tensor is named.
        expectRefused(mentions: "blk.2.") { w, _ in w.set("llama.block_count", .uint32(3)) }
    }

    @Test func vocabularyMustFitTheEmbedding() {
        // token_embd with fewer rows than the tokenizer has tokens trapped on ordinary text.
        expectRefused(mentions: "token_embd.weight") { w, tiny in
            let rows = tiny.vocab - 3
            let values = (0..<tiny.dim * rows).map { Float($0 % 7) / 7 }
            w.replaceTensor("token_embd.weight", dims: [tiny.dim, rows], type: .q8_0,
                            data: TinyModel.quantize(values, type: .q8_0))
        }
    }

    @Test func specialTokenIdsMustBeInTheVocabulary() {
        expectRefused(mentions: "tokenizer.ggml.bos_token_id") { w, tiny in
            w.set("tokenizer.ggml.bos_token_id", .uint32(UInt32(tiny.vocab)))
        }
        expectRefused(mentions: "tokenizer.ggml.eos_token_id") { w, _ in w.set("tokenizer.ggml.eos_token_id", .int32(-1)) }
        expectRefused(mentions: "tokenizer.ggml.padding_token_id") { w, _ in
            w.set("tokenizer.ggml.padding_token_id", .string("pad"))
        }
    }

    @Test func contextLengthMustBePositive() {
        expectRefused(mentions: "llama.context_length") { w, _ in w.set("llama.context_length", .int32(-4)) }
    }

    @Test func theUneditedTinyModelPasses() throws {
        let file = try GGUFFile(bytes: TinyModel().gguf().0.serialized())
        try ModelConfig(gguf: file).validate(against: file)
    }
}
