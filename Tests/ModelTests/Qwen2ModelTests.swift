import Foundation
import GGUF
import Generation
import LongHeads
import TestSupport
import Testing
import Tokenization
@testable import Model

/// Qwen2.5-Coder-0.5B-Instruct, if present (TestSupport `RealModels`).
let qwenModelPath: String? = RealModels.qwen25Coder05B

@Suite(.serialized, .enabled(if: qwenModelPath != nil, "needs Qwen2.5-Coder-0.5B (set LONGHEADS_QWEN_MODEL or fetch qwen2.5-coder-0.5b)"))
struct Qwen2ModelTests {
    nonisolated(unsafe) static let loaded: (LlamaModel, Tokenizer)? = qwenModelPath.flatMap { p in
        guard let f = try? GGUFFile(path: p), let m = try? LlamaModel(file: f, threads: 2, maxBatch: 64),
              let t = try? Tokenizer(gguf: f) else { return nil }
        return (m, t)
    }

    @Test func configFromTheFile() throws {
        let (model, tok) = try #require(Self.loaded)
        let c = model.config
        #expect(c.architecture == "qwen2" && c.features == ArchitectureFeatures(qkvBias: true, ropePairing: .neox))
        #expect((c.layers, c.dim, c.ffnDim, c.heads, c.kvHeads, c.headDim) == (24, 896, 4864, 14, 2, 64))
        #expect(c.vocabSize == 151_936 && c.ropeBase == 1_000_000 && c.trainedContext == 32_768)
        #expect(tok.preTokenizer == "qwen2" && !tok.addBOS)
        #expect(LongHeadsParameters.defaults(trainedContext: c.trainedContext) == .default)
    }

    /// llama.cpp b11434 `llama-completion -p "def fibonacci(n):" -n 32 --temp 0` on the same file
    /// (Docs/ARCHITECTURES.md): the engine's greedy continuation is the same text.
    @Test func greedyMatchesLlamaCpp() throws {
        let (model, tok) = try #require(Self.loaded)
        let ids = tok.encode("def fibonacci(n):")
        let att = DenseAttention(config: model.config, capacity: ids.count + 32, pool: model.pool)
        var logits = try model.forward(ids[...], start: 0, attention: att, logits: .last)
        var got = [Int32]()
        for step in 0..<32 {
            let next = Sampler.argmax(logits)
            got.append(next)
            logits = try model.forward([next], start: ids.count + step, attention: att, logits: .last)
        }
        #expect(tok.decode(got) == "\n    if n <= 0:\n        return \"Invalid input\"\n    elif n == 1:\n        return 0\n    elif n == 2")
    }

    /// LONGHEADS.md invariant on Qwen2.5 (NEOX RoPE, biases, 14 query heads on 2 KV heads): a full budget is dense.
    @Test func longHeadsWithFullBudgetEqualsDense() throws {
        let (model, tok) = try #require(Self.loaded)
        let V = model.config.vocabSize
        var ids = tok.encode(String(repeating: "The contract between Alpha Ltd and Beta GmbH was signed on 3 May 2021 in Zürich. ", count: 20))
        ids = Array(ids.prefix(256))
        let dense = try run(model, ids, block: 64, attention: DenseAttention(config: model.config, capacity: ids.count, pool: model.pool))
        let lh = try LongHeadsAttention(config: model.config, parameters: .init(chunkSize: 64, attentionLength: 256),
                                        archive: MemoryArchive(), pool: model.pool)
        let got = try run(model, ids, block: 64, attention: lh)
        let (worst, topAgree) = logitAgreement(got, dense, vocab: V)
        print("longheads vs dense on Qwen2.5-Coder-0.5B: worst logit difference \(worst), top-1 \(topAgree)/\(ids.count)")
        #expect(worst < 0.05, "worst logit difference \(worst)")
        #expect(topAgree >= ids.count - 2, "top-1 agrees at \(topAgree)/\(ids.count)")
    }

    /// Fixtures/qwen2-greedy-llamacpp.jsonl: 32 greedy tokens of llama.cpp b11434 `llama-completion --temp 0`
    /// on the same file for 4 raw and 4 chat prompts (chat: ChatML with Qwen's default system line).
    /// The engine's greedy text must equal llama.cpp's up to its first near-tie (top-1/top-2 gap < 0.25).
    @Test func greedyMatchesLlamaCppUpToFirstNearTie() throws {
        let (model, tok) = try #require(Self.loaded)
        var report = [String]()
        for case let row in try fixtureLines("qwen2-greedy-llamacpp.jsonl") {
            let prompt = row["prompt"] as! String, want = row["llama_cpp"] as! String
            let ids = row["chat"] as! Bool ? ChatTemplate.chatML(user: prompt, tokenizer: tok) : tok.encode(prompt)
            let att = DenseAttention(config: model.config, capacity: ids.count + 32, pool: model.pool)
            var logits = try model.forward(ids[...], start: 0, attention: att, logits: .last)
            var got = [Int32]()
            var tie: Int? = nil
            for step in 0..<32 {
                let sorted = logits.sorted(by: >)
                if sorted[0] - sorted[1] < 0.25 { tie = step; break }
                let next = Sampler.argmax(logits)
                if tok.isEndOfGeneration(next) { break }
                got.append(next)
                logits = try model.forward([next], start: ids.count + step, attention: att, logits: .last)
            }
            var text = tok.decode(got)
            while text.hasSuffix("\n") { text.removeLast() }
            report.append("\(prompt.prefix(24)): \(got.count) tokens" + (tie.map { ", near-tie at \($0)" } ?? ""))
            #expect(want.hasPrefix(text), "\(prompt): \(text.debugDescription) vs llama.cpp \(want.debugDescription)")
            if tie == nil { #expect(text == want, "\(prompt): all 32 tokens clear of ties") }
        }
        print("qwen2 greedy vs llama.cpp: " + report.joined(separator: "; "))
    }
}
