/// A llama.cpp-compatible tokenizer for Llama-family GGUF models: byte-level BPE ("gpt2" with the gpt2,
/// smollm, llama3, qwen2 and default pre-tokenizers) and SentencePiece ("llama"). Immutable after init, so one
/// instance can serve many threads; each `encode` call keeps its own scratch space and word cache.
///
/// Encoding reproduces llama.cpp's ids. Decoding departs from llama.cpp on purpose in three small ways:
/// no clean-up of spaces before punctuation (llama.cpp does it for some BPE pre-tokenizers, not smollm;
/// skipping it keeps `decode(encode(x)) == x`); SentencePiece drops the space prefix from the first *text*
/// piece rather than the first token (so a rendered `<s>` does not swallow it); and a byte-level token
/// character outside the GPT-2 byte alphabet decodes to its own UTF-8 instead of an "[UNK_BYTE_…]" marker.
public final class Tokenizer: Sendable {
    /// The tokenizer algorithm.
    public let model: TokenizerVocabulary.Model
    /// The pre-tokenizer name as given (`tokenizer.ggml.pre`); nil for SentencePiece or when absent.
    public let preTokenizer: String?
    /// Number of tokens in the vocabulary.
    public let vocabularySize: Int
    /// Beginning-of-sequence token, if the vocabulary has a valid one.
    public let bosID: Int32?
    /// End-of-sequence token, if the vocabulary has a valid one.
    public let eosID: Int32?
    /// Unknown-token id, if any.
    public let unknownID: Int32?
    /// Padding-token id, if any.
    public let paddingID: Int32?
    /// End-of-turn token: from the file, else the first of llama.cpp's known end-of-turn strings present.
    public let eotID: Int32?
    /// Whether prompts for this model should start with BOS (`encode(_:parseSpecial:addBOS:)` does it on request).
    public let addBOS: Bool
    /// SentencePiece: a space is put before text (and taken off the first decoded piece).
    public let addSpacePrefix: Bool
    /// Tokens that end generation: EOS, EOT, EOM and the end-of-turn strings llama.cpp recognizes.
    public let endOfGenerationIDs: Set<Int32>
    /// The model's chat template source (`tokenizer.chat_template`), if any; `ChatTemplate` reads its default system line.
    public let chatTemplate: String?

    let tokens: [String]
    private let types: [TokenType]
    private let tokenIndex: [String: Int32]
    /// Decoded bytes of every token, concatenated; token i is pieceArena[pieceStart[i]..<pieceStart[i+1]].
    private let pieceArena: [UInt8]
    private let pieceStart: [Int32]
    /// Control and unknown tokens: their text is only shown when asked to render special tokens.
    private let pieceIsSpecial: [Bool]
    /// Tokens matched in raw text before pre-tokenization, longest first.
    let specialTokens: [SpecialToken]
    let engine: Engine

    struct SpecialToken: Sendable {
        let id: Int32
        let bytes: [UInt8]
        /// Control or unknown: matched only with parseSpecial. User-defined tokens are always matched, as llama.cpp.
        let needsParseSpecial: Bool
    }

    enum Engine: Sendable {
        case bytePair(BytePairModel, steps: [PreTokenizerKind.Step], wholeWordLookup: ByteKeyTable?)
        case sentencePiece(SentencePieceModel)
    }

    // llama.cpp's token-text heuristics (llama-vocab.cpp, load): strings that end generation, and FIM
    // tokens it also treats as end of generation. Such tokens are forced to be control tokens.
    static let endOfGenerationTexts: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<｜end▁of▁sentence｜>", "[e~[",
    ]
    static let endOfTurnTexts: [String] = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
        "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
    ]
    static let fimTexts: [[String]] = [
        ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
        ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
        ["<|file_sep|>"],
    ]

