/// Errors from building a tokenizer; each case names the offending key, token or value.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A required GGUF metadata key is absent.
    case missingMetadata(key: String)
    /// A GGUF metadata key holds a value of the wrong type.
    case wrongMetadataType(key: String, expected: String)
    /// `tokenizer.ggml.model` names a tokenizer this module does not implement.
    case unsupportedModel(String)
    /// `tokenizer.ggml.pre` names a pre-tokenizer this module does not implement.
    case unsupportedPreTokenizer(String)
    /// The token list is empty.
    case emptyVocabulary
    /// A per-token array (scores, token types) is shorter than the token list.
    case arrayTooShort(key: String, count: Int, vocabularySize: Int)
    /// The same token string appears twice (llama.cpp refuses such a vocabulary too).
    case duplicateToken(token: String, firstID: Int, secondID: Int)
    /// A token type outside 0...6.
    case invalidTokenType(id: Int, type: Int)
    /// The vocabulary asks for BOS to be prepended but has no valid BOS id.
    case missingBOS
    /// A byte-level BPE vocabulary lacks merges.
    case missingMerges
    /// Text given as bytes (`StreamingEncoder`) is not valid UTF-8: the first bad sequence starts at `offset`.
    case invalidUTF8(offset: Int)

    public var description: String {
        switch self {
        case .missingMetadata(let k): "tokenizer: missing GGUF metadata key '\(k)'"
        case .wrongMetadataType(let k, let e): "tokenizer: GGUF metadata key '\(k)' is not \(e)"
        case .unsupportedModel(let m): "tokenizer: unsupported tokenizer model '\(m)' (supported: gpt2, llama)"
        case .unsupportedPreTokenizer(let p):
            "tokenizer: unsupported pre-tokenizer '\(p)' (supported: \(PreTokenizerKind.supportedNames.joined(separator: ", ")))"
        case .emptyVocabulary: "tokenizer: the token list is empty"
        case .arrayTooShort(let k, let n, let v): "tokenizer: '\(k)' has \(n) entries but the vocabulary has \(v) tokens"
        case .duplicateToken(let t, let a, let b): "tokenizer: duplicate token '\(t)' at ids \(a) and \(b)"
        case .invalidTokenType(let id, let t): "tokenizer: token \(id) has invalid type \(t) (expected 0...6)"
        case .missingBOS: "tokenizer: add_bos_token is set but there is no valid BOS token id"
        case .missingMerges: "tokenizer: a gpt2 (byte-level BPE) vocabulary needs 'tokenizer.ggml.merges'"
        case .invalidUTF8(let o): "invalid UTF-8 at byte offset \(o)"
        }
    }
}
