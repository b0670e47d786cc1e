import Foundation
import Generation
import KVStore
import LongHeads
import Model
import Tokenization

/// Asks one yes/no question about many texts: the probability the model's answer starts with "yes".
///
/// The prompt is a template around the text (by default a few generic examples, the text, the question
/// and "Answer:"); the answer is read from the next-token distribution (the "yes" tokens against the "no"
/// tokens), so no text is generated. The part before the text is the same for every text: its keys and
/// values are computed once and
/// every text continues from them. A text whose prompt is longer than the LongHeads selective start runs
/// through LongHeads like any document and its question (a temporary store, removed afterwards): under
/// `quest-lexical` the part after the text, which holds the question, retrieves the text's chunk that
/// shares its rare words.
public final class YesNoClassifier {
    /// The pipeline (model, tokenizer, page budget) used for long texts.
    public let pipeline: DocumentPipeline
    /// LongHeads parameters for long texts; shorter prompts use plain attention.
    public let parameters: LongHeadsParameters
    /// First tokens of the "yes" answers ("yes", "Yes", " yes", …), none shared with a "no" answer.
    public let yesIDs: [Int32]
    /// First tokens of the "no" answers.
    public let noIDs: [Int32]
    /// Where temporary stores of long texts go.
    public let temporaryDirectory: String
    private let prefix: [Int32]
    private let suffix: [Int32]
    /// The prefix's keys and values, computed once, continued by every short text: one at a time
    /// (`score`) or several packed into one forward pass (`scores(packed:)`).
    private let packed: PackedAttention
    /// The prefix in a plain cache, made on first use (`denseScore`).
    private var dense: DenseAttention?
    private let chat: Bool
    /// The question follows the text (as in the default template): a long text is then run as `ask` runs a
    /// document and its question, so that under `quest-lexical` the question retrieves its chunk.
    private let questionAfterText: Bool
    private var texts = 0
    /// Chunks the question retrieved for the last long text (empty for a short one, or without retrieval).
    public private(set) var lastSharedChunks: [Int] = []
    /// Tokens the last `scores(packed:)` ran through the model: the texts' bodies, their common start once.
    public private(set) var lastPackedTokens = 0

    /// The default prompt, plain text (not a chat turn): four generic yes/no examples, then the text and the
    /// question. `{question}` and `{text}` are replaced by the question and the text. Measured on
    /// SmolLM2-135M-Instruct (Samples/README.md), this ranks texts far better than a chat turn, whose
    /// yes-probability did not separate matching texts from the rest at all.
    public static let defaultTemplate = """
        Text: I love this song, it makes me dance.
        Question: Is the text about music?
        Answer: yes

        Text: The train was late again this morning.
        Question: Is the text about food?
        Answer: no

        Text: My cat sleeps on the sofa all day.
        Question: Is the text about an animal?
        Answer: yes

        Text: Please send me the report by Friday.
        Question: Is the text about the weather?
        Answer: no

        Text: {text}
        Question: {question}
        Answer:
        """

    /// A classifier asking `question` with `pipeline`'s model. `template` holds `{text}` once and
    /// `{question}` anywhere; with `chat` it is the user turn of a chat, else plain text the model continues.
    public init(pipeline: DocumentPipeline, question: String, parameters: LongHeadsParameters = .default,
                template: String = defaultTemplate, chat: Bool = false,
                temporaryDirectory: String = NSTemporaryDirectory()) throws {
        self.pipeline = pipeline
        self.parameters = parameters
        self.temporaryDirectory = temporaryDirectory
        self.chat = chat
        let tok = pipeline.tokenizer
        (yesIDs, noIDs) = try Self.answerTokens(tokenizer: tok)
        let q = question.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !q.isEmpty else { throw ClassifierError.emptyQuestion }
        let parts = template.replacingOccurrences(of: "\\n", with: "\n").components(separatedBy: "{text}")
        guard parts.count == 2 else { throw ClassifierError.badTemplate }
        let before = parts[0].replacingOccurrences(of: "{question}", with: q)
        questionAfterText = parts[1].contains("{question}")
        let after = parts[1].replacingOccurrences(of: "{question}", with: q)
        if chat {
            prefix = ChatTemplate.userTurnOpening(tokenizer: tok) + tok.encode(before)
            suffix = tok.encode(after) + ChatTemplate.answerOpening(tokenizer: tok)
        } else {
            prefix = (tok.addBOS ? tok.bosID.map { [$0] } ?? [] : []) + tok.encode(before)
            suffix = tok.encode(after)
        }
        guard prefix.count + suffix.count + 1 < parameters.beginSelective else { throw ClassifierError.questionTooLong }
        packed = PackedAttention(config: pipeline.model.config, prefixCapacity: min(parameters.beginSelective, prefix.count + Self.maxSharedStart),
                                 pool: pipeline.model.pool)
        // The shared prefix, once; every short text continues at position prefix.count.
        packed.extendPrefix()
        _ = try Generator(model: pipeline.model, tokenizer: tok).prefill(prefix, start: 0, attention: packed)
    }

