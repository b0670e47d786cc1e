import Tokenization

/// Hand-built vocabularies for offline tests.
enum Tiny {
    /// The GPT-2 byte↔unicode alphabet, written out independently of the module's own table.
    static let byteChar: [String] = {
        var printable = Set<Int>()
        for r in [0x21...0x7E, 0xA1...0xAC, 0xAE...0xFF] { for b in r { printable.insert(b) } }
        var n = 0
        return (0..<256).map { b in
            if printable.contains(b) { return String(UnicodeScalar(UInt8(b))) }
            defer { n += 1 }
            return String(UnicodeScalar(UInt32(256 + n))!)
        }
    }()

    /// Byte-level text of a string, as tokens and merges spell it.
    static func level(_ s: String) -> String { s.utf8.map { byteChar[Int($0)] }.joined() }

    /// A byte-level vocabulary: ids 0..<256 are the single bytes (id == byte value), then `extra` tokens
    /// (plain text, converted to byte-level) with the given types.
    /// Merges are given as plain-text pairs.
    static func bytePair(merges: [(String, String)], extra: [(String, TokenType)] = [], pre: String? = "gpt2",
                         eos: Int32? = nil) -> TokenizerVocabulary {
        var tokens = byteChar
        var types = [TokenType](repeating: .normal, count: 256)
        for (t, ty) in extra {
            tokens.append(ty == .normal ? level(t) : t)
            types.append(ty)
        }
        let ms = merges.map { level($0.0) + " " + level($0.1) }
        return TokenizerVocabulary(model: .gpt2, preTokenizer: pre, tokens: tokens, tokenTypes: types,
                                   merges: ms, eosID: eos, addBOS: false)
    }

    /// A small SentencePiece vocabulary: <unk>, <s>, </s>, 256 byte tokens, then pieces with scores.
    static let pieces: [(String, Float)] = [
        ("▁", -10), ("h", -10), ("e", -10), ("l", -10), ("o", -10), ("w", -10), ("r", -10), ("d", -10),
        ("ll", -1), ("he", -2), ("▁he", -3), ("llo", -4), ("▁hello", -5),
        ("or", -1), ("▁w", -2), ("▁wor", -3), ("ld", -3.5), ("▁world", -4),
    ]

    static func sentencePiece(addSpacePrefix: Bool? = nil, userDefined: [String] = []) -> TokenizerVocabulary {
        var tokens = ["<unk>", "<s>", "</s>"]
        var types: [TokenType] = [.unknown, .control, .control]
        var scores: [Float] = [0, 0, 0]
        let hex = Array("0123456789ABCDEF")
        for b in 0..<256 {
            tokens.append("<0x\(hex[b >> 4])\(hex[b & 15])>")
            types.append(.byte)
            scores.append(0)
        }
        for (p, s) in pieces {
            tokens.append(p)
            types.append(.normal)
            scores.append(s)
        }
        for u in userDefined {
            tokens.append(u)
            types.append(.userDefined)
            scores.append(0)
        }
        return TokenizerVocabulary(model: .llama, tokens: tokens, tokenTypes: types, scores: scores,
                                   bosID: 1, eosID: 2, unknownID: 0, addSpacePrefix: addSpacePrefix)
    }

    /// Id of a SentencePiece piece in `sentencePiece()`.
    static func spm(_ piece: String) -> Int32 {
        Int32(3 + 256 + pieces.firstIndex { $0.0 == piece }!)
    }

    static func byteToken(_ b: UInt8) -> Int32 { 3 + Int32(b) }
}
