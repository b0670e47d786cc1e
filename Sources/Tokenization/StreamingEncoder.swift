// Tokenizing a document that arrives in blocks (a file read 1 MiB at a time, a pipe) with exactly the
// ids `Tokenizer.encode` gives for the whole text, while holding only a bounded tail of it.
//
// The text is cut only where tokenizing the two sides separately cannot differ from tokenizing them
// together; what follows the last such place is held until more text arrives. A place is safe when
//
// - no special-token string that the partition would look for (user-defined tokens; control tokens too
//   with `parseSpecial`) has an occurrence that straddles it, checked on bytes that are all present (the
//   partition then splits both sides exactly as it splits the whole); and
// - for byte-level BPE, it is a pre-token boundary that more text cannot move. Two kinds are used:
//   a space between two ASCII letters (every implemented pre-tokenizer ends a letter run there and
//   starts a " word" pre-token — the rule `encode` itself uses to cut long texts into blocks), and,
//   where a text has none of those (CJK, digits, symbols), a pre-token boundary of the held text that
//   follows a non-whitespace codepoint and has two more codepoints after it: the splitters read at most
//   two codepoints past the end of a non-whitespace pre-token (contractions; a letter run's end), so
//   such a boundary is the whole text's too, and the text before it splits alone as in the whole (not so
//   after whitespace: `\s+(?!\S)` keeps a run whole only at the end of a text); or
// - for SentencePiece, a space after a non-space, when no vocabulary token has U+2581 after another
//   character (so no merge can join the two sides); otherwise nothing is cut and the text is held.
//
// Incomplete UTF-8 at the end of a block is held too; invalid UTF-8 is an error naming its offset.

/// Tokenizes text that arrives in pieces; the concatenated output equals `tokenizer.encode(wholeText,
/// parseSpecial:)` however the text is cut. Memory is bounded by the longest stretch without a safe cut
/// (normally a few bytes), not by the document: feed it blocks, take the ids it returns, then `finish`.
public struct StreamingEncoder {
    /// The tokenizer.
    public let tokenizer: Tokenizer
    /// Whether control-token strings become their ids (as `encode(_:parseSpecial:)`).
    public let parseSpecial: Bool
    /// Cuts are looked for once this many bytes are held (a search costs a scan of the held bytes).
    /// Exactness does not depend on it; tests lower it to 1 to cut at every opportunity.
    public var minimumBlock: Int = 64 << 10
    /// Past this many held bytes without a safe cut (one pre-token that long: a megabyte-long "word"),
    /// the text is cut anyway at a character boundary, the only case where ids may differ from `encode`.
    public var maximumHeld: Int = 16 << 20

    private var held: [UInt8] = []
    /// Source offset of `held[0]` (everything before it has been tokenized).
    private var heldOffset = 0
    /// `held[0..<validEnd]` is complete, valid UTF-8; the rest is the start of a character.
    private var validEnd = 0
    /// Held size at which the next cut is looked for (doubles while no cut is found: linear time).
    private var nextAttempt = 0
    private var bpe: BPESession?
    private var spm = SPMWorkspace()
    private var spmText: [UInt8] = []
    /// SentencePiece: the next text fragment gets the space prefix (at the start and after a special token).
    private var prefixNext = true
    private var finished = false
    private let specials: [Tokenizer.SpecialToken]
    private let longestSpecial: Int
    private let spmCuts: Bool

    /// A fresh encoder at the start of a text.
    public init(tokenizer: Tokenizer, parseSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.parseSpecial = parseSpecial
        specials = tokenizer.specialTokens.filter { parseSpecial || !$0.needsParseSpecial }
        longestSpecial = specials.map(\.bytes.count).max() ?? 0
        switch tokenizer.engine {
        case .bytePair(let model, let steps, let whole):
            bpe = BPESession(model: model, steps: steps, wholeWordLookup: whole)
            spmCuts = false
        case .sentencePiece:
            // A cut before "▁" that follows a non-space is safe only if no token could span it.
            spmCuts = !tokenizer.tokens.contains { t in
                var prev: Unicode.Scalar?
                for u in t.unicodeScalars {
                    if u == "\u{2581}", let p = prev, p != "\u{2581}" { return true }
                    prev = u
                }
                return false
            }
        }
    }

    /// Bytes accepted so far.
    public var bytesRead: Int { heldOffset + held.count }
    /// Bytes whose ids have been returned; the rest (`bytesRead - bytesEncoded`) is held.
    public var bytesEncoded: Int { heldOffset }