    /// A text tokenized for the classifier.
    public struct Input: Sendable {
        /// The tokens after the shared prefix: the text's, then the rest of the prompt.
        public let body: [Int32]
        /// Tokens of the text alone (the start of `body`).
        public let textCount: Int
        /// Whether the whole prompt fits the attention length (plain attention; packable), else the
        /// text runs through LongHeads.
        public let isShort: Bool
    }

    /// `text` tokenized into the prompt.
    public func prepare(_ text: String) -> Input {
        let textIDs = pipeline.tokenizer.encode(text)
        let body = textIDs + suffix
        return Input(body: body, textCount: textIDs.count, isShort: prefix.count + body.count <= parameters.beginSelective)
    }

    /// Most tokens of short texts packed into one forward pass (`scores(packed:)`): the model's batch.
    public var packLimit: Int { pipeline.model.maxBatch }

    /// Probability (0...1) that the answer about `text` is yes, relative to no.
    public func score(_ text: String) throws -> Double { try score(prepare(text)) }

    /// Probability (0...1) that the answer about a prepared text is yes, relative to no; one text alone
    /// (`denseScore` for a short one).
    public func score(_ input: Input) throws -> Double {
        let body = input.body
        texts += 1
        lastSharedChunks = []
        if input.isShort { return try denseScore(input) }
        let textIDs = Array(body[..<input.textCount])
        let dir = (temporaryDirectory as NSString).appendingPathComponent(
            "longheads-filter-\(getpid())-\(texts)-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (session, long) = try pipeline.run(prompt: prefix + body, questionStart: questionAfterText ? prefix.count + textIDs.count : nil,
                                               storeAt: dir, modelFile: pipeline.model.file, parameters: parameters, precision: .default, chat: chat)
        lastSharedChunks = session.attention.sharedChunks
        let p = yesProbability(long)
        withExtendedLifetime(session) {}
        return p
    }

    /// Most tokens at the start of a batch's texts that are computed once for all of them (`scores(packed:)`).
    static let maxSharedStart = 64

    /// Probabilities of yes for several short texts (each `isShort`, together at most `packLimit` tokens),
    /// in order, from one forward pass: every text continues the shared prefix as if it were alone
    /// (`PackedAttention`: each sees the prefix and itself), and the answer is read from the logits of
    /// each text's last token. The tokens all the texts start with (records of one log or one ticket
    /// system often do: "ticket 1000…", a date) are computed once, as a continuation of the prefix.
    /// Equal to scoring them one at a time, bit for bit (tested).
    public func scores(packed inputs: [Input]) throws -> [Double] {
        precondition(inputs.allSatisfy(\.isShort), "scores(packed:) takes short texts only")
        precondition(!inputs.isEmpty && inputs.map(\.body.count).reduce(0, +) <= packLimit, "scores(packed:): more than \(packLimit) tokens")
        // The common start, leaving every text at least its last token (whose logits are read).
        var shared = min(inputs.map(\.body.count).min()! - 1, Self.maxSharedStart, packed.prefixCapacity - prefix.count)
        for input in inputs.dropFirst() {
            shared = zip(inputs[0].body[..<shared], input.body).prefix(while: { $0 == $1 }).count
        }
        var tokens = Array(inputs[0].body[..<shared])
        var lengths = [Int](), lastRows = [Int]()
        for input in inputs {
            tokens += input.body[shared...]
            lengths.append(input.body.count - shared)
            lastRows.append(tokens.count - 1)
        }
        lastSharedChunks = []
        lastPackedTokens = tokens.count
        packed.pack(shared: shared, segments: lengths)
        let vocab = pipeline.model.config.vocabSize
        let logits = try pipeline.model.forward(tokens[...], start: prefix.count, attention: packed, logits: .rows(lastRows))
        return (0..<inputs.count).map { yesProbability(UnsafeBufferPointer(rebasing: logits[$0 * vocab..<($0 + 1) * vocab])) }
    }

