// Regex pre-tokenization for byte-level BPE, written by hand over codepoint classes instead of a regex
// engine: documents are megabytes long and these patterns are simple enough to scan in one pass.
//
// llama.cpp applies a pre-tokenizer as a list of regexes; each one re-splits every chunk the previous one
// produced, and both the regex matches and the gaps between them become chunks. A chunk boundary is a hard
// edge: look-ahead such as `\s+(?!\S)` cannot see past it. The steps below reproduce that, and the GPT-2
// and Llama-3 steps follow llama.cpp's hand-written matchers (unicode.cpp) including their quirks, since
// the token ids must match llama.cpp exactly.

/// The pre-tokenizers implemented, grouped by the regex list llama.cpp uses for them.
enum PreTokenizerKind: Sendable, Equatable {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
    case gpt2
    /// `\p{N}` (every digit alone) then the GPT-2 regex: smollm, starcoder, refact, command-r, ...
    case gpt2IndividualDigits
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    case llama3
    /// Qwen2: Llama 3's regex with `\p{N}` (one digit per pre-token) instead of `\p{N}{1,3}`
    /// (llama.cpp LLAMA_VOCAB_PRE_TYPE_QWEN2, unicode_regex_split_custom_qwen2).
    case qwen2
    /// llama.cpp's fallback: `[\p{P}\$\+<=>\^~\|]+`, the GPT-2 regex, `\p{N}+`, `[0-9][0-9][0-9]`.
    case `default`

    enum Step { case individualNumbers, numberRuns, punctuationRuns, asciiDigitTriples, gpt2, llama3, qwen2 }

    var steps: [Step] {
        switch self {
        case .gpt2: [.gpt2]
        case .gpt2IndividualDigits: [.individualNumbers, .gpt2]
        case .llama3: [.llama3]
        case .qwen2: [.qwen2]
        case .default: [.punctuationRuns, .gpt2, .numberRuns, .asciiDigitTriples]
        }
    }

    static let byName: [String: PreTokenizerKind] = {
        var m = [String: PreTokenizerKind]()
        for n in ["default"] { m[n] = .default }
        for n in ["gpt2", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                  "mpt", "olmo", "jais", "trillion", "exaone4", "roberta-bpe"] { m[n] = .gpt2 }
        for n in ["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"] {
            m[n] = .gpt2IndividualDigits
        }
        for n in ["llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe"] { m[n] = .llama3 }
        for n in ["qwen2", "deepseek-r1-qwen", "megrez"] { m[n] = .qwen2 }
        return m
    }()

    static var supportedNames: [String] { byName.keys.sorted() }

    /// llama.cpp sets `ignore_merges` (a whole pre-token that is itself a token is taken as is) for these.
    static func ignoresMerges(_ name: String) -> Bool {
        ["llama3", "llama-v3", "llama-bpe", "falcon3"].contains(name)
    }
}

/// Splits a decoded text (codepoints and their classes) into pre-tokens.
struct PreTokenizerSplitter {
    let cps: UnsafeBufferPointer<UInt32>
    let fl: UnsafeBufferPointer<UInt8>

    /// Runs `steps`; returns the exclusive end index (in codepoints) of each pre-token, in order.
    func split(_ steps: [PreTokenizerKind.Step]) -> [Int32] {
        var ends: [Int32] = cps.isEmpty ? [] : [Int32(cps.count)]
        for step in steps {
            var out = [Int32]()
            out.reserveCapacity(max(16, cps.count / 3))
            var start = 0
            for e in ends {
                let end = Int(e)
                switch step {
                case .individualNumbers: individualNumbers(start, end, &out)
                case .numberRuns: classRuns(start, end, &out) { $1 & CPClass.number != 0 }
                case .punctuationRuns: classRuns(start, end, &out, Self.isDefaultPunctuation)
                case .asciiDigitTriples: asciiDigitTriples(start, end, &out)
                case .gpt2: gpt2(start, end, &out)
                case .llama3: llama3(start, end, &out, digits: 3)
                case .qwen2: llama3(start, end, &out, digits: 1)
                }
                start = end
            }
            ends = out
        }
        return ends
    }