    /// Builds a tokenizer from plain arrays (see `TokenizerVocabulary`).
    public init(vocabulary v: TokenizerVocabulary) throws(TokenizerError) {
        let n = v.tokens.count
        guard n > 0 else { throw .emptyVocabulary }
        guard v.tokenTypes.isEmpty || v.tokenTypes.count >= n else {
            throw .arrayTooShort(key: "tokenizer.ggml.token_type", count: v.tokenTypes.count, vocabularySize: n)
        }
        guard v.scores.isEmpty || v.scores.count >= n else {
            throw .arrayTooShort(key: "tokenizer.ggml.scores", count: v.scores.count, vocabularySize: n)
        }
        var index = [String: Int32](minimumCapacity: n)
        for (i, t) in v.tokens.enumerated() {
            if let first = index.updateValue(Int32(i), forKey: t) {
                throw .duplicateToken(token: t, firstID: Int(first), secondID: i)
            }
        }
        func valid(_ id: Int32?) -> Int32? {
            guard let id, id >= 0, Int(id) < n else { return nil }  // llama.cpp ignores out-of-range ids too
            return id
        }
        var types = v.tokenTypes.isEmpty ? [TokenType](repeating: .normal, count: n) : Array(v.tokenTypes.prefix(n))

        // End of generation, as llama.cpp decides it.
        var eog = Set<Int32>()
        var eot = valid(v.eotID)
        if eot == nil {
            eot = Self.endOfTurnTexts.lazy.compactMap { index[$0] }.first
        }
        for group in Self.fimTexts {
            if let id = group.lazy.compactMap({ index[$0] }).first {
                eog.insert(id)
                if types[Int(id)] != .control { types[Int(id)] = .control }
            }
        }
        for text in Self.endOfGenerationTexts {
            if let id = index[text] {
                eog.insert(id)
                if types[Int(id)] != .control { types[Int(id)] = .control }
            }
        }
        if let id = eot, types[Int(id)] != .control { types[Int(id)] = .control }
        for id in [valid(v.eosID), eot, valid(v.eomID)].compactMap({ $0 }) { eog.insert(id) }

        model = v.model
        vocabularySize = n
        tokens = v.tokens
        tokenIndex = index
        bosID = valid(v.bosID)
        eosID = valid(v.eosID)
        unknownID = valid(v.unknownID)
        paddingID = valid(v.paddingID)
        eotID = eot
        endOfGenerationIDs = eog
        chatTemplate = v.chatTemplate

        switch v.model {
        case .gpt2:
            let name = v.preTokenizer ?? "default"
            guard let kind = PreTokenizerKind.byName[name] else { throw .unsupportedPreTokenizer(name) }
            preTokenizer = v.preTokenizer
            addBOS = v.addBOS ?? (kind == .llama3 && PreTokenizerKind.ignoresMerges(name))
            addSpacePrefix = false
            var whole: ByteKeyTable? = nil
            if PreTokenizerKind.ignoresMerges(name) {
                var t = ByteKeyTable(capacity: n)
                for (i, s) in v.tokens.enumerated() {
                    let raw = ByteLevel.decode(s)
                    if t.find(raw) == nil { t.insert(raw, value: Int32(i)) }
                }
                whole = t
            }
            engine = .bytePair(BytePairModel(tokens: v.tokens, tokenIndex: index, merges: v.merges),
                               steps: kind.steps, wholeWordLookup: whole)
        case .llama:
            preTokenizer = nil
            addBOS = v.addBOS ?? true
            addSpacePrefix = v.addSpacePrefix ?? true
            var lookup = ByteKeyTable(capacity: n)
            for (i, s) in v.tokens.enumerated() { lookup.insert(Array(s.utf8), value: Int32(i)) }
            var byteToken = [Int32](repeating: -1, count: 256)
            let hex = Array("0123456789ABCDEF".utf8)
            for b in 0..<256 {
                let name = "<0x" + String(decoding: [hex[b >> 4], hex[b & 15]], as: UTF8.self) + ">"
                if let id = index[name] {
                    byteToken[b] = id
                } else if b < 128, let id = index[String(UnicodeScalar(UInt8(b)))] {
                    byteToken[b] = id
                } else if let unk = valid(v.unknownID) {
                    byteToken[b] = unk
                }
            }
            let scores = v.scores.isEmpty ? [Float](repeating: 0, count: n) : Array(v.scores.prefix(n))
            engine = .sentencePiece(SentencePieceModel(lookup: lookup, scores: scores, byteToken: byteToken))
        }
        if addBOS && bosID == nil { throw .missingBOS }

        // Decoded pieces.
        var arena = [UInt8]()
        var starts = [Int32]()
        var special = [Bool](repeating: false, count: n)
        starts.reserveCapacity(n + 1)
        for i in 0..<n {
            starts.append(Int32(arena.count))
            let text = v.tokens[i]
            switch types[i] {
            case .normal:
                if v.model == .gpt2 {
                    arena.append(contentsOf: ByteLevel.decode(text))
                } else {
                    for u in text.unicodeScalars {
                        if u == "\u{2581}" { arena.append(0x20) } else { arena.append(contentsOf: String(u).utf8) }
                    }
                }
            case .userDefined:
                arena.append(contentsOf: text.utf8)
            case .control, .unknown:
                arena.append(contentsOf: text.utf8)
                special[i] = true
            case .byte:
                if let b = Self.parseByteToken(text) { arena.append(b) } else { arena.append(contentsOf: text.utf8) }
            case .unused, .undefined:
                break
            }
        }
        starts.append(Int32(arena.count))
        pieceArena = arena
        pieceStart = starts
        pieceIsSpecial = special
        self.types = types

        var specials = [SpecialToken]()
        for i in 0..<n where types[i] == .control || types[i] == .unknown || types[i] == .userDefined {
            let bytes = Array(v.tokens[i].utf8)
            if bytes.isEmpty { continue }
            specials.append(SpecialToken(id: Int32(i), bytes: bytes, needsParseSpecial: types[i] != .userDefined))
        }
        specials.sort { $0.bytes.count != $1.bytes.count ? $0.bytes.count > $1.bytes.count : $0.id < $1.id }
        specialTokens = specials
    }

