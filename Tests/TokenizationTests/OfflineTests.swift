import Foundation
import GGUF
import Testing
import Tokenization

@Suite struct BytePairTests {
    @Test func lowestRankMergesFirst() throws {
        let extra: [(String, TokenType)] = [("ab", .normal), ("bc", .normal), ("abc", .normal)]
        // "b c" outranks "a b": abc → a + bc → abc.
        let t1 = try Tokenizer(vocabulary: Tiny.bytePair(merges: [("b", "c"), ("a", "b"), ("a", "bc")], extra: extra))
        #expect(t1.encode("abc") == [t1.id(of: "abc")!])
        // "a b" outranks "b c": abc → ab + c, and there is no "ab c" merge.
        let t2 = try Tokenizer(vocabulary: Tiny.bytePair(merges: [("a", "b"), ("b", "c"), ("a", "bc")], extra: extra))
        #expect(t2.encode("abc") == [t2.id(of: "ab")!, 99])
        #expect(t2.decode(t2.encode("abc")) == "abc")
    }

    @Test func equalRanksMergeLeftmostFirst() throws {
        let t = try Tokenizer(vocabulary: Tiny.bytePair(merges: [("a", "a")], extra: [("aa", .normal)]))
        let aa = t.id(of: "aa")!
        #expect(t.encode("aaa") == [aa, 97])
        #expect(t.encode("aaaa") == [aa, aa])
    }

    @Test func spacesAndBytesUseTheByteLevelAlphabet() throws {
        let t = try Tokenizer(vocabulary: Tiny.bytePair(merges: [(" ", "h"), (" h", "i")], extra: [(" h", .normal), (" hi", .normal)]))
        #expect(Tiny.level(" ") == "Ġ")
        let hi = t.id(of: "Ġhi")!
        #expect(t.encode("hi hi") == [104, 105, hi])
        // No merges for these: every UTF-8 byte is its own token (id == byte here).
        #expect(t.encode("é\n") == [0xC3, 0xA9, 0x0A])
        #expect(t.decode([0xC3, 0xA9, 0x0A, hi]) == "é\n hi")
        #expect(t.pieceBytes(hi) == Array(" hi".utf8))
    }

    @Test func mergeResultOutsideTheVocabularyFallsBackToBytes() throws {
        // llama.cpp applies the merge, finds no token "xy", and emits the single-byte tokens.
        let t = try Tokenizer(vocabulary: Tiny.bytePair(merges: [("x", "y")]))
        #expect(t.encode("xy") == [120, 121])
    }

    @Test func mergesNeverCrossPreTokens() throws {
        // "a " would be a token, but the pre-tokens of "a b" are "a" and " b".
        let t = try Tokenizer(vocabulary: Tiny.bytePair(merges: [("a", " "), ("a ", "b")], extra: [("a ", .normal), ("a b", .normal)]))
        #expect(t.preTokenize("a b") == ["a", " b"])
        #expect(t.encode("a b") == [97, 32, 98])
        #expect(t.id(of: Tiny.level("a b")) != nil)
    }

    @Test func specialTokens() throws {
        let v = Tiny.bytePair(merges: [], extra: [("<|im_start|>", .control), ("<|im_end|>", .control), ("<tool>", .userDefined)])
        let t = try Tokenizer(vocabulary: v)
        let start = t.id(of: "<|im_start|>")!, end = t.id(of: "<|im_end|>")!, tool = t.id(of: "<tool>")!
        #expect(t.encode("<|im_start|>x<|im_end|>", parseSpecial: true) == [start, 120, end])
        let plain = t.encode("<|im_start|>x<|im_end|>")
        #expect(!plain.contains(start) && !plain.contains(end))
        #expect(t.decode(plain) == "<|im_start|>x<|im_end|>")
        // User-defined tokens are matched even in plain text, as llama.cpp does.
        #expect(t.encode("a<tool>b") == [97, tool, 98])
        #expect(t.decode([97, tool, 98]) == "a<tool>b")
        // Control tokens are silent unless rendered; <|im_end|> ends generation.
        #expect(t.decode([start, 120, end]) == "x")
        #expect(t.decode([start, 120, end], renderSpecial: true) == "<|im_start|>x<|im_end|>")
        #expect(t.isEndOfGeneration(end) && !t.isEndOfGeneration(start))
        #expect(t.preTokenize("<|im_start|>x y", parseSpecial: true) == ["<|im_start|>", "x", " y"])
    }