    /// The probability of yes for a short text through plain causal attention: the text continues the
    /// prefix in a `DenseAttention` cache (kept for the next call; a text only reads positions up to its
    /// own, so the previous one's keys are overwritten), in pieces of the model's batch. The path of texts
    /// too long to pack, and the reference the packed path is tested against.
    public func denseScore(_ input: Input) throws -> Double {
        precondition(input.isShort, "denseScore takes short texts only")
        let generator = Generator(model: pipeline.model, tokenizer: pipeline.tokenizer)
        let cache: DenseAttention
        if let dense { cache = dense } else {
            cache = DenseAttention(config: pipeline.model.config, capacity: parameters.beginSelective, pool: pipeline.model.pool)
            _ = try generator.prefill(prefix, start: 0, attention: cache)
            dense = cache
        }
        return yesProbability(try generator.prefill(input.body, start: prefix.count, attention: cache))
    }

    /// σ(logsumexp(yes) − logsumexp(no)): the renormalized probability of the yes tokens against the no tokens.
    func yesProbability(_ logits: UnsafeBufferPointer<Float>) -> Double {
        Self.yesProbability(logits, yes: yesIDs, no: noIDs)
    }

    /// The first tokens of the "yes" answers ("yes", "Yes", " yes", …) and of the "no" answers, none shared.
    public static func answerTokens(tokenizer tok: Tokenizer) throws -> (yes: [Int32], no: [Int32]) {
        func firstTokens(_ words: [String]) -> Set<Int32> { Set(words.compactMap { tok.encode($0).first }) }
        let yes = firstTokens(["yes", "Yes", "YES", " yes", " Yes"])
        let no = firstTokens(["no", "No", "NO", " no", " No"])
        let answers = (yes: yes.subtracting(no).sorted(), no: no.subtracting(yes).sorted())
        guard !answers.yes.isEmpty, !answers.no.isEmpty else { throw ClassifierError.noYesNoTokens }
        return answers
    }

    /// σ(logsumexp(yes) − logsumexp(no)) of next-token `logits` for the answer tokens `yes` and `no`.
    public static func yesProbability(_ logits: UnsafeBufferPointer<Float>, yes: [Int32], no: [Int32]) -> Double {
        func lse(_ ids: [Int32]) -> Double {
            let v = ids.map { Double(logits[Int($0)]) }
            let m = v.max()!
            return m + log(v.reduce(0) { $0 + exp($1 - m) })
        }
        return 1 / (1 + exp(-(lse(yes) - lse(no))))
    }

    /// logsumexp(yes) − logsumexp(no) of the next-token logits.
    func logOdds(_ logits: UnsafeBufferPointer<Float>) -> Double {
        func lse(_ ids: [Int32]) -> Double {
            let v = ids.map { Double(logits[Int($0)]) }
            let m = v.max()!
            return m + log(v.reduce(0) { $0 + exp($1 - m) })
        }
        return lse(yesIDs) - lse(noIDs)
    }
}

/// Errors of `YesNoClassifier`.
public enum ClassifierError: Error, CustomStringConvertible {
    case noYesNoTokens
    case emptyQuestion
    case questionTooLong
    case badTemplate

    public var description: String {
        switch self {
        case .noYesNoTokens: "the model's vocabulary cannot tell a yes answer from a no answer"
        case .emptyQuestion: "the question is empty"
        case .questionTooLong: "the question is too long: it must leave room for the text within the attention length"
        case .badTemplate: "the prompt template must hold {text} exactly once"
        }
    }
}