    static func parseByteToken(_ s: String) -> UInt8? {
        let u = Array(s.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }

    // MARK: lookup

    /// The id of a vocabulary entry by its exact text (e.g. "<|im_end|>", or "Ġthe" in a byte-level vocabulary).
    public func id(of tokenString: String) -> Int32? { tokenIndex[tokenString] }

    /// The vocabulary text of `id`, nil if out of range.
    public func tokenString(_ id: Int32) -> String? {
        id >= 0 && Int(id) < vocabularySize ? tokens[Int(id)] : nil
    }

    /// The type of `id` (after llama.cpp's overrides: end-of-generation strings count as control).
    public func tokenType(_ id: Int32) -> TokenType? {
        id >= 0 && Int(id) < vocabularySize ? types[Int(id)] : nil
    }

    /// Whether generating `id` ends the turn: EOS, EOT, EOM, `<|im_end|>`, `<|endoftext|>`, ….
    public func isEndOfGeneration(_ id: Int32) -> Bool { endOfGenerationIDs.contains(id) }

    /// The bytes `id` decodes to on its own; control/unknown tokens give [] unless `renderSpecial`.
    public func pieceBytes(_ id: Int32, renderSpecial: Bool = false) -> [UInt8] {
        guard id >= 0, Int(id) < vocabularySize else { return [] }
        if pieceIsSpecial[Int(id)] && !renderSpecial { return [] }
        return Array(pieceArena[Int(pieceStart[Int(id)])..<Int(pieceStart[Int(id) + 1])])
    }

    // MARK: decode

    /// Text of `ids`. Control and unknown tokens give "" unless `renderSpecial`; out-of-range ids give "".
    /// SentencePiece: the space prefix added by `encode` is taken off the first text piece. Invalid UTF-8
    /// (e.g. a multi-byte character cut off at the end) becomes U+FFFD.
    public func decode(_ ids: [Int32], renderSpecial: Bool = false) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(ids.count * 4)
        var stripSpace = addSpacePrefix
        for id in ids { appendPiece(id, renderSpecial: renderSpecial, stripLeadingSpace: &stripSpace, to: &bytes) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the piece of `id`; while `stripLeadingSpace` is set, the first non-empty text piece loses
    /// one leading space and the flag is cleared.
    func appendPiece(_ id: Int32, renderSpecial: Bool, stripLeadingSpace: inout Bool, to bytes: inout [UInt8]) {
        guard id >= 0, Int(id) < vocabularySize else { return }
        let i = Int(id)
        if pieceIsSpecial[i] && !renderSpecial { return }
        var s = Int(pieceStart[i])
        let e = Int(pieceStart[i + 1])
        if s == e { return }
        // The space prefix belongs to text, so a rendered <s> does not use up the strip.
        if stripLeadingSpace && !pieceIsSpecial[i] {
            stripLeadingSpace = false
            if pieceArena[s] == 0x20 { s += 1 }
        }
        bytes.append(contentsOf: pieceArena[s..<e])
    }

    /// A decoder that turns ids into text one at a time, holding back incomplete UTF-8.
    public func makeStreamingDecoder(renderSpecial: Bool = false) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, renderSpecial: renderSpecial)
    }

    // MARK: encode

    /// Token ids of `text`, without BOS. With `parseSpecial` false (documents), control-token strings such
    /// as `<|im_start|>` are ordinary text; with true (chat templates) they become their ids. User-defined
    /// tokens are matched either way, as llama.cpp does.
    public func encode(_ text: String, parseSpecial: Bool = false) -> [Int32] {
        encode(text, parseSpecial: parseSpecial, addBOS: false)
    }