    @Test func endOfGenerationFollowsLlamaCpp() throws {
        let v = Tiny.bytePair(merges: [], extra: [("<|endoftext|>", .normal), ("<|eot_id|>", .control), ("<stop>", .control)], eos: 258)
        let t = try Tokenizer(vocabulary: v)
        // Known end strings end generation (and become control tokens); so does the file's EOS.
        #expect(t.isEndOfGeneration(256) && t.isEndOfGeneration(257) && t.isEndOfGeneration(258))
        #expect(t.tokenType(256) == .control)
        #expect(t.eotID == 256 || t.eotID == 257)
        #expect(!t.isEndOfGeneration(97))
        #expect(t.endOfGenerationIDs == [256, 257, 258])
    }

    @Test func bosOnRequest() throws {
        var v = Tiny.bytePair(merges: [])
        v.bosID = 5
        let t = try Tokenizer(vocabulary: v)
        #expect(!t.addBOS)
        #expect(t.encode("a", addBOS: true) == [5, 97])
        #expect(t.encode("a") == [97])
        #expect(t.encode("") == [])
    }
}

@Suite struct PreTokenizerTests {
    func split(_ pre: String, _ text: String) throws -> [String] {
        try Tokenizer(vocabulary: Tiny.bytePair(merges: [], pre: pre)).preTokenize(text)
    }

    @Test func gpt2() throws {
        #expect(try split("gpt2", "Hello world's 12345!!  end\n\n x") ==
                ["Hello", " world", "'s", " 12345", "!!", " ", " end", "\n\n", " x"])
        #expect(try split("gpt2", "a  b   ") == ["a", " ", " b", "   "])
        #expect(try split("gpt2", "I'M he'll") == ["I", "'", "M", " he", "'ll"])
        // Non-ASCII classes: letters with marks, CJK letters, symbols, a non-breaking space.
        #expect(try split("gpt2", "café 大型 🚀\u{00A0}x") == ["café", " 大型", " 🚀", "\u{00A0}", "x"])
    }

    @Test func smollmSplitsEveryDigit() throws {
        #expect(try split("smollm", "pi 3.14 x42") == ["pi", " ", "3", ".", "1", "4", " x", "4", "2"])
        // Digit chunks are hard edges: the spaces before a digit stay together at a chunk end.
        #expect(try split("smollm", "a  1") == ["a", "  ", "1"])
        #expect(try split("smollm", "½²٣") == ["½", "²", "٣"])
    }

    @Test func llama3() throws {
        #expect(try split("llama3", "Hello world!!\n\n  123456 I'M ok") ==
                ["Hello", " world", "!!\n\n", " ", " ", "123", "456", " I", "'M", " ok"])
        #expect(try split("llama3", "x\r\n\ty") == ["x", "\r\n", "\ty"])
        #expect(try split("llama3", "(a)") == ["(a", ")"])
    }

    @Test func llamaCppDefault() throws {
        #expect(try split("default", "Hello, world!!! 12345 $x") ==
                ["Hello", ",", " world", "!!!", " ", "123", "45", " ", "$", "x"])
        #expect(try Tokenizer(vocabulary: Tiny.bytePair(merges: [], pre: nil)).preTokenize("a,b") == ["a", ",", "b"])
    }

    @Test func piecesAlwaysConcatenateToTheText() throws {
        let text = "Zoë's naïve café — 👩\u{200D}💻 at 10:00\r\n\t x  y  "
        for pre in ["gpt2", "smollm", "llama3", "qwen2", "default"] {
            #expect(try split(pre, text).joined() == text)
        }
    }

    @Test func unsupportedPreTokenizerIsAnError() {
        #expect(throws: TokenizerError.unsupportedPreTokenizer("qwen35")) {
            try Tokenizer(vocabulary: Tiny.bytePair(merges: [], pre: "qwen35"))
        }
    }
}

@Suite struct SentencePieceTests {
    @Test func mergesByScoreWithSpacePrefix() throws {
        let t = try Tokenizer(vocabulary: Tiny.sentencePiece())
        #expect(t.addBOS && t.addSpacePrefix)
        #expect(t.encode("hello world") == [Tiny.spm("▁hello"), Tiny.spm("▁world")])
        #expect(t.decode(t.encode("hello world")) == "hello world")
        #expect(t.encode("hello", addBOS: true) == [1, Tiny.spm("▁hello")])
        #expect(t.decode([1, Tiny.spm("▁hello")]) == "hello")
    }

