import Foundation
import Tokenization

/// The LongHeads authors' passkey test (format of shared/reference/passkey): a five-digit key hidden in
/// repeated filler, asked for at the end.
public enum Passkey {
    /// The task line that opens the prompt.
    public static let task = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there."
    /// The filler sentence group, repeated.
    public static let filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
    /// The question, in raw completion form.
    public static let question = "What is the pass key? The pass key is"

    /// A generated passkey prompt and where its key line sits in its tokens.
    public struct Prompt: Sendable {
        /// The prompt text.
        public var text: String
        /// Its tokens (no BOS).
        public var ids: [Int32]
        /// Token span of the key line in `ids` (a boundary token shared with the filler counts as key).
        public var keySpan: Range<Int>
        /// Index in `ids` of the question's first token (its leading newline): the document ends before it.
        public var questionStart: Int
    }

    /// Parses a prompt length, "8k" or "16384", within 1...2^24 tokens; nil otherwise.
    public static func parseLength(_ s: Substring) -> Int? {
        let t = s.lowercased().trimmingCharacters(in: .whitespaces)
        // Bounded before multiplying: "9999999999999999k" must not overflow.
        if t.hasSuffix("k"), let v = Int(t.dropLast()), v > 0, v <= maxLength / 1024 { return v * 1024 }
        guard let v = Int(t), (1...maxLength).contains(v) else { return nil }
        return v
    }

    /// Longest prompt length `parseLength` takes (the CLI's token limit).
    public static let maxLength = 1 << 24

    /// A prompt of about `tokens` tokens with the key at `depth` (share of filler before it), filler cut at
    /// a token boundary as in the reference.
    public static func prompt(tokens: Int, depth: Double, key: Int, tokenizer: Tokenizer) -> Prompt {
        let keyLine = "The pass key is \(key). Remember it. \(key) is the pass key."
        let fixed = tokenizer.encode(task + "\n" + "\n" + keyLine + "\n" + "\n" + question).count
        let fillerTokens = max(0, tokens - fixed)
        // Joined, a repetition takes one token less than `unit` (the space goes with the next word), so
        // grow until the filler covers `fillerTokens` (a longer repetition keeps the same leading tokens).
        let unit = tokenizer.encode(filler + " ")
        var reps = fillerTokens / max(1, unit.count) + 2
        var ids = tokenizer.encode(Array(repeating: filler, count: reps).joined(separator: " "))
        while ids.count < fillerTokens + 1 {
            reps += reps / 8 + 2
            ids = tokenizer.encode(Array(repeating: filler, count: reps).joined(separator: " "))
        }
        let before = Int(Double(fillerTokens) * depth)
        let pre = tokenizer.decode(Array(ids[0..<before]))
        let post = tokenizer.decode(Array(ids[0..<(fillerTokens - before)]))
        let head = [task, pre].joined(separator: "\n") + "\n"
        let text = head + [keyLine, post, question].joined(separator: "\n")
        let all = tokenizer.encode(text)
        // The key line's tokens: where the encodings of the text up to it and through it stop agreeing
        // with the whole prompt's (a token merged across the boundary is counted as the key's).
        let start = commonPrefixCount(all, tokenizer.encode(head))
        let end = max(start + 1, commonPrefixCount(all, tokenizer.encode(head + keyLine)))
        let document = head + [keyLine, post].joined(separator: "\n")
        return Prompt(text: text, ids: all, keySpan: start..<min(end, all.count),
                      questionStart: commonPrefixCount(all, tokenizer.encode(document)))
    }
}
