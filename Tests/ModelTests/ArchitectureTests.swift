import Foundation
import GGUF
@testable import Generation
import LongHeads
import TestSupport
import Testing
import Tokenization
@testable import Model

/// The `qwen2` architecture as described features (Q/K/V biases, NEOX RoPE, untied output) on tiny
/// generated models, against the plain-float reference forward pass (Tests/TestSupport/TinyModel.swift).
@Suite struct Qwen2ArchitectureTests {
    static func tiny(_ type: TensorType = .q8_0) -> TinyModel {
        var t = TinyModel()
        t.architecture = "qwen2"
        t.untiedOutput = true
        t.ropeBase = 1_000_000
        t.matrixType = type
        return t
    }

    static func load(_ tiny: TinyModel, _ name: String, maxBatch: Int = 32) throws -> (LlamaModel, String) {
        let path = try tiny.write(name: "qwen2-\(name)-\(UUID().uuidString.prefix(8))")
        return (try LlamaModel(file: GGUFFile(path: path), threads: 2, maxBatch: maxBatch), path)
    }

    @Test func configDescribesQwen2Features() throws {
        let (model, path) = try Self.load(Self.tiny(), "config")
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(model.config.architecture == "qwen2")
        #expect(model.config.features == ArchitectureFeatures(qkvBias: true, ropePairing: .neox))
        #expect(model.config.ropeBase == 1_000_000)
        // llama is unchanged.
        #expect(ArchitectureFeatures.known["llama"] == ArchitectureFeatures(qkvBias: false, ropePairing: .interleaved))
    }