    @Test func byteFallback() throws {
        let t = try Tokenizer(vocabulary: Tiny.sentencePiece())
        // "ö" is no piece: its UTF-8 bytes become <0xC3><0xB6>.
        let ids = t.encode("hello wörld")
        #expect(ids == [Tiny.spm("▁hello"), Tiny.spm("▁w"), Tiny.byteToken(0xC3), Tiny.byteToken(0xB6),
                        Tiny.spm("r"), Tiny.spm("ld")])
        #expect(t.decode(ids) == "hello wörld")
        var sd = t.makeStreamingDecoder()
        let parts = ids.map { sd.feed($0) }
        #expect(parts == ["hello", " w", "", "ö", "r", "ld"])
    }

    @Test func leadingSpacesAndNoPrefix() throws {
        let t = try Tokenizer(vocabulary: Tiny.sentencePiece())
        #expect(t.decode(t.encode(" hello")) == " hello")
        let noPrefix = try Tokenizer(vocabulary: Tiny.sentencePiece(addSpacePrefix: false))
        #expect(noPrefix.encode("hello") == [Tiny.spm("he"), Tiny.spm("llo")])
        #expect(noPrefix.decode(noPrefix.encode("hello world")) == "hello world")
    }

    @Test func specialTokensRestartTheSpacePrefix() throws {
        let t = try Tokenizer(vocabulary: Tiny.sentencePiece(userDefined: ["<sep>"]))
        #expect(t.encode("<s>hello", parseSpecial: true) == [1, Tiny.spm("▁hello")])
        #expect(t.encode("hello<s>", parseSpecial: false).first == Tiny.spm("▁hello"))
        let sep = t.id(of: "<sep>")!
        #expect(t.encode("hello<sep>world") == [Tiny.spm("▁hello"), sep, Tiny.spm("▁world")])
        #expect(t.decode([1, Tiny.spm("▁hello"), 2]) == "hello")
        #expect(t.decode([1, Tiny.spm("▁hello"), 2], renderSpecial: true) == "<s>hello</s>")
        #expect(t.decode(t.encode("<s>hello</s>", parseSpecial: true), renderSpecial: true) == "<s>hello</s>")
    }
}

@Suite struct StreamingDecoderTests {
    @Test func holdsBackSplitCharacters() throws {
        let t = try Tokenizer(vocabulary: Tiny.bytePair(merges: []))
        let ids = t.encode("é🚀!")  // one token per byte
        #expect(ids.count == 7)
        var sd = t.makeStreamingDecoder()
        #expect(ids.map { sd.feed($0) } == ["", "é", "", "", "", "🚀", "!"])
        #expect(sd.finish() == "")
    }

    @Test func finishFlushesAnIncompleteCharacter() throws {
        let t = try Tokenizer(vocabulary: Tiny.bytePair(merges: []))
        var sd = t.makeStreamingDecoder()
        #expect(sd.feed(0xF0) == "" && sd.feed(0x9F) == "")
        #expect(sd.pendingByteCount == 2)
        #expect(sd.finish() == "\u{FFFD}")
        #expect(sd.feed(0x41) == "A")
        // An invalid byte is passed through (as U+FFFD) rather than held forever.
        #expect(sd.feed(0x80) == "\u{FFFD}")
    }
}

@Suite struct GGUFLoadingTests {
    func write(_ w: GGUFWriter, _ name: String) throws -> GGUFFile {
        let p = NSTemporaryDirectory() + "tokenizer-test-\(getpid())-\(name).gguf"
        try w.write(to: p)
        defer { try? FileManager.default.removeItem(atPath: p) }
        return try GGUFFile(path: p)
    }

    func strings(_ a: [String]) -> GGUFValue { .array(elementType: .string, a.map { .string($0) }) }

