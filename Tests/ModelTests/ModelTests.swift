import Foundation
import GGUF
import Kernels
import TestSupport
import Testing
@testable import Model

/// Largest |a-b| over two equal-length rows, relative to the largest |b|.
func relativeError(_ a: UnsafeBufferPointer<Float>, _ b: [Float]) -> Float {
    let scale = b.map(abs).max() ?? 1
    return zip(a, b).map { abs($0 - $1) }.max()! / scale
}

@Suite struct TinyModelForwardTests {
    static let tokens: [Int32] = [72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100, 33, 256, 10, 50, 51, 52]

    @Test(arguments: [TensorType.q4_1, .q8_0, .f32])
    func matchesPlainFloatReference(type: TensorType) throws {
        var tiny = TinyModel()
        tiny.matrixType = type
        let path = try tiny.write(name: "ref-\(type)")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ref = try ReferenceForward(path: path).logits(Self.tokens)
        let model = try LlamaModel(file: GGUFFile(path: path), threads: 2, maxBatch: 32)
        let att = DenseAttention(config: model.config, capacity: 64, pool: model.pool)
        let out = try model.forward(Self.tokens[...], start: 0, attention: att, logits: .all)
        let V = model.config.vocabSize
        var agree = 0, clear = 0
        for (i, row) in ref.enumerated() {
            let got = UnsafeBufferPointer(rebasing: out[i * V..<(i + 1) * V])
            // Activations are quantized to 8 bits per block of 32 (as llama.cpp does): a few percent at most.
            #expect(relativeError(got, row) < 0.05, "position \(i)")
            // Top-1 must agree wherever the reference's top-1 is clear of its runner-up (F32 weights are
            // requantized to 8 bits, which may flip near-ties).
            let sorted = row.sorted(by: >)
            guard sorted[0] - sorted[1] > 0.02 * row.map(abs).max()! else { continue }
            clear += 1
            if got.indices.max(by: { got[$0] < got[$1] }) == row.indices.max(by: { row[$0] < row[$1] }) { agree += 1 }
        }
        #expect(clear >= ref.count / 2)
        #expect(agree == clear)
    }

    @Test func prefillEqualsPrefillThenDecode() throws {
        let path = try TinyModel().write(name: "decode")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let model = try LlamaModel(file: GGUFFile(path: path), threads: 2, maxBatch: 32)
        let V = model.config.vocabSize
        let whole = DenseAttention(config: model.config, capacity: 64, pool: model.pool)
        let all = Array(try model.forward(Self.tokens[...], start: 0, attention: whole, logits: .all))
        // Same tokens fed as 10 + 1 + 1 + …: every position's logits must agree.
        let split = DenseAttention(config: model.config, capacity: 64, pool: model.pool)
        let head = Array(try model.forward(Self.tokens[0..<10], start: 0, attention: split, logits: .all))
        #expect(head == Array(all[0..<10 * V]))
        for i in 10..<Self.tokens.count {
            let row = try model.forward(Self.tokens[i...i], start: i, attention: split, logits: .last)
            #expect(Array(row) == Array(all[i * V..<(i + 1) * V]), "position \(i)")
        }
    }

    @Test func refusesUnsupportedArchitectureAndTypes() throws {
        var (w, _) = TinyModel().gguf()
        w.set("general.architecture", .string("mamba"))
        let p = NSTemporaryDirectory() + "tiny-arch-\(getpid()).gguf"
        try w.write(to: p)
        defer { try? FileManager.default.removeItem(atPath: p) }
        #expect(throws: ModelError.self) { try LlamaModel(file: GGUFFile(path: p), threads: 1) }
        do {
            _ = try LlamaModel(file: GGUFFile(path: p), threads: 1)
        } catch {
            #expect("\(error)".contains("mamba"))
        }
    }
}