    /// NEOX pairs dimension i with i + ropeDim/2 (ggml_rope_ext, GGML_ROPE_TYPE_NEOX), NORM pairs 2i with 2i+1.
    @Test func ropePairings() {
        let d = 8
        for pairing in [RoPEPairing.interleaved, .neox] {
            let rope = RoPE(headDim: d, ropeDim: d, base: 10000, pairing: pairing)
            let table = UnsafeMutablePointer<Float>.allocate(capacity: d)
            defer { table.deallocate() }
            rope.fillTable(position: 3, table)
            var x: [Float] = (0..<d).map { Float($0 + 1) }
            let src = x
            x.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, heads: 1, table: table) }
            for i in 0..<d / 2 {
                let (a, b) = pairing == .neox ? (i, i + d / 2) : (2 * i, 2 * i + 1)
                let angle = 3 * pow(10000.0, -Double(2 * i) / Double(d))
                let (c, s) = (Float(cos(angle)), Float(sin(angle)))
                #expect(abs(x[a] - (src[a] * c - src[b] * s)) < 1e-5, "\(pairing) pair \(i)")
                #expect(abs(x[b] - (src[a] * s + src[b] * c)) < 1e-5, "\(pairing) pair \(i)")
            }
        }
    }

    @Test(arguments: [TensorType.q4_1, .q8_0])
    func matchesPlainFloatReference(type: TensorType) throws {
        let (model, path) = try Self.load(Self.tiny(type), "ref")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let tokens = TinyModelForwardTests.tokens
        let ref = try ReferenceForward(path: path).logits(tokens)
        let att = DenseAttention(config: model.config, capacity: 64, pool: model.pool)
        let out = try model.forward(tokens[...], start: 0, attention: att, logits: .all)
        let V = model.config.vocabSize
        var agree = 0, clear = 0
        for (i, row) in ref.enumerated() {
            let got = UnsafeBufferPointer(rebasing: out[i * V..<(i + 1) * V])
            #expect(relativeError(got, row) < 0.05, "position \(i)")
            let sorted = row.sorted(by: >)
            guard sorted[0] - sorted[1] > 0.02 * row.map(abs).max()! else { continue }
            clear += 1
            if got.indices.max(by: { got[$0] < got[$1] }) == row.indices.max(by: { row[$0] < row[$1] }) { agree += 1 }
        }
        #expect(clear >= ref.count / 2)
        #expect(agree == clear)
    }

    /// The reference is sensitive to the features: the same weights read as llama (no biases, NORM RoPE,
    /// tied output) give other logits, so agreement above is not an accident of small weights.
    @Test func featuresChangeTheResult() throws {
        var asLlama = Self.tiny()
        asLlama.architecture = "llama"
        asLlama.untiedOutput = false
        let pq = try Self.tiny().write(name: "qwen2-vs-q-\(UUID().uuidString.prefix(8))")
        let pl = try asLlama.write(name: "qwen2-vs-l-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(atPath: pq); try? FileManager.default.removeItem(atPath: pl) }
        let tokens = Array(TinyModelForwardTests.tokens.prefix(8))
        let a = try ReferenceForward(path: pq).logits(tokens).flatMap { $0 }
        let b = try ReferenceForward(path: pl).logits(tokens).flatMap { $0 }
        #expect(maxAbsDiff(a, b) > 0.1)
    }

    @Test func prefillEqualsDecode() throws {
        let (model, path) = try Self.load(Self.tiny(), "decode")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let tokens = TinyModelForwardTests.tokens
        let V = model.config.vocabSize
        let all = Array(try model.forward(tokens[...], start: 0, attention: DenseAttention(config: model.config, capacity: 64, pool: model.pool), logits: .all))
        let split = DenseAttention(config: model.config, capacity: 64, pool: model.pool)
        _ = try model.forward(tokens[0..<10], start: 0, attention: split, logits: .none)
        for i in 10..<tokens.count {
            let row = try model.forward(tokens[i...i], start: i, attention: split, logits: .last)
            #expect(Array(row) == Array(all[i * V..<(i + 1) * V]), "position \(i)")
        }
    }

    /// LONGHEADS.md invariant on qwen2: a budget covering the whole context is dense attention
    /// (NEOX-rotated local keys and per-slot rotated queries compose to the absolute rotation).
    @Test func longHeadsFullBudgetEqualsDense() throws {
        let (model, path) = try Self.load(Self.tiny(), "lh")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let toks = LongHeadsInvariantTests.tokens(150)
        let dense = try run(model, toks, block: 32, attention: DenseAttention(config: model.config, capacity: 160, pool: model.pool))
        for block in [16, 7] {
            let lh = try LongHeadsAttention(config: model.config, parameters: .init(chunkSize: 16, attentionLength: 160),
                                            archive: MemoryArchive(), pool: model.pool)
            #expect(maxAbsDiff(try run(model, toks, block: block, attention: lh), dense) < 2e-3, "block \(block)")
        }
    }

    /// Selective LongHeads on qwen2 against the naive rule of the reference (keys re-rotated per slot).
    @Test(arguments: [SelectionPolicy.paper, .quest])
    func selectiveLongHeadsMatchesNaiveRule(policy: SelectionPolicy) throws {
        let (model, path) = try Self.load(Self.tiny(), "lh-sel-\(policy.rawValue)", maxBatch: 16)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let toks = LongHeadsInvariantTests.tokens(120, seed: 3)
        let ref = try ReferenceForward(path: path).logits(toks, longHeads: (16, 64, 64), policy: policy.rawValue)
        let lh = try LongHeadsAttention(config: model.config, parameters: .init(chunkSize: 16, attentionLength: 64, policy: policy),
                                        archive: MemoryArchive(), pool: model.pool)
        let got = try run(model, toks, block: 16, attention: lh)
        let V = model.config.vocabSize
        var worst: Float = 0
        for (i, row) in ref.enumerated() {
            let scale = row.map(abs).max()!
            worst = max(worst, zip(got[i * V..<(i + 1) * V], row).map { abs($0 - $1) }.max()! / scale)
        }
        #expect(worst < 0.02, "\(policy): worst relative logit error \(worst)")
    }

    /// A qwen2 file without its Q/K/V biases is refused with the missing tensor named, not run without them.
    @Test func missingBiasIsNamed() throws {
        var llama = Self.tiny()
        llama.architecture = "llama"  // same tensors minus the biases
        var (w, _) = llama.gguf()
        w.set("general.architecture", .string("qwen2"))
        for (k, v) in [("block_count", llama.layers), ("embedding_length", llama.dim), ("feed_forward_length", llama.ffn),
                       ("attention.head_count", llama.heads), ("attention.head_count_kv", llama.kvHeads)] {
            w.set("qwen2." + k, .uint32(UInt32(v)))
        }
        let p = NSTemporaryDirectory() + "tiny-qwen2-nobias-\(getpid()).gguf"
        try w.write(to: p)
        defer { try? FileManager.default.removeItem(atPath: p) }
        #expect(throws: ModelError.self) { try LlamaModel(file: GGUFFile(path: p), threads: 1) }
        do {
            _ = try LlamaModel(file: GGUFFile(path: p), threads: 1)
        } catch {
            #expect("\(error)".contains("blk.0.attn_q.bias"), "\(error)")
        }
    }
}