    /// `[\p{P}\$\+<=>\^~\|]` as llama.cpp's collapsed-category std::regex sees it: for ASCII the fixed
    /// punctuation list of its category map plus the listed symbols; above ASCII the punctuation
    /// category, except whitespace (collapsed to \v).
    static func isDefaultPunctuation(_ cp: UInt32, _ f: UInt8) -> Bool {
        if cp < 128 {
            switch UInt8(cp) {
            case 0x21...0x23, 0x25...0x2A, 0x2C...0x2F, 0x3A...0x3B, 0x3F...0x40, 0x5B...0x5D, 0x5F, 0x7B, 0x7D:
                return true
            case 0x24, 0x2B, 0x3C...0x3E, 0x5E, 0x7E, 0x7C: return true
            default: return false
            }
        }
        return f & CPClass.whitespace == 0 && f & CPClass.punctuation != 0
    }

    // MARK: simple regex steps (matches and the gaps between them become chunks)

    /// `\p{N}`: each number codepoint alone; runs of anything else stay together.
    private func individualNumbers(_ s: Int, _ e: Int, _ out: inout [Int32]) {
        var gapStart = s
        var i = s
        while i < e {
            if fl[i] & CPClass.number != 0 {
                if i > gapStart { out.append(Int32(i)) }
                out.append(Int32(i + 1))
                gapStart = i + 1
            }
            i += 1
        }
        if e > gapStart { out.append(Int32(e)) }
    }

    /// `[class]+`: maximal runs of the class, gaps between them.
    private func classRuns(_ s: Int, _ e: Int, _ out: inout [Int32], _ inClass: (UInt32, UInt8) -> Bool) {
        var i = s
        var gapStart = s
        while i < e {
            if inClass(cps[i], fl[i]) {
                if i > gapStart { out.append(Int32(i)) }
                var j = i + 1
                while j < e && inClass(cps[j], fl[j]) { j += 1 }
                out.append(Int32(j))
                gapStart = j
                i = j
            } else {
                i += 1
            }
        }
        if e > gapStart { out.append(Int32(e)) }
    }

    /// `[0-9][0-9][0-9]`: leftmost triples of ASCII digits; the rest are gaps.
    private func asciiDigitTriples(_ s: Int, _ e: Int, _ out: inout [Int32]) {
        @inline(__always) func digit(_ i: Int) -> Bool { cps[i] >= 0x30 && cps[i] <= 0x39 }
        var i = s
        var gapStart = s
        while i + 2 < e {
            if digit(i) && digit(i + 1) && digit(i + 2) {
                if i > gapStart { out.append(Int32(i)) }
                out.append(Int32(i + 3))
                i += 3
                gapStart = i
            } else {
                i += 1
            }
        }
        if e > gapStart { out.append(Int32(e)) }
    }

    // MARK: GPT-2 and Llama 3 (llama.cpp's unicode_regex_split_custom_gpt2 / _llama3)

    private func gpt2(_ s: Int, _ e: Int, _ out: inout [Int32]) {
        let wln = CPClass.whitespace | CPClass.letter | CPClass.number
        var pos = s
        while pos < e {
            let c = cps[pos]
            let f = fl[pos]
            // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive)
            if c == 0x27 && pos + 1 < e {
                let n = cps[pos + 1]
                if n == 0x73 || n == 0x74 || n == 0x6D || n == 0x64 {  // s t m d
                    pos += 2; out.append(Int32(pos)); continue
                }
                if pos + 2 < e {
                    let nn = cps[pos + 2]
                    if (n == 0x72 && nn == 0x65) || (n == 0x76 && nn == 0x65) || (n == 0x6C && nn == 0x6C) {
                        pos += 3; out.append(Int32(pos)); continue
                    }
                }
            }
            let space = c == 0x20
            // Class of the codepoint after an optional leading space; past the chunk end nothing matches.
            let inRange2 = !space || pos + 1 < e
            let f2: UInt8 = space ? (pos + 1 < e ? fl[pos + 1] : 0) : f
            // ' ?\p{L}+'
            if f2 & CPClass.letter != 0 {
                pos += space ? 2 : 1
                while pos < e && fl[pos] & CPClass.letter != 0 { pos += 1 }
                out.append(Int32(pos)); continue
            }
            // ' ?\p{N}+'
            if f2 & CPClass.number != 0 {
                pos += space ? 2 : 1
                while pos < e && fl[pos] & CPClass.number != 0 { pos += 1 }
                out.append(Int32(pos)); continue
            }
            // ' ?[^\s\p{L}\p{N}]+'
            if inRange2 && f2 & wln == 0 {
                pos += space ? 2 : 1
                while pos < e && fl[pos] & wln == 0 { pos += 1 }
                out.append(Int32(pos)); continue
            }
            var n = 0
            while pos + n < e && fl[pos + n] & CPClass.whitespace != 0 { n += 1 }
            // '\s+(?!\S)': leave the last space to prefix the next word, unless the run ends the chunk.
            if n > 1 && pos + n < e {
                pos += n - 1; out.append(Int32(pos)); continue
            }
            if n > 0 {
                pos += n; out.append(Int32(pos)); continue
            }
            pos += 1
            out.append(Int32(pos))
        }
    }

