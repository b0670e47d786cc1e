import Foundation
import Testing
import GGUF
import Tokenization
import TestSupport

/// Qwen2.5's tokenizer (151,936-token byte-level BPE, `qwen2` pre-tokenizer, ChatML specials), present when
/// its GGUF is: `$LONGHEADS_QWEN_MODEL`, or a `qwen2.5-coder-0.5b*.gguf` in the model cache.
enum Qwen2Model {
    static let path: String? = RealModels.qwen25Coder05B

    static let tokenizer: Tokenizer? = {
        guard let path, let file = try? GGUFFile(path: path) else { return nil }
        return try? Tokenizer(gguf: file)
    }()

    /// Fixtures/qwen2-tokenizer.jsonl: ids of llama.cpp's qwen2 pre-tokenizer + the file's BPE merges
    /// (how it was made: Docs/ARCHITECTURES.md), no BOS, special-token strings not parsed.
    static let cases: [ReferenceCase] = {
        guard let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil),
              let data = try? Data(contentsOf: dir.appendingPathComponent("qwen2-tokenizer.jsonl"))
        else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONDecoder().decode(ReferenceCase.self, from: Data($0.utf8))
        }
    }()
}

@Suite(.enabled(if: Qwen2Model.path != nil, "needs Qwen2.5-Coder-0.5B (set LONGHEADS_QWEN_MODEL or fetch qwen2.5-coder-0.5b)"))
struct Qwen2TokenizerTests {
    var tok: Tokenizer { Qwen2Model.tokenizer! }

    @Test func vocabularyFacts() {
        #expect(tok.model == .gpt2)
        #expect(tok.preTokenizer == "qwen2")
        #expect(tok.vocabularySize == 151_936 || tok.vocabularySize == 151_665)
        #expect(tok.addBOS == false)
        #expect(tok.bosID == 151_643)
        #expect(tok.eosID == 151_645)
        #expect(tok.id(of: "<|endoftext|>") == 151_643)
        #expect(tok.id(of: "<|im_start|>") == 151_644)
        #expect(tok.id(of: "<|im_end|>") == 151_645)
        // Generation stops on <|im_end|> and <|endoftext|>, never on <|im_start|>.
        #expect(tok.isEndOfGeneration(151_645) && tok.isEndOfGeneration(151_643))
        #expect(!tok.isEndOfGeneration(151_644))
        #expect(tok.encode("<|im_start|>user\n", parseSpecial: true).first == 151_644)
    }

    @Test func fixtureHasTwentyVariedTexts() {
        #expect(Qwen2Model.cases.count >= 20)
    }

    @Test(arguments: Qwen2Model.cases)
    func matchesReference(_ c: ReferenceCase) {
        #expect(tok.encode(c.text) == c.ids)
    }

    @Test(arguments: Qwen2Model.cases)
    func roundTrips(_ c: ReferenceCase) {
        #expect(tok.decode(c.ids) == c.text)
    }

    /// Streaming encoding (ingest) agrees with whole-text encoding under the qwen2 pre-tokenizer.
    @Test func streamingEqualsWhole() throws {
        let text = Qwen2Model.cases.map(\.text).joined(separator: "\n")
        var enc = StreamingEncoder(tokenizer: tok)
        var ids = [Int32]()
        var bytes = Array(String(repeating: text + "\n", count: 40).utf8)[...]
        let whole = tok.encode(String(decoding: bytes, as: UTF8.self))
        while !bytes.isEmpty {
            let n = min(997, bytes.count)
            try enc.append(contentsOf: bytes.prefix(n), into: &ids)
            bytes = bytes.dropFirst(n)
        }
        try enc.finish(into: &ids)
        #expect(ids == whole)
    }
}

/// The qwen2 pre-tokenizer without the model: one digit per pre-token (llama3 groups up to three).
@Suite struct Qwen2PreTokenizerTests {
    @Test func digitsSplitOneByOne() throws {
        let tok = try Tokenizer(vocabulary: Tiny.bytePair(merges: [], pre: "qwen2"))
        #expect(tok.addBOS == false)
        #expect(tok.preTokenize("ab 12345 x٣٤") == ["ab", " ", "1", "2", "3", "4", "5", " x", "٣", "٤"])
        #expect(tok.preTokenize("it's 10\n\n  y") == ["it", "'s", " ", "1", "0", "\n\n", " ", " y"])
        let l3 = try Tokenizer(vocabulary: Tiny.bytePair(merges: [], pre: "llama3"))
        #expect(l3.preTokenize("ab 12345") == ["ab", " ", "123", "45"])
    }
}