    /// Accepts the next bytes of the text; appends the ids of the text that can no longer change to `out`.
    /// Throws `TokenizerError.invalidUTF8` (with the source offset) at the first invalid sequence.
    public mutating func append(_ bytes: UnsafeRawBufferPointer, into out: inout [Int32]) throws {
        precondition(!finished, "StreamingEncoder.append after finish")
        held.append(contentsOf: bytes)
        try validate()
        if validEnd >= max(nextAttempt, minimumBlock, 1) { process(final: false, into: &out) }
    }

    /// Convenience for byte arrays and slices.
    public mutating func append<C: Collection>(contentsOf bytes: C, into out: inout [Int32]) throws where C.Element == UInt8 {
        let a = Array(bytes)
        try a.withUnsafeBytes { try append($0, into: &out) }
    }

    /// Ends the text: appends the ids of everything held. Throws if it ends inside a character.
    public mutating func finish(into out: inout [Int32]) throws {
        precondition(!finished, "StreamingEncoder.finish called twice")
        if validEnd < held.count { throw TokenizerError.invalidUTF8(offset: heldOffset + validEnd) }
        process(final: true, into: &out)
        finished = true
    }

    // MARK: UTF-8

    /// Extends `validEnd` over complete valid characters; an incomplete one at the end waits for more.
    private mutating func validate() throws {
        let (end, bad) = held.withUnsafeBufferPointer { Self.validUTF8Prefix($0, from: validEnd) }
        validEnd = end
        if let bad { throw TokenizerError.invalidUTF8(offset: heldOffset + bad) }
    }

