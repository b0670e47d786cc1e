import Model
import Tokenization

/// Errors a generation request can end with.
public enum GenerationError: Error, CustomStringConvertible, Equatable {
    case emptyPrompt
    case contextTooLong(tokens: Int, capacity: Int)

    public var description: String {
        switch self {
        case .emptyPrompt: "the prompt is empty: give a non-empty --prompt, --prompt-file or standard input"
        case .contextTooLong(let t, let c): "the prompt and answer need \(t) tokens but the context holds \(c)"
        }
    }
}

/// ChatML, the template of SmolLM2-Instruct, Qwen2.5-Instruct and many other instruct GGUFs:
/// `<|im_start|>role\ncontent<|im_end|>\n`, then `<|im_start|>assistant\n` to prompt the answer.
/// The markers are looked up in the model's own vocabulary (their ids differ: SmolLM2 1/2, Qwen2.5
/// 151644/151645), and generation stops on the tokenizer's end-of-generation set (`<|im_end|>`, `<|endoftext|>`).
public enum ChatTemplate {
    /// The system turn of a chat.
    public enum System: Sendable, Equatable {
        /// The model's own default system line (read from its chat template, `defaultSystem(for:)`).
        case modelDefault
        /// No system turn.
        case none
        /// This text.
        case text(String)
    }

    /// SmolLM2's default system line, used when a model's file carries no chat template to read one from.
    public static let defaultSystem = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

    /// The default system line the model's chat template inserts when a chat has no system message: the
    /// literal between `<|im_start|>system` + newline and `<|im_end|>` in `tokenizer.chat_template` (SmolLM2:
    /// "You are a helpful AI assistant named SmolLM, …"; Qwen2.5: "You are Qwen, created by Alibaba Cloud. …").
    /// nil when the template has no such literal (no system turn, as the template would render);
    /// `defaultSystem` when the file has no template at all.
    public static func defaultSystem(for tokenizer: Tokenizer) -> String? {
        guard let t = tokenizer.chatTemplate else { return defaultSystem }
        return systemLiteral(in: t)
    }

    /// The first `<|im_start|>system⏎TEXT<|im_end|>` inside one template string literal, with ⏎ a newline or
    /// the two characters `\n`; TEXT must hold no quote, `+` or `{` (else it is an expression, not a literal).
    static func systemLiteral(in template: String) -> String? {
        let open = "<|im_start|>system"
        var rest = template[...]
        while let r = rest.range(of: open) {
            var after = rest[r.upperBound...]
            if after.hasPrefix("\\n") {
                after = after.dropFirst(2)
            } else if after.first == "\n" {
                after = after.dropFirst()
            } else {
                rest = after
                continue
            }
            if let end = after.range(of: "<|im_end|>") {
                let text = after[..<end.lowerBound]
                if !text.isEmpty, !text.contains(where: { "'\"+{}".contains($0) }) { return String(text) }
            }
            rest = after
        }
        return nil
    }

    /// Token ids of a one-turn chat. Only the template's own markers are control tokens: the user's text
    /// is tokenized as plain text, so a document cannot inject `<|im_start|>`.
    public static func chatML(user: String, system: System = .modelDefault, tokenizer: Tokenizer) -> [Int32] {
        userTurnOpening(system: system, tokenizer: tokenizer) + tokenizer.encode(user) + answerOpening(tokenizer: tokenizer)
    }

    /// Everything before the user's text: the system turn (if any) and `<|im_start|>user\n`.
    public static func userTurnOpening(system: System = .modelDefault, tokenizer: Tokenizer) -> [Int32] {
        var ids = [Int32]()
        let text: String? = switch system {
        case .modelDefault: defaultSystem(for: tokenizer)
        case .none: nil
        case .text(let s): s
        }
        if let text {
            ids += tokenizer.encode("<|im_start|>system\n", parseSpecial: true)
            ids += tokenizer.encode(text)
            ids += tokenizer.encode("<|im_end|>\n", parseSpecial: true)
        }
        return ids + tokenizer.encode("<|im_start|>user\n", parseSpecial: true)
    }

    /// Closes the user turn and opens the assistant's answer.
    public static func answerOpening(tokenizer: Tokenizer) -> [Int32] {
        tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n", parseSpecial: true)
    }
}

/// Why generation stopped.
public enum StopReason: String, Sendable {
    /// The model produced an end-of-generation token (EOS, `<|im_end|>`).
    case endOfGeneration = "eos"
    /// `maxTokens` were produced.
    case maxTokens = "length"
}

