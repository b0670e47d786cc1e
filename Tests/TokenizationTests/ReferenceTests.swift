import Foundation
import Testing
import Tokenization

/// Exact agreement with llama.cpp on the default model's vocabulary.
@Suite(.enabled(if: DefaultModel.available, "needs the default model (set LONGHEADS_MODEL)"))
struct ReferenceTests {
    var tok: Tokenizer { DefaultModel.tokenizer! }

    @Test func vocabularyFacts() {
        #expect(tok.model == .gpt2)
        #expect(tok.preTokenizer == "smollm")
        #expect(tok.vocabularySize == 49152)
        #expect(tok.bosID == 1)
        #expect(tok.eosID == 2)
        #expect(tok.unknownID == 0)
        #expect(tok.paddingID == 2)
        #expect(tok.addBOS == false)
        #expect(tok.id(of: "<|im_start|>") == 1)
        #expect(tok.id(of: "<|im_end|>") == 2)
        #expect(tok.id(of: "<|endoftext|>") == 0)
        #expect(tok.isEndOfGeneration(2) && tok.isEndOfGeneration(0))
        #expect(!tok.isEndOfGeneration(1) && !tok.isEndOfGeneration(19556))
        #expect(tok.tokenType(1) == .control)
    }

    @Test(arguments: Fixtures.referenceCases)
    func matchesLlamaCpp(_ c: ReferenceCase) {
        #expect(tok.encode(c.text) == c.ids)
    }

    @Test(arguments: Fixtures.referenceCases)
    func roundTrips(_ c: ReferenceCase) {
        #expect(tok.decode(tok.encode(c.text)) == c.text)
        #expect(tok.decode(c.ids) == c.text)
    }

    @Test(arguments: Fixtures.referenceCases)
    func streamingDecodeEqualsDecode(_ c: ReferenceCase) {
        var sd = tok.makeStreamingDecoder()
        var text = ""
        for id in c.ids { text += sd.feed(id) }
        text += sd.finish()
        #expect(text == c.text)
    }

    /// A CJK character or emoji split over several byte-level tokens must come out whole, once.
    @Test func streamingHoldsBackIncompleteCharacters() {
        let text = "é🚀大"
        let ids = tok.encode(text)
        var sd = tok.makeStreamingDecoder()
        var pieces = [String]()
        for id in ids { pieces.append(sd.feed(id)) }
        #expect(sd.finish() == "")
        #expect(pieces.joined() == text)
        // Some token ended mid-character (more tokens than characters), and no piece holds a U+FFFD.
        #expect(ids.count > 3)
        #expect(pieces.contains(""))
        #expect(!pieces.joined().unicodeScalars.contains("\u{FFFD}"))
        #expect(pieces.filter { !$0.isEmpty }.allSatisfy { $0.unicodeScalars.allSatisfy { $0 != "\u{FFFD}" } })
    }

    @Test func specialTokensOnlyWithParseSpecial() {
        let chat = "<|im_start|>user\nhi<|im_end|>"
        let parsed = tok.encode(chat, parseSpecial: true)
        #expect(parsed.first == 1)
        #expect(parsed.last == 2)
        #expect(parsed.filter { $0 == 1 || $0 == 2 }.count == 2)
        #expect(Array(parsed[1..<(parsed.count - 1)]) == tok.encode("user\nhi"))
        #expect(tok.decode(parsed) == "user\nhi")
        #expect(tok.decode(parsed, renderSpecial: true) == chat)

        let plain = tok.encode(chat)
        #expect(!plain.contains(1) && !plain.contains(2))
        #expect(tok.decode(plain) == chat)
        #expect(tok.encode(chat, parseSpecial: false, addBOS: true).first == 1)
    }

    /// Documents are long: encoding must stay well above 1 MB/s. The text is 1 MB of varied synthetic prose
    /// (tens of thousands of distinct words, numbers, punctuation, some non-ASCII), so the word cache does
    /// not make it trivially repetitive. The bound is loose because tests run in debug builds.
    @Test func encodesAMegabyteQuickly() {
        let text = SyntheticText.make(bytes: 1 << 20, seed: 42)
        let (ids, rate) = Benchmark.encode(tok, text, label: "synthetic 1 MB")
        #expect(tok.decode(ids) == text)
        #expect(rate > 0.25)
    }

    /// Local measurement on a real file: LONGHEADS_TOKENIZER_BENCH_FILE=/path/to/big.txt.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["LONGHEADS_TOKENIZER_BENCH_FILE"] != nil))
    func encodesARealFile() throws {
        let path = ProcessInfo.processInfo.environment["LONGHEADS_TOKENIZER_BENCH_FILE"]!
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
        let (ids, _) = Benchmark.encode(tok, text, label: (path as NSString).lastPathComponent)
        #expect(tok.decode(ids) == text)
    }
}

enum Benchmark {
    /// Encodes once and prints MB/s; returns the ids and the rate.
    static func encode(_ tok: Tokenizer, _ text: String, label: String) -> ([Int32], Double) {
        let mb = Double(text.utf8.count) / 1e6
        let clock = ContinuousClock()
        var ids = [Int32]()
        let t = clock.measure { ids = tok.encode(text) }
        let seconds = Double(t.components.seconds) + Double(t.components.attoseconds) / 1e18
        let rate = mb / seconds
        print("tokenizer: \(label): \(String(format: "%.2f", mb)) MB → \(ids.count) tokens in "
              + "\(String(format: "%.3f", seconds)) s = \(String(format: "%.1f", rate)) MB/s")
        return (ids, rate)
    }
}

/// Deterministic pseudo-prose: words from random syllables, numbers, punctuation, line breaks, a little
/// accented Latin, CJK and emoji.
enum SyntheticText {
    static func make(bytes: Int, seed: UInt64) -> String {
        var state = seed
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        let syllables = ["ka", "lo", "ri", "then", "str", "ou", "ing", "ed", "pa", "mi", "qu", "ve", "son",
                         "al", "tr", "ea", "ck", "ph", "zy", "ne", "é", "ü", "ø"]
        let extras = ["大型", "模型", "🚀", "👍🏽", "—", "…", "“quoted”"]
        var out = ""
        out.reserveCapacity(bytes + 64)
        while out.utf8.count < bytes {
            let r = next() % 100
            if r < 70 {
                var w = ""
                for _ in 0..<(1 + next() % 4) { w += syllables[Int(next() % UInt64(syllables.count))] }
                if next() % 8 == 0 { w = w.capitalized }
                out += w
            } else if r < 80 {
                out += String(next() % 100_000)
            } else if r < 88 {
                out += [",", ".", ";", ":", "!", "?", "'s", "(", ")", "-"][Int(next() % 10)]
            } else if r < 90 {
                out += extras[Int(next() % UInt64(extras.count))]
            } else if r < 93 {
                out += "\n"
            }
            out += next() % 10 == 0 ? "  " : " "
        }
        return out
    }
}
