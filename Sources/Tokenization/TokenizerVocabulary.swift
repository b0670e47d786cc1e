/// The kind of a vocabulary entry, as stored in `tokenizer.ggml.token_type`.
/// Normal tokens decode to their text, byte tokens (`<0xNN>`) to one byte, user-defined tokens to their text;
/// control and unknown tokens decode to "" unless rendering is asked for; unused/undefined tokens to "".
public enum TokenType: Int32, Sendable, Equatable {
    case undefined = 0
    case normal = 1
    case unknown = 2
    case control = 3
    case userDefined = 4
    case unused = 5
    case byte = 6
}

/// Everything the tokenizer needs, as plain arrays: what `Tokenizer(gguf:)` reads from the GGUF
/// `tokenizer.ggml.*` keys, and what tests fill in by hand to build tiny vocabularies.
public struct TokenizerVocabulary: Sendable {
    /// The tokenizer algorithm (`tokenizer.ggml.model`).
    public enum Model: String, Sendable, Equatable {
        /// Byte-level BPE over the GPT-2 byte↔unicode alphabet, with regex pre-tokenization.
        case gpt2
        /// SentencePiece BPE: spaces become U+2581, merges chosen by score, `<0xNN>` byte fallback.
        case llama
    }

    /// The tokenizer algorithm.
    public var model: Model
    /// Pre-tokenizer name (`tokenizer.ggml.pre`), e.g. "smollm", "gpt2", "llama3", "default"; gpt2 model only.
    /// nil means llama.cpp's "default".
    public var preTokenizer: String?
    /// Token strings by id (`tokenizer.ggml.tokens`).
    public var tokens: [String]
    /// Token types by id; empty means every token is `.normal`.
    public var tokenTypes: [TokenType]
    /// Scores by id (SentencePiece merge priority); empty means all 0.
    public var scores: [Float]
    /// BPE merges "left right" in rank order (gpt2 model).
    public var merges: [String]
    /// `tokenizer.ggml.bos_token_id`; ids outside the vocabulary are ignored, as llama.cpp does.
    public var bosID: Int32?
    /// `tokenizer.ggml.eos_token_id`.
    public var eosID: Int32?
    /// `tokenizer.ggml.unknown_token_id`; SentencePiece byte fallback uses it for bytes without a <0xNN> token.
    public var unknownID: Int32?
    /// `tokenizer.ggml.padding_token_id`.
    public var paddingID: Int32?
    /// End-of-turn token (`tokenizer.ggml.eot_token_id`), if the file names one.
    public var eotID: Int32?
    /// End-of-message token (`tokenizer.ggml.eom_token_id`), if the file names one.
    public var eomID: Int32?
    /// Whether prompts should start with BOS (`tokenizer.ggml.add_bos_token`); nil: the model's default
    /// (true for SentencePiece and llama3, false otherwise), as llama.cpp.
    public var addBOS: Bool?
    /// SentencePiece only: prepend a space to text (`tokenizer.ggml.add_space_prefix`); nil: true, as llama.cpp.
    public var addSpacePrefix: Bool?
    /// The model's chat template (`tokenizer.chat_template`, Jinja source), if the file has one.
    public var chatTemplate: String?

    /// Every field but the model and tokens is optional; see the properties.
    public init(
        model: Model, preTokenizer: String? = nil, tokens: [String], tokenTypes: [TokenType] = [],
        scores: [Float] = [], merges: [String] = [], bosID: Int32? = nil, eosID: Int32? = nil,
        unknownID: Int32? = nil, paddingID: Int32? = nil, eotID: Int32? = nil, eomID: Int32? = nil,
        addBOS: Bool? = nil, addSpacePrefix: Bool? = nil, chatTemplate: String? = nil
    ) {
        self.model = model
        self.preTokenizer = preTokenizer
        self.tokens = tokens
        self.tokenTypes = tokenTypes
        self.scores = scores
        self.merges = merges
        self.bosID = bosID
        self.eosID = eosID
        self.unknownID = unknownID
        self.paddingID = paddingID
        self.eotID = eotID
        self.eomID = eomID
        self.addBOS = addBOS
        self.addSpacePrefix = addSpacePrefix
        self.chatTemplate = chatTemplate
    }
}
