import GGUF

// Whole-file checks of a model description, run once at load before any tensor is used (issue 14):
// what the per-tensor shape checks in `LlamaModel.init` cannot see — metadata that parses but is
// nonsense, and mismatches between the tokenizer's metadata and the weights.

extension ModelConfig {
    /// Special-token keys whose ids index the embedding (llama.cpp's `tokenizer.ggml.*_token_id`).
    static let specialTokenKeys = ["bos", "eos", "unknown", "separator", "padding", "cls", "mask", "eot", "eom"]
        .map { "tokenizer.ggml.\($0)_token_id" }

    /// Checks `file` as a whole against this config: finite positive RoPE base and RMS epsilon, a
    /// positive context length, `block_count` equal to the `blk.N` blocks present, the tokenizer's
    /// vocabulary no larger than the embedding, and special token ids inside that vocabulary.
    /// Throws `badHyperparameter` naming the key, or `badShape` naming the tensor.
    public func validate(against file: GGUFFile) throws(ModelError) {
        let arch = architecture
        func bad(_ key: String, _ reason: String) -> ModelError { .badHyperparameter(path: file.path, key: key, reason: reason) }
        // A present key must hold a usable number; an absent one takes the default (already in the config).
        for (suffix, what) in [("rope.freq_base", "RoPE base"), ("attention.layer_norm_rms_epsilon", "RMS epsilon")] {
            let key = "\(arch).\(suffix)"
            guard let v = file.metadata[key] else { continue }
            guard let f = v.floatValue ?? v.intValue.map(Double.init) else { throw bad(key, "\(what) is not a number") }
            guard f.isFinite, f > 0 else { throw bad(key, "\(what) \(f) is not a finite positive number") }
        }
        guard rmsEps.isFinite, rmsEps > 0 else { throw bad("\(arch).attention.layer_norm_rms_epsilon", "\(rmsEps) is not finite positive") }
        guard ropeBase.isFinite, ropeBase > 0 else { throw bad("\(arch).rope.freq_base", "\(ropeBase) is not finite positive") }
        guard trainedContext > 0 else { throw bad("\(arch).context_length", "\(trainedContext) is not positive") }

        // block_count must describe the blocks that are there: fewer would silently drop layers, more
        // are caught as missing tensors by the loader.
        var blocks = Set<Int>()
        for name in file.tensorNames where name.hasPrefix("blk.") {
            let rest = name.dropFirst(4)
            if let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]), n >= 0 { blocks.insert(n) }
        }
        if let top = blocks.max(), top >= layers {
            throw bad("\(arch).block_count", "\(layers) blocks declared but the file has tensors of block \(top) (\(blocks.count) blocks)")
        }

        // The tokenizer may emit any id below its token count; each must be an embedding row.
        let tokensKey = "tokenizer.ggml.tokens"
        var tokenCount = vocabSize
        if let v = file.metadata[tokensKey] {
            guard let items = v.arrayValue else { throw bad(tokensKey, "not an array") }
            guard items.count <= vocabSize else {
                throw .badShape(path: file.path, tensor: "token_embd.weight", expected: [dim, items.count], found: [dim, vocabSize])
            }
            tokenCount = items.count
        }
        for key in Self.specialTokenKeys {
            guard let v = file.metadata[key] else { continue }
            guard let id = v.intValue, id >= 0, id < tokenCount else {
                throw bad(key, "token id \(v.intValue.map(String.init) ?? "\(v)") is outside the vocabulary of \(tokenCount) tokens")
            }
        }
    }
}
