import Foundation
import GGUF
import Generation
import Model
import TestSupport
import Testing
import Tokenization

/// The repetition penalty of `Generator.decode` (CTRL's rule) on the tiny generated model.
@Suite struct RepetitionPenaltyTests {
    func decode(_ penalty: Float, window: Int = 64) throws -> [Int32] {
        let path = try TinyModel().write(name: "penalty-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try GGUFFile(path: path)
        let model = try LlamaModel(file: file, threads: 2, maxBatch: 16)
        let generator = Generator(model: model, tokenizer: try Tokenizer(gguf: file))
        let prompt: [Int32] = [1, 5, 9, 5, 9, 5, 9]
        let attention = DenseAttention(config: model.config, capacity: 64, pool: model.pool)
        let logits = try model.forward(prompt[...], start: 0, attention: attention, logits: .last)
        var sampling = SamplingParameters.greedy
        sampling.repeatPenalty = penalty
        sampling.repeatWindow = window
        return try generator.decode(from: logits, position: prompt.count, maxTokens: 24, sampling: sampling,
                                    attention: attention) { _ in }.tokens
    }

    @Test func overwhelmingPenaltyNeverRepeatsInsideTheWindow() throws {
        let plain = try decode(1)
        let penalized = try decode(1e30)
        #expect(Set(penalized).count == penalized.count, "\(penalized)")
        // Greedy decoding of the tiny model repeats itself; the penalty changes the output.
        #expect(Set(plain).count < plain.count, "\(plain)")
        #expect(plain != penalized)
    }

    @Test func penaltyOneIsPlainGreedy() throws {
        #expect(try decode(1) == decode(1, window: 0))
    }
}