    /// As `encode(_:parseSpecial:)`, with BOS prepended when `addBOS` is true and the model has one.
    public func encode(_ text: String, parseSpecial: Bool = false, addBOS: Bool) -> [Int32] {
        var text = text
        return text.withUTF8 { encodeUTF8($0, parseSpecial: parseSpecial, addBOS: addBOS) }
    }

    /// The pieces encoding works on: special-token matches and, for byte-level BPE, the pre-tokens of the
    /// text between them (SentencePiece does not pre-tokenize: text fragments come back whole).
    /// Concatenated they give `text` back.
    public func preTokenize(_ text: String, parseSpecial: Bool = false) -> [String] {
        var text = text
        return text.withUTF8 { buf in
            var pieces = [String]()
            for f in partition(buf, parseSpecial: parseSpecial) {
                switch f {
                case .token(let id): pieces.append(tokens[Int(id)])
                case .text(let a, let b):
                    let frag = UnsafeBufferPointer(rebasing: buf[a..<b])
                    guard case .bytePair(_, let steps, _) = engine else {
                        pieces.append(String(decoding: frag, as: UTF8.self))
                        continue
                    }
                    BPESession.forEachPreToken(frag, steps: steps) { pieces.append(String(decoding: $0, as: UTF8.self)) }
                }
            }
            return pieces
        }
    }

    enum Fragment {
        case text(Int, Int)
        case token(Int32)
    }

    func encodeUTF8(_ buf: UnsafeBufferPointer<UInt8>, parseSpecial: Bool, addBOS: Bool) -> [Int32] {
        var out = [Int32]()
        out.reserveCapacity(buf.count / 3 + 4)
        if addBOS, let bos = bosID { out.append(bos) }
        let fragments = partition(buf, parseSpecial: parseSpecial)
        switch engine {
        case .bytePair(let bpe, let steps, let whole):
            var session = BPESession(model: bpe, steps: steps, wholeWordLookup: whole)
            for f in fragments {
                switch f {
                case .token(let id): out.append(id)
                case .text(let a, let b): session.encode(UnsafeBufferPointer(rebasing: buf[a..<b]), into: &out)
                }
            }
        case .sentencePiece(let spm):
            var ws = SPMWorkspace()
            var prevSpecial = true  // the first text fragment gets the space prefix too
            var text = [UInt8]()
            for f in fragments {
                switch f {
                case .token(let id):
                    out.append(id)
                    prevSpecial = true
                case .text(let a, let b):
                    text.removeAll(keepingCapacity: true)
                    if addSpacePrefix && prevSpecial { text.append(contentsOf: [0xE2, 0x96, 0x81]) }
                    for i in a..<b {
                        if buf[i] == 0x20 { text.append(contentsOf: [0xE2, 0x96, 0x81]) } else { text.append(buf[i]) }
                    }
                    text.withUnsafeBufferPointer { ws.encode($0, model: spm, into: &out) }
                    prevSpecial = false
                }
            }
        }
        return out
    }

    /// Splits the text at special-token strings as llama.cpp's tokenizer_st_partition: token by token,
    /// longest first, each splitting every remaining text fragment at its leftmost non-overlapping matches.
    func partition(_ buf: UnsafeBufferPointer<UInt8>, parseSpecial: Bool) -> [Fragment] {
        guard !buf.isEmpty else { return [] }
        var frags: [Fragment] = [.text(0, buf.count)]
        for st in specialTokens where parseSpecial || !st.needsParseSpecial {
            let key = st.bytes
            let first = key[0]
            var next = [Fragment]()
            var changed = false
            for f in frags {
                guard case .text(let a, let b) = f, b - a >= key.count else { next.append(f); continue }
                var start = a
                var i = a
                let last = b - key.count
                while i <= last {
                    if buf[i] == first {
                        var k = 1
                        while k < key.count && buf[i + k] == key[k] { k += 1 }
                        if k == key.count {
                            if i > start { next.append(.text(start, i)) }
                            next.append(.token(st.id))
                            changed = true
                            i += key.count
                            start = i
                            continue
                        }
                    }
                    i += 1
                }
                if start < b { next.append(.text(start, b)) }
            }
            if changed { frags = next }
        }
        return frags
    }
}

/// Pre-tokenization and merging for one encode call, with a cache of pre-token → ids: documents repeat
/// the same words over and over, so most pre-tokens are merged only once.
struct BPESession {
    let model: BytePairModel
    let steps: [PreTokenizerKind.Step]
    let wholeWordLookup: ByteKeyTable?
    var workspace = BPEWorkspace()
    var cache = ByteKeyTable(capacity: 4096)
    var cachedIDs = [Int32]()
    var cachedStart = [Int32]()