    @Test func loadsByteLevelBPE() throws {
        let v = Tiny.bytePair(merges: [("a", "b"), ("ab", "c")], extra: [("ab", .normal), ("abc", .normal), ("<|im_end|>", .control)])
        var w = GGUFWriter()
        w.set("tokenizer.ggml.model", .string("gpt2"))
        w.set("tokenizer.ggml.pre", .string("smollm"))
        w.set("tokenizer.ggml.tokens", strings(v.tokens))
        w.set("tokenizer.ggml.token_type", .array(elementType: .int32, v.tokenTypes.map { .int32($0.rawValue) }))
        w.set("tokenizer.ggml.merges", strings(v.merges))
        w.set("tokenizer.ggml.bos_token_id", .uint32(258))
        w.set("tokenizer.ggml.eos_token_id", .uint32(258))
        w.set("tokenizer.ggml.add_bos_token", .bool(false))
        let t = try Tokenizer(gguf: try write(w, "bpe"))
        #expect(t.preTokenizer == "smollm" && t.vocabularySize == 259)
        #expect(t.eosID == 258 && t.bosID == 258 && !t.addBOS)
        #expect(t.encode("abc 12") == [t.id(of: "abc")!, 32, 49, 50])
        #expect(t.encode("abc<|im_end|>", parseSpecial: true).last == 258)
        #expect(t.isEndOfGeneration(258))
    }

    @Test func loadsSentencePieceWithLlamaDefaults() throws {
        let v = Tiny.sentencePiece()
        var w = GGUFWriter()
        w.set("tokenizer.ggml.model", .string("llama"))
        w.set("tokenizer.ggml.tokens", strings(v.tokens))
        w.set("tokenizer.ggml.scores", .array(elementType: .float32, v.scores.map { .float32($0) }))
        w.set("tokenizer.ggml.token_type", .array(elementType: .int32, v.tokenTypes.map { .int32($0.rawValue) }))
        let t = try Tokenizer(gguf: try write(w, "spm"))
        #expect(t.model == .llama && t.bosID == 1 && t.eosID == 2 && t.unknownID == 0 && t.addBOS)
        #expect(t.encode("hello world") == [Tiny.spm("▁hello"), Tiny.spm("▁world")])
    }

    @Test func reportsMissingAndUnsupportedMetadata() throws {
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        #expect(throws: TokenizerError.missingMetadata(key: "tokenizer.ggml.model")) {
            try Tokenizer(gguf: try write(w, "none"))
        }
        w.set("tokenizer.ggml.model", .string("bert"))
        #expect(throws: TokenizerError.unsupportedModel("bert")) { try Tokenizer(gguf: try write(w, "bert")) }
        w.set("tokenizer.ggml.model", .string("gpt2"))
        w.set("tokenizer.ggml.tokens", strings(["a", "b"]))
        #expect(throws: TokenizerError.missingMerges) { try Tokenizer(gguf: try write(w, "nomerges")) }
        w.set("tokenizer.ggml.merges", .uint32(3))
        #expect(throws: TokenizerError.wrongMetadataType(key: "tokenizer.ggml.merges", expected: "an array of strings")) {
            try Tokenizer(gguf: try write(w, "badmerges"))
        }
    }
}

@Suite struct VocabularyErrorTests {
    @Test func rejectsBadVocabularies() {
        #expect(throws: TokenizerError.emptyVocabulary) {
            try Tokenizer(vocabulary: TokenizerVocabulary(model: .gpt2, tokens: []))
        }
        #expect(throws: TokenizerError.duplicateToken(token: "a", firstID: 0, secondID: 2)) {
            try Tokenizer(vocabulary: TokenizerVocabulary(model: .gpt2, tokens: ["a", "b", "a"]))
        }
        #expect(throws: TokenizerError.arrayTooShort(key: "tokenizer.ggml.token_type", count: 1, vocabularySize: 2)) {
            try Tokenizer(vocabulary: TokenizerVocabulary(model: .gpt2, tokens: ["a", "b"], tokenTypes: [.normal]))
        }
        #expect(throws: TokenizerError.missingBOS) {
            try Tokenizer(vocabulary: TokenizerVocabulary(model: .llama, tokens: ["a"]))
        }
    }

    @Test func errorsDescribeThemselves() {
        #expect(TokenizerError.unsupportedPreTokenizer("x").description.contains("smollm"))
        #expect(TokenizerError.duplicateToken(token: "a", firstID: 0, secondID: 2).description.contains("0 and 2"))
    }
}

@Suite struct FixtureTests {
    /// The parameterized reference tests would silently run zero cases if the fixture did not load.
    @Test func referenceFixtureLoads() {
        let cases = Fixtures.referenceCases
        #expect(cases.count >= 18)
        #expect(cases.contains { $0.name == "special-text" && $0.text.contains("<|im_start|>") })
        #expect(cases.allSatisfy { !$0.ids.isEmpty })
    }
}
