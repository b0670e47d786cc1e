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
