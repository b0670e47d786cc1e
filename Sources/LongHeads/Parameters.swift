/// Parameters of LongHeads attention (LONGHEADS.md "Defaults"); printed with every result.
public struct LongHeadsParameters: Sendable, Equatable, CustomStringConvertible {
    /// Tokens per chunk, `w`.
    public var chunkSize: Int
    /// Tokens one head attends to at most, `attenLength` (a multiple of `chunkSize`, ≤ the trained length).
    public var attentionLength: Int
    /// Below this many tokens attention is plain causal attention.
    public var beginSelective: Int
    /// How heads rank candidate chunks.
    public var policy: SelectionPolicy

    /// Chunks one head reads per query, K = attentionLength / chunkSize.
    public var chunksPerQuery: Int { attentionLength / chunkSize }

    /// Defaults measured best on SmolLM2-135M (8k trained): w = 256, attenLength = beginSelective = 1024,
    /// Quest-bound selection (Docs/SELECTION.md).
    public static let `default` = LongHeadsParameters(chunkSize: 256, attentionLength: 1024, beginSelective: 1024)

    /// The defaults for a model, from its trained context — the one place the rule lives.
    ///
    /// - chunk `w` = 256 for every model: it sets the selection granularity and page size, which depend on
    ///   the document, not the model (both supported models have 64-wide heads, so a page is the same bytes
    ///   per KV head).
    /// - attention length = trained context / 8, clamped to 4·w…16·w (1,024…4,096) and rounded down to
    ///   whole chunks. Each head then reads at most an eighth of what the model was trained to attend to, so
    ///   every relative position it sees is well inside its trained range (LONGHEADS.md: attenLength ≤ the
    ///   trained length), and decode cost stays bounded: attention reads grow linearly with it.
    ///   SmolLM2-135M (8k trained) → 1,024, the measured default (Docs/SELECTION.md); Qwen2.5 (32k) → 4,096.
    public static func defaults(trainedContext: Int) -> LongHeadsParameters {
        let w = 256
        let attention = min(16 * w, max(4 * w, trainedContext / 8 / w * w))
        return LongHeadsParameters(chunkSize: w, attentionLength: attention)
    }

    /// Parameters; `beginSelective` defaults to `attentionLength`.
    public init(chunkSize: Int, attentionLength: Int, beginSelective: Int? = nil, policy: SelectionPolicy = .default) {
        self.chunkSize = chunkSize
        self.attentionLength = attentionLength
        self.beginSelective = beginSelective ?? attentionLength
        self.policy = policy
    }

    /// Why the parameters cannot run, or nil.
    public var problem: String? {
        if chunkSize < 16 || chunkSize % 16 != 0 { return "chunk size \(chunkSize) must be a positive multiple of 16" }
        if attentionLength % chunkSize != 0 { return "attention length \(attentionLength) must be a multiple of the chunk size \(chunkSize)" }
        if chunksPerQuery < 3 { return "attention length \(attentionLength) must hold at least 3 chunks (first, previous, current)" }
        if beginSelective < attentionLength { return "selective start \(beginSelective) must be ≥ the attention length \(attentionLength)" }
        if beginSelective / chunkSize > 250 { return "selective start \(beginSelective) must be ≤ 250 chunks" }
        return nil
    }

    public var description: String {
        "chunk=\(chunkSize) attention=\(attentionLength) selective_from=\(beginSelective) policy=\(policy.rawValue)"
    }
}