    /// Scans `b` from `from`: returns the end of the complete valid characters and, if the scan stopped
    /// at an invalid sequence (not merely an incomplete one at the end), its offset.
    static func validUTF8Prefix(_ b: UnsafeBufferPointer<UInt8>, from: Int) -> (Int, Int?) {
        let n = b.count
        var i = from
        while i < n {
            let c = b[i]
            if c < 0x80 { i += 1; continue }
            var need = 0
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF  // range of the second byte (RFC 3629 table)
            switch c {
            case 0xC2...0xDF: need = 1
            case 0xE0: need = 2; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: need = 2
            case 0xED: need = 2; hi = 0x9F
            case 0xF0: need = 3; lo = 0x90
            case 0xF1...0xF3: need = 3
            case 0xF4: need = 3; hi = 0x8F
            default: return (i, i)
            }
            for k in 1...need {
                if i + k >= n { return (i, nil) }
                let x = b[i + k]
                if k == 1 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF) { return (i, i) }
            }
            i += need + 1
        }
        return (n, nil)
    }

    // MARK: cutting

    private mutating func process(final: Bool, into out: inout [Int32]) {
        var cut = final ? validEnd : held.withUnsafeBufferPointer { findCut(UnsafeBufferPointer(rebasing: $0[0..<validEnd])) }
        if cut == 0 && !final && validEnd > maximumHeld {
            cut = held.withUnsafeBufferPointer { forcedCut(UnsafeBufferPointer(rebasing: $0[0..<validEnd])) }
        }
        if cut > 0 {
            held.withUnsafeBufferPointer { encodeSegment(UnsafeBufferPointer(rebasing: $0[0..<cut]), into: &out) }
            held.removeSubrange(0..<cut)
            heldOffset += cut
            validEnd -= cut
        }
        nextAttempt = 2 * validEnd
    }

    /// The last safe cut in `t` (complete characters), or 0.
    private func findCut(_ t: UnsafeBufferPointer<UInt8>) -> Int {
        let e = t.count
        // A cut must leave room after it to see every special-token occurrence that could straddle it.
        let limit = e - max(0, longestSpecial - 1)
        @inline(__always) func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A }
        switch tokenizer.engine {
        case .sentencePiece:
            guard spmCuts else { return 0 }
            var i = min(limit, e - 1)
            while i >= 1 {
                if t[i] == 0x20 && t[i - 1] != 0x20 && !straddlesSpecial(t, i) { return i }
                i -= 1
            }
            return 0
        case .bytePair(_, let steps, _):
            // The cut `encode` uses between blocks: before a space between two ASCII letters.
            var i = min(limit, e - 2)
            while i >= 1 {
                if t[i] == 0x20 && isLetter(t[i - 1]) && isLetter(t[i + 1]) && !straddlesSpecial(t, i) { return i }
                i -= 1
            }
            // None: any pre-token boundary whose look-ahead is present, in the last text fragment.
            guard case .text(let a, let b)? = tokenizer.partition(t, parseSpecial: parseSpecial).last, b == e else { return 0 }
            var ends = [Int]()
            let base = t.baseAddress!
            BPESession.forEachPreToken(UnsafeBufferPointer(rebasing: t[a..<b]), steps: steps) { piece in
                ends.append(piece.baseAddress! - base + piece.count)
            }
            if a > 0 { ends.insert(a, at: 0) }
            for x in ends.reversed() where x < e && x <= limit {
                if Self.lookAheadPresent(t, at: x) && !straddlesSpecial(t, x) { return x }
            }
            return 0
        }
    }

    /// Whether boundary `x` of the held text's pre-tokens is one of the whole text's and the text before
    /// it pre-tokenizes alone as it does in the whole: the codepoint before `x` is not whitespace (a run
    /// of whitespace at the end of a text is kept whole, inside a text its last space may go to the next
    /// word), and the two codepoints after it — all the splitters read past a boundary — are present.
    static func lookAheadPresent(_ t: UnsafeBufferPointer<UInt8>, at x: Int) -> Bool {
        @inline(__always) func decode(_ i: Int) -> UInt32 {
            let b0 = UInt32(t[i])
            if b0 < 0x80 { return b0 }
            if b0 < 0xE0 { return (b0 & 0x1F) << 6 | UInt32(t[i + 1] & 0x3F) }
            if b0 < 0xF0 { return (b0 & 0x0F) << 12 | UInt32(t[i + 1] & 0x3F) << 6 | UInt32(t[i + 2] & 0x3F) }
            return (b0 & 0x07) << 18 | UInt32(t[i + 1] & 0x3F) << 12 | UInt32(t[i + 2] & 0x3F) << 6 | UInt32(t[i + 3] & 0x3F)
        }
        guard x > 0 else { return false }
        var p = x - 1
        while p > 0 && t[p] & 0xC0 == 0x80 { p -= 1 }
        if CPClass.of(decode(p)) & CPClass.whitespace != 0 { return false }
        var i = x, count = 0
        while i < t.count && count < 2 {
            if t[i] & 0xC0 != 0x80 { count += 1 }
            i += 1
        }
        return count >= 2
    }

    /// Whether an occurrence of a special-token string that the partition looks for straddles `x`.
    private func straddlesSpecial(_ t: UnsafeBufferPointer<UInt8>, _ x: Int) -> Bool {
        for st in specials where st.bytes.count > 1 {
            let L = st.bytes.count
            var s = max(0, x - L + 1)
            while s < x {
                if s + L <= t.count {
                    var k = 0
                    while k < L && t[s + k] == st.bytes[k] { k += 1 }
                    if k == L { return true }
                }
                s += 1
            }
        }
        return false
    }

    /// The last character boundary outside any special-token occurrence, well before the end.
    private func forcedCut(_ t: UnsafeBufferPointer<UInt8>) -> Int {
        var x = t.count - max(8, longestSpecial)
        while x > 0 && (t[x] & 0xC0 == 0x80 || straddlesSpecial(t, x)) { x -= 1 }
        return max(0, x)
    }

    // MARK: encoding

    /// Encodes a segment that starts and ends at safe cuts, as `Tokenizer.encodeUTF8` encodes a text.
    private mutating func encodeSegment(_ seg: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        let fragments = tokenizer.partition(seg, parseSpecial: parseSpecial)
        switch tokenizer.engine {
        case .bytePair:
            for f in fragments {
                switch f {
                case .token(let id): out.append(id)
                case .text(let a, let b): bpe!.encode(UnsafeBufferPointer(rebasing: seg[a..<b]), into: &out)
                }
            }
        case .sentencePiece(let model):
            for f in fragments {
                switch f {
                case .token(let id):
                    out.append(id)
                    prefixNext = true
                case .text(let a, let b):
                    spmText.removeAll(keepingCapacity: true)
                    if tokenizer.addSpacePrefix && prefixNext { spmText.append(contentsOf: [0xE2, 0x96, 0x81]) }
                    for i in a..<b {
                        if seg[i] == 0x20 { spmText.append(contentsOf: [0xE2, 0x96, 0x81]) } else { spmText.append(seg[i]) }
                    }
                    var ws = spm
                    spmText.withUnsafeBufferPointer { ws.encode($0, model: model, into: &out) }
                    spm = ws
                    prefixNext = false
                }
            }
        }
    }
}
