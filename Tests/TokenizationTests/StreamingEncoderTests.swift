import Foundation
import Testing
import Tokenization

/// Streams `bytes` through a `StreamingEncoder` in the given block sizes (cycled), cutting at every
/// opportunity (`minimumBlock` 1).
func streamEncode(_ tok: Tokenizer, _ bytes: [UInt8], blocks: [Int], parseSpecial: Bool = false) throws -> [Int32] {
    var enc = StreamingEncoder(tokenizer: tok, parseSpecial: parseSpecial)
    enc.minimumBlock = 1
    var out = [Int32]()
    var i = 0, b = 0
    while i < bytes.count {
        let n = min(blocks[b % blocks.count], bytes.count - i)
        try enc.append(contentsOf: bytes[i..<(i + n)], into: &out)
        i += n
        b += 1
    }
    try enc.finish(into: &out)
    return out
}

/// Texts with every awkward place to cut: inside UTF-8 characters, numbers, space and newline runs,
/// contractions, special-token strings, and stretches with no space between letters at all.
let awkwardTexts: [String] = [
    "Hello world's 12345!!  end\n\n x. I'M he'll they're we've. Café naïve — 大型语言模型 🚀👩‍💻 ok\r\n\t  y  ",
    "Call 555-0100 or 1-800-FLOWERS before 23:59 on 2026-11-27; pi is 3.14159265358979.\n\n\n   \n  Next",
    "a  b   c    d\t\te\n\nf \n g   \n\n\n\n",
    "大型语言模型は長い文書を読む。１２３４５６７８９０、٣٤٥ ½²³；「引用」……！？",
    "12345678901234567890(a)[b]{c}<|im_start|>user\n<|im_end|>$x+=y;;;'''\"\"\"",
    "    leading spaces\n\n\ttabs\u{00A0}nbsp\u{2003}emspace\u{3000}ideographic    ",
    "x",
    " ",
    "\n",
]

@Suite(.enabled(if: DefaultModel.available, "needs the default model (set LONGHEADS_MODEL)"))
struct StreamingEncoderDefaultModelTests {
    var tok: Tokenizer { DefaultModel.tokenizer! }

    @Test func twoPiecesCutAtEveryByte() throws {
        for text in awkwardTexts {
            let bytes = Array(text.utf8)
            let whole = tok.encode(text)
            for cut in 0...bytes.count {
                let got = try streamEncode(tok, bytes, blocks: [max(1, cut), bytes.count])
                #expect(got == whole, "cut at \(cut) of \(text.debugDescription)")
            }
        }
    }

    @Test(arguments: [1, 2, 3, 5, 7, 16, 100])
    func smallBlocks(_ block: Int) throws {
        for text in awkwardTexts {
            #expect(try streamEncode(tok, Array(text.utf8), blocks: [block]) == tok.encode(text), "\(text.debugDescription)")
        }
    }

    /// A long random mixture of words, numbers, whitespace runs and non-ASCII text, in irregular blocks.
    @Test func longRandomText() throws {
        var rng = SystemRandomNumberGenerator()
        let parts = ["the", " quick", " brown", " fox", "1", "23", "456", "7890", " ", "  ", "\n", "\n\n", "\t", " \n ",
                     "é", "大型", "🚀", "'s", "'re", "...", "!!", "-", " 3.14", "<|im_end|>", "x", "ÿ", "\r\n"]
        for round in 0..<3 {
            var s = ""
            for _ in 0..<4000 { s += parts.randomElement(using: &rng)! }
            let bytes = Array(s.utf8)
            let blocks = (0..<7).map { _ in Int.random(in: 1...(round == 0 ? 8 : 4096), using: &rng) }
            #expect(try streamEncode(tok, bytes, blocks: blocks) == tok.encode(s), "blocks \(blocks)")
        }
    }

    /// Text without a single space between letters: only the look-ahead rule can cut it.
    @Test func textWithoutWordSpacesStillStreams() throws {
        let s = String(repeating: "大型语言模型は長い文書を読む。12345、\n", count: 400)
        var enc = StreamingEncoder(tokenizer: tok)
        enc.minimumBlock = 1024
        var out = [Int32]()
        var maxHeld = 0
        for chunk in Array(s.utf8).chunked(1000) {
            try enc.append(contentsOf: chunk, into: &out)
            maxHeld = max(maxHeld, enc.bytesRead - enc.bytesEncoded)
        }
        try enc.finish(into: &out)
        #expect(out == tok.encode(s))
        #expect(maxHeld < 4096, "held \(maxHeld) bytes")
    }