/// What one generation produced.
public struct GenerationResult: Sendable {
    /// Generated token ids (without the stop token).
    public var tokens: [Int32]
    /// Decoded text of `tokens`.
    public var text: String
    /// Why it stopped.
    public var stopReason: StopReason
    /// Prompt tokens evaluated.
    public var promptTokens: Int
    /// Seconds spent on the prompt.
    public var promptSeconds: Double
    /// Seconds spent generating.
    public var generationSeconds: Double
}

/// Runs a model over a prompt and generates a continuation, streaming text as it becomes complete.
public final class Generator {
    /// The model.
    public let model: LlamaModel
    /// Its tokenizer.
    public let tokenizer: Tokenizer

    /// A generator for `model` with `tokenizer`.
    public init(model: LlamaModel, tokenizer: Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    /// Feeds `tokens` at positions `start...` in batches; returns the last token's logits.
    public func prefill(_ tokens: [Int32], start: Int, attention: Attention) throws -> UnsafeBufferPointer<Float> {
        precondition(!tokens.isEmpty)
        var i = 0
        var out = UnsafeBufferPointer<Float>(start: nil, count: 0)
        while i < tokens.count {
            let end = min(tokens.count, i + model.maxBatch)
            out = try model.forward(tokens[i..<end], start: start + i, attention: attention, logits: end == tokens.count ? .last : .none)
            i = end
        }
        return out
    }

    /// Generates up to `maxTokens` after `prompt`, calling `onText` with each newly complete piece of text.
    public func generate(prompt: [Int32], maxTokens: Int, sampling: SamplingParameters, attention: Attention,
                         onText: (String) throws -> Void = { _ in }) throws -> GenerationResult {
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        let clock = ContinuousClock()
        let t0 = clock.now
        let logits = try prefill(prompt, start: 0, attention: attention)
        let t1 = clock.now
        var text = ""
        let (out, reason) = try decode(from: logits, position: prompt.count, maxTokens: maxTokens, sampling: sampling,
                                       attention: attention) { text += $0; try onText($0) }
        let t2 = clock.now
        return GenerationResult(tokens: out, text: text, stopReason: reason, promptTokens: prompt.count,
                                promptSeconds: (t1 - t0).seconds, generationSeconds: (t2 - t1).seconds)
    }

    /// The decode loop after a prefill: samples from `logits`, feeds each token at `position`, `position + 1`, …,
    /// stops at an end-of-generation token or after `maxTokens`, streaming complete text to `onText`.
    public func decode(from logits: UnsafeBufferPointer<Float>, position: Int, maxTokens: Int, sampling: SamplingParameters,
                       attention: Attention, onText: (String) throws -> Void) throws -> (tokens: [Int32], stop: StopReason) {
        var sampler = Sampler(sampling)
        var decoder = StreamingDecoder(tokenizer: tokenizer)
        var logits = logits
        var out = [Int32]()
        var reason = StopReason.maxTokens
        var position = position
        // Penalized copy of the logits (one buffer per call, reused at every step).
        var penalized = sampling.repeatPenalty != 1 ? [Float](repeating: 0, count: logits.count) : []
        while out.count < maxTokens {
            let next: Int32
            if penalized.isEmpty {
                next = sampler.sample(logits)
            } else {
                next = penalized.withUnsafeMutableBufferPointer { buf in
                    _ = buf.initialize(from: logits)
                    let p = sampling.repeatPenalty
                    let recent = out.suffix(sampling.repeatWindow)
                    for (k, id) in zip(recent.indices, recent) where !recent[..<k].contains(id) {  // each id once
                        let l = buf[Int(id)]
                        buf[Int(id)] = l > 0 ? l / p : l * p
                    }
                    return sampler.sample(UnsafeBufferPointer(buf))
                }
            }
            if tokenizer.isEndOfGeneration(next) { reason = .endOfGeneration; break }
            out.append(next)
            let piece = decoder.feed(next)
            if !piece.isEmpty { try onText(piece) }
            if out.count == maxTokens { break }
            logits = try model.forward([next], start: position, attention: attention, logits: .last)
            position += 1
        }
        let rest = decoder.finish()
        if !rest.isEmpty { try onText(rest) }
        return (out, reason)
    }
}

extension Duration {
    /// The duration in seconds as a Double.
    public var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
