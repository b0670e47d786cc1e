import Foundation
import GGUF
import Kernels
import TestSupport
import Testing
@testable import Model

/// ggml's reference quantizers for block_q5_0 / block_q5_1 (quantize_row_q5_0_ref /
/// quantize_row_q5_1_ref): 32 five-bit values, low nibbles in qs, fifth bits in the u32 qh.
func quantizeQ5(_ x: [Float], type: TensorType) -> [UInt8] {
    precondition(type == .q5_0 || type == .q5_1)
    var out = [UInt8]()
    func half(_ f: Float) { let b = Float16(f).bitPattern; out.append(UInt8(b & 0xFF)); out.append(UInt8(b >> 8)) }
    for b in stride(from: 0, to: x.count, by: 32) {
        let blk = Array(x[b..<b + 32])
        var q = [Int]()
        if type == .q5_0 {
            // d = max / -16 where max is the value of largest magnitude, sign kept.
            let mx = blk.max { abs($0) < abs($1) }!
            let d = mx / -16, id = d == 0 ? 0 : 1 / d
            half(d)
            q = blk.map { min(31, Int(($0 * id + 16.5).rounded(.towardZero))) }
        } else {
            let mn = blk.min()!, mx = blk.max()!
            let d = (mx - mn) / 31, id = d == 0 ? 0 : 1 / d
            half(d); half(mn)
            q = blk.map { min(31, Int((($0 - mn) * id + 0.5).rounded(.towardZero))) }
        }
        var h: UInt32 = 0
        for j in 0..<32 { h |= UInt32(q[j] >> 4) << UInt32(j) }
        for i in 0..<4 { out.append(UInt8((h >> (8 * UInt32(i))) & 0xFF)) }
        for j in 0..<16 { out.append(UInt8((q[j] & 15) | ((q[j + 16] & 15) << 4))) }
    }
    return out
}

/// A model whose every matrix, the token embedding included (its rows are dequantized one token
/// at a time), is Q5_0 or Q5_1, as in Qwen2.5 GGUFs: the engine must match the float reference.
@Suite struct Q5ModelTests {
    @Test(arguments: [TensorType.q5_0, .q5_1])
    func matchesPlainFloatReference(type: TensorType) throws {
        var (w, weights) = TinyModel().gguf()
        for (name, t) in weights.tensors where t.dims.count == 2 {
            w.replaceTensor(name, dims: t.dims, type: type, data: quantizeQ5(t.values, type: type))
        }
        let path = NSTemporaryDirectory() + "tiny-\(getpid())-\(type).gguf"
        try w.write(to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try GGUFFile(path: path)
        #expect(try file.tensor("token_embd.weight").type == type)
        let tokens = TinyModelForwardTests.tokens
        let ref = try ReferenceForward(path: path).logits(tokens)
        let model = try LlamaModel(file: file, threads: 2, maxBatch: 32)
        let att = DenseAttention(config: model.config, capacity: 64, pool: model.pool)
        let out = try model.forward(tokens[...], start: 0, attention: att, logits: .all)
        let V = model.config.vocabSize
        for (i, row) in ref.enumerated() {
            let got = UnsafeBufferPointer(rebasing: out[i * V..<(i + 1) * V])
            // Q5 weights are packed exactly; only the activations' 8/16-bit rounding differs.
            #expect(relativeError(got, row) < 0.05, "\(type) position \(i)")
            let sorted = row.sorted(by: >)
            guard sorted[0] - sorted[1] > 0.02 * row.map(abs).max()! else { continue }
            #expect(got.indices.max(by: { got[$0] < got[$1] }) == row.indices.max(by: { row[$0] < row[$1] }), "\(type) top-1 at \(i)")
        }
    }
}