    @Test func holdsOnlyATail() throws {
        let s = String(repeating: "The pass key is 12345. Remember it, and more words follow here.\n", count: 2000)
        var enc = StreamingEncoder(tokenizer: tok)
        enc.minimumBlock = 4096
        var out = [Int32]()
        var maxHeld = 0
        for chunk in Array(s.utf8).chunked(1 << 16) {
            try enc.append(contentsOf: chunk, into: &out)
            maxHeld = max(maxHeld, enc.bytesRead - enc.bytesEncoded)
        }
        try enc.finish(into: &out)
        #expect(out == tok.encode(s))
        #expect(maxHeld < 64, "held \(maxHeld) bytes")
    }
}

@Suite struct StreamingEncoderOfflineTests {
    /// A byte-level vocabulary where every pair of these characters merges: ids then reveal every
    /// pre-token boundary (a different split pairs the characters differently).
    static func pairVocabulary(pre: String) throws -> Tokenizer {
        let alphabet = ["a", "b", "A", " ", "\n", "\r", "\t", "1", "2", "'", "r", "e", "s", ".", "!"]
        var merges = [(String, String)]()
        var extra = [(String, TokenType)]()
        for x in alphabet { for y in alphabet { merges.append((x, y)); extra.append((x + y, .normal)) } }
        extra.append(("<tool>", .userDefined))
        extra.append(("<tool> x", .userDefined))
        return try Tokenizer(vocabulary: Tiny.bytePair(merges: merges, extra: extra, pre: pre))
    }

    static let texts = [
        "ab  aab 1212121 a're a'rb A'S\n\n\r\n \n  b\t\t a.!!. 1 2  12 é'é aé  ",
        "1212112 a'r\ne   \n\n  . . .1a2b' s're",
        "x<tool>y <tool> x <tool>z <tool",
    ]

    @Test(arguments: ["gpt2", "smollm", "llama3", "default"])
    func everyPreTokenizerEveryCut(_ pre: String) throws {
        let tok = try Self.pairVocabulary(pre: pre)
        for text in Self.texts {
            let bytes = Array(text.utf8)
            let whole = tok.encode(text)
            for cut in 0...bytes.count {
                #expect(try streamEncode(tok, bytes, blocks: [max(1, cut), bytes.count]) == whole, "\(pre) cut \(cut) \(text.debugDescription)")
            }
            for block in 1...4 {
                #expect(try streamEncode(tok, bytes, blocks: [block]) == whole, "\(pre) block \(block) \(text.debugDescription)")
            }
        }
    }

    /// Random strings over the characters the splitters treat differently, in random blocks.
    @Test(arguments: ["gpt2", "smollm", "llama3", "default"])
    func randomStrings(_ pre: String) throws {
        let tok = try Self.pairVocabulary(pre: pre)
        let alphabet = ["a", "b", "A", " ", " ", "\n", "\r", "\t", "1", "2", "'", "r", "e", "s", ".", "!", "é", "大", "\u{00A0}"]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            let text = (0..<Int.random(in: 1...40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }.joined()
            let blocks = (0..<3).map { _ in Int.random(in: 1...6, using: &rng) }
            #expect(try streamEncode(tok, Array(text.utf8), blocks: blocks) == tok.encode(text), "\(pre) \(blocks) \(text.debugDescription)")
        }
    }

    @Test func sentencePieceEveryCut() throws {
        let tok = try Tokenizer(vocabulary: Tiny.sentencePiece(userDefined: ["<tool>"]))
        for text in ["hello world  hello<tool>world hello", " hello  world ", "héllo wörld"] {
            let bytes = Array(text.utf8)
            for cut in 0...bytes.count {
                #expect(try streamEncode(tok, bytes, blocks: [max(1, cut), bytes.count]) == tok.encode(text), "cut \(cut)")
            }
            #expect(try streamEncode(tok, bytes, blocks: [1]) == tok.encode(text))
        }
    }

    @Test func invalidUTF8NamesTheOffset() throws {
        let tok = try Self.pairVocabulary(pre: "smollm")
        // A bad byte, a bad continuation split across blocks, a surrogate, and a text ending mid-character.
        let cases: [([UInt8], Int)] = [
            (Array("abc".utf8) + [0xFF] + Array("d".utf8), 3),
            (Array("ab".utf8) + [0xE2, 0x82, 0x41], 2),
            (Array("é".utf8) + [0xED, 0xA0, 0x80], 2),
            (Array("abcd".utf8) + [0xF0, 0x9F, 0x9A], 4),
        ]
        for (bytes, offset) in cases {
            for block in [1, 2, bytes.count] {
                #expect(throws: TokenizerError.invalidUTF8(offset: offset)) { try streamEncode(tok, bytes, blocks: [block]) }
            }
        }
        #expect(TokenizerError.invalidUTF8(offset: 7).description.contains("byte offset 7"))
    }

    @Test func emptyText() throws {
        let tok = try Self.pairVocabulary(pre: "gpt2")
        #expect(try streamEncode(tok, [], blocks: [1]) == [])
    }
}

extension Array {
    func chunked(_ n: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: n).map { self[$0..<Swift.min(count, $0 + n)] }
    }
}
