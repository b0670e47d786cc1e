// libFuzzer target: the tokenizer on arbitrary bytes. The tokenizer is the real model's when
// LONGHEADS_FUZZ_MODEL names a GGUF file, else small generated vocabularies (byte-level BPE under
// several pre-tokenizers, and SentencePiece with byte fallback).
//
// Input: byte 0 picks the tokenizer (bits 0-2), parseSpecial (bit 3), and the streaming block size
// (bits 4-7); the rest is the text. Checked, besides "no trap":
// - every id is inside the vocabulary;
// - StreamingEncoder fed in small blocks gives exactly `encode` of the whole text (its contract), and
//   refuses invalid UTF-8 with an error instead;
// - byte-level BPE without special parsing decodes back to the text (when every byte has a token);
// - decoding arbitrary ids (also out of range) does not trap.
#if canImport(Glibc)
import Glibc
#endif
import GGUF
import Tokenization

private func byteChars() -> [String] {
    var printable = Set<Int>()
    for r in [0x21...0x7E, 0xA1...0xAC, 0xAE...0xFF] { for b in r { printable.insert(b) } }
    var n = 0
    return (0..<256).map { b in
        if printable.contains(b) { return String(UnicodeScalar(UInt8(b))) }
        defer { n += 1 }
        return String(UnicodeScalar(UInt32(256 + n))!)
    }
}

private func bytePair(pre: String) -> Tokenizer {
    let bc = byteChars()
    func level(_ s: String) -> String { s.utf8.map { bc[Int($0)] }.joined() }
    let pairs = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (" ", "w"), ("o", "r"), (" w", "or"), ("l", "d"),
                 (" wor", "ld"), ("1", "2"), ("12", "3"), (" ", "t"), (" t", "h"), ("'", "s"), ("\n", "\n"), ("é", "t")]
    var tokens = bc
    var types = [TokenType](repeating: .normal, count: 256)
    for (a, b) in pairs { tokens.append(level(a + b)); types.append(.normal) }
    for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] { tokens.append(s); types.append(.control) }
    tokens.append("<tool>"); types.append(.userDefined)
    let v = TokenizerVocabulary(model: .gpt2, preTokenizer: pre, tokens: tokens, tokenTypes: types,
                                merges: pairs.map { level($0.0) + " " + level($0.1) }, eosID: 256 + Int32(pairs.count), addBOS: false)
    return try! Tokenizer(vocabulary: v)
}

private func sentencePiece() -> Tokenizer {
    var tokens = ["<unk>", "<s>", "</s>"]
    var types: [TokenType] = [.unknown, .control, .control]
    var scores: [Float] = [0, 0, 0]
    let hex = Array("0123456789ABCDEF")
    for b in 0..<256 { tokens.append("<0x\(hex[b >> 4])\(hex[b & 15])>"); types.append(.byte); scores.append(0) }
    let pieces: [(String, Float)] = [("▁", -10), ("h", -10), ("e", -10), ("l", -10), ("o", -10), ("ll", -1), ("he", -2),
                                     ("▁he", -3), ("llo", -4), ("▁hello", -5), ("▁w", -2), ("or", -1), ("ld", -3), ("▁world", -4)]
    for (p, s) in pieces { tokens.append(p); types.append(.normal); scores.append(s) }
    tokens.append("<tool>"); types.append(.userDefined); scores.append(0)
    return try! Tokenizer(vocabulary: TokenizerVocabulary(model: .llama, tokens: tokens, tokenTypes: types, scores: scores,
                                                          bosID: 1, eosID: 2, unknownID: 0))
}

nonisolated(unsafe) private var tokenizers: [Tokenizer] = {
    if let p = getenv("LONGHEADS_FUZZ_MODEL"), let file = try? GGUFFile(path: String(cString: p)),
       let t = try? Tokenizer(gguf: file) {
        return [t]
    }
    return ["gpt2", "smollm", "llama3", "default"].map(bytePair) + [sentencePiece()]
}()

/// Byte-level vocabularies that have a token for every byte round-trip any text; real ones may not
/// (SmolLM2 has none for bytes 4, 6, 19, 20, 22, 29: the encoder drops them, as llama.cpp's does).
nonisolated(unsafe) private var coversAllBytes: [Bool] = {
    let bc = byteChars()
    return tokenizers.map { t in t.model == .gpt2 && bc.allSatisfy { t.id(of: $0) != nil } }
}()

#if FUZZING
/// libFuzzer's entry point (Scripts/fuzz.sh builds with -D FUZZING; the unit tests call `fuzzTokenizer` directly).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEntry(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt { fuzzTokenizer(data, size) }
#endif

/// One fuzz input; returns 0 (libFuzzer's convention) unless it traps.
@discardableResult
func fuzzTokenizer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size > 0, let data else { return 0 }
    let control = data[0]
    let which = Int(control & 7) % tokenizers.count
    let tokenizer = tokenizers[which]
    let parseSpecial = control & 8 != 0
    let block = Int(control >> 4) + 1
    let body = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let valid = String(validating: body, as: UTF8.self)
    let text = valid ?? String(decoding: body, as: UTF8.self)

    let ids = tokenizer.encode(text, parseSpecial: parseSpecial)
    precondition(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.vocabularySize }, "id outside the vocabulary")
    if coversAllBytes[which] && !parseSpecial {
        precondition(tokenizer.decode(ids, renderSpecial: true) == text, "byte-level BPE does not round-trip")
    }

    var streaming = StreamingEncoder(tokenizer: tokenizer, parseSpecial: parseSpecial)
    streaming.minimumBlock = 1
    var out = [Int32]()
    do {
        var i = 0
        while i < body.count {
            let end = min(body.count, i + block)
            try streaming.append(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(body)[i..<end]), into: &out)
            i = end
        }
        try streaming.finish(into: &out)
        precondition(valid != nil, "StreamingEncoder accepted invalid UTF-8")
        precondition(out == ids, "StreamingEncoder differs from encode")
    } catch {
        precondition(valid == nil, "StreamingEncoder refused valid UTF-8: \(error)")
    }

    // Arbitrary ids, in range or not, through both decoders.
    var raw = [Int32]()
    var j = 1
    while j + 2 <= size {
        raw.append(Int32(Int16(bitPattern: UInt16(data[j]) | UInt16(data[j + 1]) << 8)))
        j += 2
    }
    _ = tokenizer.decode(raw, renderSpecial: parseSpecial)
    var dec = tokenizer.makeStreamingDecoder(renderSpecial: parseSpecial)
    for id in raw { _ = dec.feed(id) }
    _ = dec.finish()
    return 0
}
