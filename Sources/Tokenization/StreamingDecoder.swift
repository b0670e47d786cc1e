/// Turns generated ids into text one id at a time. A byte-level token can end in the middle of a
/// multi-byte character (an emoji is often 2–4 tokens), so bytes of an incomplete UTF-8 sequence are held
/// back until the rest arrives; `finish()` flushes whatever is left.
public struct StreamingDecoder: Sendable {
    /// The tokenizer whose pieces are decoded.
    public let tokenizer: Tokenizer
    /// Whether control/unknown tokens are shown as their text.
    public let renderSpecial: Bool
    private var pending: [UInt8] = []
    private var stripLeadingSpace: Bool

    /// A decoder for `tokenizer`; also `tokenizer.makeStreamingDecoder(renderSpecial:)`.
    public init(tokenizer: Tokenizer, renderSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.renderSpecial = renderSpecial
        stripLeadingSpace = tokenizer.addSpacePrefix
    }

    /// Adds `id`; returns the text that became complete ("" while a character is still incomplete).
    public mutating func feed(_ id: Int32) -> String {
        tokenizer.appendPiece(id, renderSpecial: renderSpecial, stripLeadingSpace: &stripLeadingSpace, to: &pending)
        let cut = Self.completePrefixLength(pending)
        if cut == 0 { return "" }
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// Returns the held-back bytes (an unfinished character becomes U+FFFD) and resets.
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// Bytes currently held back.
    public var pendingByteCount: Int { pending.count }

    /// Length of the longest prefix not ending inside a multi-byte sequence that could still complete.
    /// Invalid bytes are let through (they decode to U+FFFD) so nothing waits forever.
    static func completePrefixLength(_ b: [UInt8]) -> Int {
        let n = b.count
        var i = n - 1
        // Walk back over at most 3 continuation bytes to the lead byte of the last sequence.
        while i >= 0 && i >= n - 4 {
            let c = b[i]
            if c & 0xC0 != 0x80 {
                let need = c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC0 && c < 0xE0 ? 2 : 1
                return n - i < need ? i : n
            }
            i -= 1
        }
        return n
    }
}
