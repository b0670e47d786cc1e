// Writes the GGUF seed corpus (Fuzz/Corpus/gguf): tiny but complete Llama models, so the fuzzer starts
// from files that pass the reader, the config, the validation and the tokenizer.
// Run (plain build of the GGUF module, no sanitizers):
//   swiftc -parse-as-library -wmo -emit-library -static -module-name GGUF -emit-module-path /tmp/s/GGUF.swiftmodule \
//       -o /tmp/s/libGGUF.a Sources/GGUF/*.swift
//   swiftc -parse-as-library -I /tmp/s Fuzz/Seeds/MakeGGUFSeeds.swift /tmp/s/libGGUF.a -o /tmp/s/mk && /tmp/s/mk Fuzz/Corpus/gguf
import Foundation
import GGUF

@main struct MakeGGUFSeeds {
    static func model(spm: Bool, matrix matrixType: TensorType) -> GGUFWriter {
        let dim = 32, ffn = 32, layers = 1
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        w.set("llama.block_count", .uint32(UInt32(layers)))
        w.set("llama.embedding_length", .uint32(UInt32(dim)))
        w.set("llama.feed_forward_length", .uint32(UInt32(ffn)))
        w.set("llama.attention.head_count", .uint32(2))
        w.set("llama.attention.head_count_kv", .uint32(1))
        w.set("llama.rope.freq_base", .float32(10000))
        w.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        w.set("llama.context_length", .uint32(256))
        var tokens: [String]
        if spm {
            tokens = ["<unk>", "<s>", "</s>", "▁", "▁a", "b", "<0x41>", "<0x0A>"]
            w.set("tokenizer.ggml.model", .string("llama"))
            w.set("tokenizer.ggml.scores", .array(elementType: .float32, tokens.indices.map { .float32(-Float($0)) }))
            w.set("tokenizer.ggml.token_type", .array(elementType: .int32, tokens.indices.map { .int32($0 < 3 ? 3 : ($0 >= 6 ? 6 : 1)) }))
        } else {
            tokens = ["a", "b", "c", " ", "Ġ", "Ċ", "ab", "Ġa", "<|im_start|>", "<|im_end|>"]
            w.set("tokenizer.ggml.model", .string("gpt2"))
            w.set("tokenizer.ggml.pre", .string("smollm"))
            w.set("tokenizer.ggml.merges", .array(elementType: .string, [.string("a b"), .string("Ġ a")]))
            w.set("tokenizer.ggml.token_type", .array(elementType: .int32, tokens.indices.map { .int32($0 >= 8 ? 3 : 1) }))
        }
        w.set("tokenizer.ggml.tokens", .array(elementType: .string, tokens.map { .string($0) }))
        w.set("tokenizer.ggml.bos_token_id", .uint32(1))
        w.set("tokenizer.ggml.eos_token_id", .uint32(2))
        let vocab = 32
        func values(_ n: Int) -> [Float] { (0..<n).map { Float(($0 * 37) % 17) / 17 - 0.5 } }
        func matrix(_ name: String, _ cols: Int, _ rows: Int, _ type: TensorType) {
            let v = values(cols * rows)
            if type == .f32 { w.addTensor(name, dims: [cols, rows], floats: v); return }
            // Q8_0 blocks with scale 1/127 (enough for a seed: the values' exact decoding does not matter).
            var bytes = [UInt8]()
            for b in stride(from: 0, to: v.count, by: 32) {
                bytes += [0x08, 0x20]  // f16 ≈ 0.0079
                for x in v[b..<b + 32] { bytes.append(UInt8(bitPattern: Int8(max(-127, min(127, (x * 127).rounded()))))) }
            }
            w.addTensor(name, dims: [cols, rows], type: .q8_0, data: bytes)
        }
        matrix("token_embd.weight", dim, vocab, .q8_0)
        w.addTensor("output_norm.weight", dims: [dim], floats: [Float](repeating: 1, count: dim))
        for l in 0..<layers {
            let p = "blk.\(l)."
            w.addTensor(p + "attn_norm.weight", dims: [dim], floats: [Float](repeating: 1, count: dim))
            w.addTensor(p + "ffn_norm.weight", dims: [dim], floats: [Float](repeating: 1, count: dim))
            matrix(p + "attn_q.weight", dim, dim, matrixType)
            matrix(p + "attn_k.weight", dim, 16, matrixType)
            matrix(p + "attn_v.weight", dim, 16, matrixType)
            matrix(p + "attn_output.weight", dim, dim, matrixType)
            matrix(p + "ffn_gate.weight", dim, ffn, matrixType)
            matrix(p + "ffn_up.weight", dim, ffn, matrixType)
            matrix(p + "ffn_down.weight", ffn, dim, matrixType)
        }
        return w
    }

    static func main() throws {
        let dir = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "Fuzz/Corpus/gguf"
        try model(spm: false, matrix: .q8_0).write(to: dir + "/llama-gpt2-q8_0.gguf")
        try model(spm: true, matrix: .f32).write(to: dir + "/llama-spm-f32.gguf")
        var w = GGUFWriter(alignment: 64)
        w.set("general.architecture", .string("llama"))
        w.set("nested", .array(elementType: .array, [.array(elementType: .uint8, [.uint8(1)]), .array(elementType: .uint8, [])]))
        w.set("f64", .float64(-2.5)); w.set("i64", .int64(-1)); w.set("b", .bool(true)); w.set("u16", .uint16(7))
        w.addTensor("t", dims: [4, 2], floats: [1, 2, 3, 4, 5, 6, 7, 8])
        try w.write(to: dir + "/values-align64.gguf")
    }
}
