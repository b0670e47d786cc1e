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
    /// The chunk summary rows kept beside the pages (a store's are fixed at ingest).
    public var summary: ChunkSummaryContents

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
    /// - attention length = 4·w (1,024), or less for a model trained on fewer than 2,048 tokens (half its
    ///   trained context, at least the 3 chunks every head reads: first, previous, current). Each head then
    ///   reads far less than it was trained on (LONGHEADS.md: attenLength ≤ the trained length). A longer
    ///   window for a long-trained model was measured and not taken: on Qwen2.5-Coder-0.5B (32k trained),
    ///   attention 4,096 ingests 16k tokens at 102 tok/s against 168 tok/s at 1,024 on a quiet 2-core
    ///   machine (0.61×, under the 150 tok/s bar of issue 12) and answers in 1.14 s against 0.67 s
    ///   (Docs/ARCHITECTURES.md); `--attention` still takes it.
    public static func defaults(trainedContext: Int) -> LongHeadsParameters {
        let w = 256
        let attention = max(3 * w, min(4 * w, trainedContext / 2 / w * w))
        return LongHeadsParameters(chunkSize: w, attentionLength: attention)
    }

    /// Parameters; `beginSelective` defaults to `attentionLength`, `summary` to what `policy` needs.
    public init(chunkSize: Int, attentionLength: Int, beginSelective: Int? = nil, policy: SelectionPolicy = .default,
                summary: ChunkSummaryContents? = nil) {
        self.chunkSize = chunkSize
        self.attentionLength = attentionLength
        self.beginSelective = beginSelective ?? attentionLength
        self.policy = policy
        self.summary = summary ?? .needed(by: policy)
    }

    /// Why the parameters cannot run, or nil.
    public var problem: String? {
        if chunkSize < 16 || chunkSize % 16 != 0 { return "chunk size \(chunkSize) must be a positive multiple of 16" }
        if attentionLength % chunkSize != 0 { return "attention length \(attentionLength) must be a multiple of the chunk size \(chunkSize)" }
        if chunksPerQuery < 3 { return "attention length \(attentionLength) must hold at least 3 chunks (first, previous, current)" }
        if beginSelective < attentionLength { return "selective start \(beginSelective) must be ≥ the attention length \(attentionLength)" }
        if beginSelective / chunkSize > 250 { return "selective start \(beginSelective) must be ≤ 250 chunks" }
        if policy.needsFullSummary && summary != .full {
            return "policy \(policy.rawValue) reads the full chunk summaries, and this store keeps the chunk bounds only: ingest with --policy \(policy.rawValue)"
        }
        return nil
    }

    public var description: String {
        "chunk=\(chunkSize) attention=\(attentionLength) selective_from=\(beginSelective) policy=\(policy.rawValue)"
    }
}