    init(model: BytePairModel, steps: [PreTokenizerKind.Step], wholeWordLookup: ByteKeyTable?) {
        self.model = model
        self.steps = steps
        self.wholeWordLookup = wholeWordLookup
    }

    mutating func encode(_ text: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        Self.forEachPreToken(text, steps: steps) { encodeWord($0, into: &out) }
    }

    /// Calls `body` with the bytes of each pre-token of `text`, in order.
    ///
    /// Long text is processed in blocks of about `blockSize` bytes so the per-codepoint arrays stay small.
    /// A block ends just before a space that sits between two ASCII letters: every implemented
    /// pre-tokenizer ends a letter run there and starts a new " word" pre-token, so cutting there changes
    /// nothing.
    static func forEachPreToken(_ text: UnsafeBufferPointer<UInt8>, steps: [PreTokenizerKind.Step],
                                blockSize: Int = 1 << 16, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        @inline(__always) func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A }
        var cps = [UInt32]()
        var offs = [Int32]()
        var flags = [UInt8]()
        let n = text.count
        var blockStart = 0
        while blockStart < n {
            var blockEnd = n
            if n - blockStart > blockSize {
                var i = blockStart + blockSize
                while i + 1 < n && !(text[i] == 0x20 && isLetter(text[i - 1]) && isLetter(text[i + 1])) { i += 1 }
                if i + 1 < n { blockEnd = i }
            }
            preTokenizeBlock(text, blockStart, blockEnd, steps, &cps, &offs, &flags, body)
            blockStart = blockEnd
        }
    }

    private static func preTokenizeBlock(_ text: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int,
                                         _ steps: [PreTokenizerKind.Step], _ cps: inout [UInt32],
                                         _ offs: inout [Int32], _ flags: inout [UInt8],
                                         _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        // Decode to codepoints (Swift strings are valid UTF-8), with the byte offset of each.
        cps.removeAll(keepingCapacity: true)
        offs.removeAll(keepingCapacity: true)
        flags.removeAll(keepingCapacity: true)
        var i = start
        while i < end {
            let b0 = UInt32(text[i])
            offs.append(Int32(i - start))
            var cp: UInt32
            if b0 < 0x80 {
                cp = b0; i += 1
            } else if b0 < 0xE0 {
                cp = (b0 & 0x1F) << 6 | UInt32(text[i + 1] & 0x3F); i += 2
            } else if b0 < 0xF0 {
                cp = (b0 & 0x0F) << 12 | UInt32(text[i + 1] & 0x3F) << 6 | UInt32(text[i + 2] & 0x3F); i += 3
            } else {
                cp = (b0 & 0x07) << 18 | UInt32(text[i + 1] & 0x3F) << 12 | UInt32(text[i + 2] & 0x3F) << 6
                    | UInt32(text[i + 3] & 0x3F)
                i += 4
            }
            cps.append(cp)
            flags.append(CPClass.of(cp))
        }
        offs.append(Int32(end - start))
        let ends = cps.withUnsafeBufferPointer { c in
            flags.withUnsafeBufferPointer { f in PreTokenizerSplitter(cps: c, fl: f).split(steps) }
        }
        var from = 0
        for e in ends {
            let a = start + Int(offs[from]), b = start + Int(offs[Int(e)])
            from = Int(e)
            body(UnsafeBufferPointer(rebasing: text[a..<b]))
        }
    }

    @inline(__always)
    mutating func encodeWord(_ word: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        if let whole = wholeWordLookup, let id = whole.find(word) {
            out.append(id)
            return
        }
        let h = ByteKeyTable.hash(word)
        if let slot = cache.find(word, hash: h) {
            let s = Int(cachedStart[Int(slot)]), e = Int(cachedStart[Int(slot) + 1])
            out.append(contentsOf: cachedIDs[s..<e])
            return
        }
        let before = out.count
        workspace.encode(word, model: model, into: &out)
        // Bound memory on pathological input (endless distinct words): start the cache over.
        if cache.arenaBytes > 64 << 20 {
            cache = ByteKeyTable(capacity: 4096)
            cachedIDs.removeAll(keepingCapacity: true)
            cachedStart.removeAll(keepingCapacity: true)
        }
        if cachedStart.isEmpty { cachedStart.append(0) }
        cache.insert(word, hash: h, value: Int32(cachedStart.count - 1))
        cachedIDs.append(contentsOf: out[before...])
        cachedStart.append(Int32(cachedIDs.count))
    }
}
