import GGUF

extension TokenizerVocabulary {
    /// Reads the `tokenizer.ggml.*` metadata of a GGUF file.
    public init(gguf: GGUFFile) throws(TokenizerError) {
        let md = gguf.metadata
        func string(_ key: String) throws(TokenizerError) -> String? {
            guard let v = md[key] else { return nil }
            guard let s = v.stringValue else { throw .wrongMetadataType(key: key, expected: "a string") }
            return s
        }
        func id(_ key: String) throws(TokenizerError) -> Int32? {
            guard let v = md[key] else { return nil }
            guard let i = v.intValue else { throw .wrongMetadataType(key: key, expected: "an integer") }
            return Int32(truncatingIfNeeded: i)
        }
        func bool(_ key: String) throws(TokenizerError) -> Bool? {
            guard let v = md[key] else { return nil }
            guard let b = v.boolValue else { throw .wrongMetadataType(key: key, expected: "a bool") }
            return b
        }
        func strings(_ key: String) throws(TokenizerError) -> [String]? {
            guard let v = md[key] else { return nil }
            guard let a = v.stringArray else { throw .wrongMetadataType(key: key, expected: "an array of strings") }
            return a
        }

        let modelKey = "tokenizer.ggml.model"
        guard let modelName = try string(modelKey) else { throw .missingMetadata(key: modelKey) }
        guard let model = Model(rawValue: modelName) else { throw .unsupportedModel(modelName) }
        guard let tokens = try strings("tokenizer.ggml.tokens") else {
            throw .missingMetadata(key: "tokenizer.ggml.tokens")
        }
        var types = [TokenType]()
        if let v = md["tokenizer.ggml.token_type"] {
            guard let raw = v.intArray else {
                throw .wrongMetadataType(key: "tokenizer.ggml.token_type", expected: "an array of integers")
            }
            types.reserveCapacity(raw.count)
            for (i, t) in raw.enumerated() {
                guard let tt = TokenType(rawValue: Int32(truncatingIfNeeded: t)), t >= 0, t <= 6 else {
                    throw .invalidTokenType(id: i, type: t)
                }
                types.append(tt)
            }
        }
        var scores = [Float]()
        if let v = md["tokenizer.ggml.scores"] {
            guard let f = v.floatArray else {
                throw .wrongMetadataType(key: "tokenizer.ggml.scores", expected: "an array of numbers")
            }
            scores = f
        }
        var merges = [String]()
        if model == .gpt2 {
            guard let m = try strings("tokenizer.ggml.merges") else { throw .missingMerges }
            merges = m
        }
        // llama.cpp's defaults when a SentencePiece file does not name its special tokens.
        let spm = model == .llama
        self.init(
            model: model,
            preTokenizer: try string("tokenizer.ggml.pre"),
            tokens: tokens, tokenTypes: types, scores: scores, merges: merges,
            bosID: try id("tokenizer.ggml.bos_token_id") ?? (spm ? 1 : nil),
            eosID: try id("tokenizer.ggml.eos_token_id") ?? (spm ? 2 : nil),
            unknownID: try id("tokenizer.ggml.unknown_token_id") ?? (spm ? 0 : nil),
            paddingID: try id("tokenizer.ggml.padding_token_id"),
            eotID: try id("tokenizer.ggml.eot_token_id"),
            eomID: try id("tokenizer.ggml.eom_token_id"),
            addBOS: try bool("tokenizer.ggml.add_bos_token"),
            addSpacePrefix: try bool("tokenizer.ggml.add_space_prefix"),
            chatTemplate: try string("tokenizer.chat_template"))
    }
}

extension Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    public convenience init(gguf: GGUFFile) throws(TokenizerError) {
        try self.init(vocabulary: TokenizerVocabulary(gguf: gguf))
    }
}