    /// Llama 3's matcher; `digits` is the longest number pre-token (3 for llama3, 1 for qwen2's `\p{N}`).
    private func llama3(_ s: Int, _ e: Int, _ out: inout [Int32], digits: Int) {
        let wln = CPClass.whitespace | CPClass.letter | CPClass.number
        @inline(__always) func lower(_ c: UInt32) -> UInt32 { (c >= 0x41 && c <= 0x5A) ? c + 32 : c }
        var pos = s
        while pos < e {
            let c = cps[pos]
            let f = fl[pos]
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if c == 0x27 && pos + 1 < e {
                let n = lower(cps[pos + 1])
                if n == 0x73 || n == 0x74 || n == 0x6D || n == 0x64 {
                    pos += 2; out.append(Int32(pos)); continue
                }
                if pos + 2 < e {
                    let nn = lower(cps[pos + 2])
                    if (n == 0x72 && nn == 0x65) || (n == 0x76 && nn == 0x65) || (n == 0x6C && nn == 0x6C) {
                        pos += 3; out.append(Int32(pos)); continue
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == 0x0D || c == 0x0A || f & CPClass.number != 0) {
                if f & CPClass.letter != 0 || (pos + 1 < e && fl[pos + 1] & CPClass.letter != 0) {
                    pos += 1
                    while pos < e && fl[pos] & CPClass.letter != 0 { pos += 1 }
                    out.append(Int32(pos)); continue
                }
            }
            // \p{N}{1,3} (llama3) or \p{N} (qwen2)
            if f & CPClass.number != 0 {
                var ini = pos
                while pos < e && fl[pos] & CPClass.number != 0 {
                    pos += 1
                    if pos - ini >= digits { out.append(Int32(pos)); ini = pos }
                }
                if pos > ini { out.append(Int32(pos)) }
                continue
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*' — llama.cpp tests the class of the current codepoint for
            // "in range" here (always true), so a lone space at the chunk end also lands in this branch.
            let space = c == 0x20
            let f2: UInt8 = space ? (pos + 1 < e ? fl[pos + 1] : 0) : f
            if f2 & wln == 0 {
                if space { pos += 1 }
                while pos < e && fl[pos] & wln == 0 { pos += 1 }
                while pos < e && (cps[pos] == 0x0D || cps[pos] == 0x0A) { pos += 1 }
                out.append(Int32(pos)); continue
            }
            var n = 0
            var lastRN = -1
            while pos + n < e && fl[pos + n] & CPClass.whitespace != 0 {
                let c2 = cps[pos + n]
                if c2 == 0x0D || c2 == 0x0A { lastRN = pos + n + 1 }
                n += 1
            }
            // \s*[\r\n]+
            if lastRN >= 0 {
                pos = lastRN; out.append(Int32(pos)); continue
            }
            // \s+(?!\S)
            if n > 1 && pos + n < e {
                pos += n - 1; out.append(Int32(pos)); continue
            }
            // \s+
            if n > 0 {
                pos += n; out.append(Int32(pos)); continue
            }
            pos += 1
            out.append(Int32(pos))
        }
    }
}