/// ChatML with each model's own system line and special ids.
@Suite struct ChatTemplateTests {
    static let smolTemplate = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    static let qwenTemplate = #"""
    {%- if tools %}
        {{- '<|im_start|>system\n' }}
        {%- if messages[0]['role'] == 'system' %}
            {{- messages[0]['content'] }}
        {%- endif %}
    {%- else %}
        {%- if messages[0]['role'] == 'system' %}
            {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
        {%- else %}
            {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
    """#

    @Test func systemLineFromTheTemplate() {
        #expect(ChatTemplate.systemLiteral(in: Self.smolTemplate) == "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        #expect(ChatTemplate.systemLiteral(in: Self.qwenTemplate) == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
        #expect(ChatTemplate.systemLiteral(in: "{{ '<|im_start|>' + m.role }}") == nil)
    }

    @Test func usesTheModelsOwnIdsAndOptionalSystem() throws {
        let path = try TinyModel().write(name: "chat-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let tok = try Tokenizer(gguf: GGUFFile(path: path))
        let (imStart, imEnd) = (tok.id(of: "<|im_start|>")!, tok.id(of: "<|im_end|>")!)
        let bare = ChatTemplate.chatML(user: "hi", system: .none, tokenizer: tok)
        #expect(bare.first == imStart && bare.filter { $0 == imEnd }.count == 1)
        #expect(tok.decode(bare, renderSpecial: true) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
        let custom = ChatTemplate.chatML(user: "hi", system: .text("Be brief."), tokenizer: tok)
        #expect(tok.decode(custom, renderSpecial: true).hasPrefix("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"))
        // No chat template in the tiny file: SmolLM2's line, as before.
        #expect(tok.decode(ChatTemplate.chatML(user: "hi", tokenizer: tok), renderSpecial: true).contains(ChatTemplate.defaultSystem))
        #expect(tok.isEndOfGeneration(imEnd) && tok.isEndOfGeneration(tok.id(of: "<|endoftext|>")!))
    }
}

@Suite struct LongHeadsDefaultsTests {
    @Test func perModelDefaults() {
        // SmolLM2-135M: 8k trained → today's measured default.
        #expect(LongHeadsParameters.defaults(trainedContext: 8192) == .default)
        // Qwen2.5: 32k trained → the same 1,024 (4,096 measured: 0.61× the ingest rate, Docs/ARCHITECTURES.md).
        #expect(LongHeadsParameters.defaults(trainedContext: 32768) == .default)
        #expect(LongHeadsParameters.defaults(trainedContext: 131_072) == .default)
        // A short-trained model: half its context, never fewer than 3 chunks; always valid.
        #expect(LongHeadsParameters.defaults(trainedContext: 2048).attentionLength == 1024)
        #expect(LongHeadsParameters.defaults(trainedContext: 1024).attentionLength == 768)
        for n in [0, 1000, 2048, 8192, 12345, 32768, 1 << 20] { #expect(LongHeadsParameters.defaults(trainedContext: n).problem == nil) }
    }
}
