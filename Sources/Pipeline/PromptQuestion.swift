import Generation
import Tokenization

/// Where the question of a long prompt is: its last sentences, up to the last paragraph.
///
/// Why (issue 15, part 6): people write a long prompt as the material and then the question, at its end.
/// `ask FILE QUESTION` gets the question separately and retrieves the chunk that shares its rare tokens
/// (`LexicalRetrieval`, `DocumentPipeline.open(question:)`); `generate` gets one text. Taking the prompt's
/// last paragraph as the question gives `generate` the same retrieval without any new syntax.
public enum PromptQuestion {
    /// Most sentences of the last paragraph taken as the question (a paragraph of many sentences is more
    /// material than question).
    public static let maxSentences = 3
    /// Most UTF-8 bytes taken as the question (a last paragraph without sentence ends, such as a log line).
    public static let maxBytes = 1024

    /// The UTF-8 offset in `text` where its question starts: the line break(s) before the last paragraph
    /// (the paragraph being the text after the last line break that has non-blank text after it), or,
    /// in a paragraph of more than `maxSentences` sentences, the space before its last `maxSentences`
    /// (a sentence ends at ".", "?" or "!" followed by white space), at most `maxBytes` bytes before the
    /// end (then at a space). Nil when the question would be the whole text or nothing: there is then no
    /// material before it to retrieve from.
    public static func start(in text: String) -> Int? {
        let bytes = Array(text.utf8)
        var end = bytes.count
        while end > 0 && isSpace(bytes[end - 1]) { end -= 1 }
        guard end > 0 else { return nil }
        // The last paragraph: after the last line break before `end`.
        var lineBreak = end
        while lineBreak > 0 && bytes[lineBreak - 1] != UInt8(ascii: "\n") { lineBreak -= 1 }
        var start = lineBreak  // first byte of the paragraph
        // Sentence starts inside the paragraph: the white space after ".", "?" or "!".
        var sentenceStarts = [Int]()
        var i = start
        while i + 1 < end {
            if [UInt8(ascii: "."), UInt8(ascii: "?"), UInt8(ascii: "!")].contains(bytes[i]) && isSpace(bytes[i + 1]) {
                sentenceStarts.append(i + 1)
            }
            i += 1
        }
        if sentenceStarts.count >= maxSentences {
            start = sentenceStarts[sentenceStarts.count - maxSentences]
        }
        if end - start > maxBytes {
            // Cut at the first space inside the last `maxBytes` bytes.
            var s = end - maxBytes
            while s < end && !isSpace(bytes[s]) { s += 1 }
            start = s
        }
        // The question keeps the white space (line breaks) that leads into it, as `ask` puts "\n\n" before its
        // question: the material ends at its last non-blank byte.
        while start > 0 && isSpace(bytes[start - 1]) { start -= 1 }
        guard start > 0, start < end else { return nil }
        return start
    }

    private static func isSpace(_ b: UInt8) -> Bool {
        b == UInt8(ascii: " ") || b == UInt8(ascii: "\n") || b == UInt8(ascii: "\t") || b == UInt8(ascii: "\r")
    }
}

extension DocumentPipeline {
    /// The tokens `generate` reads for `text`: a ChatML user turn with `chat`, else the text (after BOS
    /// when the model wants it).
    public func promptTokens(_ text: String, chat: Bool) -> [Int32] {
        if chat { return ChatTemplate.chatML(user: text, tokenizer: tokenizer) }
        var ids = tokenizer.encode(text)
        if tokenizer.addBOS, let bos = tokenizer.bosID { ids.insert(bos, at: 0) }
        return ids
    }

    /// Index in `ids` (`promptTokens(text, chat:)`) of the first token of the prompt's question
    /// (`PromptQuestion.start`), for `run(prompt:questionStart:)`: from there on the prompt is read as
    /// `ask` reads a question, so that its tokens are the retrieval query. Nil when the prompt has no
    /// question apart from its material. Where the tokenizer joins the last byte of the material with
    /// the line break (Qwen2's ".\n"), the question starts one token earlier, with that token.
    public func questionStart(ofPrompt text: String, chat: Bool, ids: [Int32]) -> Int? {
        guard let byte = PromptQuestion.start(in: text) else { return nil }
        let material = String(decoding: Array(text.utf8)[..<byte], as: UTF8.self)
        let head = promptTokens(material, chat: chat)
        var n = 0
        while n < ids.count && n < head.count && ids[n] == head[n] { n += 1 }
        // Where both encodings agree through the material's last token, the question follows it.
        guard n > 0, n < ids.count else { return nil }
        return n
    }
}
