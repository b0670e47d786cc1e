/// How each head ranks the candidate chunks 1...c-2 (the first, previous and current chunks are always
/// kept; LONGHEADS.md "Selection"). Docs/SELECTION.md has the measurements behind the default.
public enum SelectionPolicy: String, Sendable, CaseIterable, Codable {
    /// The paper's rule (Lu et al. 2024, arXiv 2402.10685 §3.2): dot(q without RoPE, chunk key feature),
    /// the key feature being the chunk's mean attention output re-attending over its local-RoPE keys.
    case paper
    /// Quest's bound (Tang et al. 2024, arXiv 2406.10774 §3): per channel, the min and max of the chunk's
    /// local-RoPE keys bound q·k from above for every key of the chunk; the query is rotated to the first
    /// selectable slot (position (K-2)·w + t mod w), so the bound is one of the very logits the head would
    /// compute if it read that chunk. A chunk holding one key the head would attend to strongly wins even
    /// when the rest of the chunk is filler — which is what finding a needle needs.
    case quest
    /// The Quest bound per sub-chunk of `ChunkSummaryLayout.subSize` tokens, max-pooled over the chunk:
    /// tighter bounds (fewer keys per min/max), `subs`× the scoring work of `quest`.
    case questSub = "quest-sub"
    /// Two stages: the Quest bound keeps `LongHeadsAttention.exactCandidates(pick:)` candidates per query
    /// head, then each candidate is ranked by its largest exact logit, max over its keys of q'·k (the
    /// query rotated as for `quest`), read from the chunk's page. Experimental (issue 4): costs a page read
    /// per candidate chunk and block.
    case questExact = "quest-exact"
    /// `quest` per head, plus, for a question, the chunk that shares the most rare tokens with it
    /// (`LexicalRetrieval`, BM25) forced into every head's selection for the question and its answer. With
    /// no question (ingest, summaries) it is `quest`. Costs no store bytes: chunk token ids are stored anyway.
    case questLexical = "quest-lexical"

    /// The default: Quest bounds per head, and the chunk retrieved for a question shared by all heads
    /// (Docs/SELECTION.md: the policy × task × length table).
    public static let `default` = SelectionPolicy.questLexical

    /// Whether the policy reads rows only `ChunkSummaryContents.full` stores: the paper's key features
    /// (`paper`) or the per-sub-chunk bounds (`quest-sub`). The other policies read the chunk's bound only.
    public var needsFullSummary: Bool { self == .paper || self == .questSub }
}

/// Which rows a store keeps per chunk and layer (`ChunkSummaryLayout`).
///
/// Why two: the default policy (`quest-lexical`, and `quest`, `quest-exact`) reads one Quest bound per KV
/// head over the whole chunk, 2 × headDim floats; the full summary adds the paper's key feature per query
/// head and the bounds of each 64-token sub-chunk, 5.5× as many floats (990 of SmolLM2's 7,311 bytes per
/// token of a q4 store; Docs/STORE.md). A store keeps the full summary only when a policy that reads it
/// will answer from it.
public enum ChunkSummaryContents: String, Sendable, Codable, CaseIterable {
    /// Key features per query head, then the bounds of each sub-chunk of `ChunkSummaryLayout.subSize` tokens.
    case full
    /// The bound over the whole chunk per KV head only (no key features; one sub-chunk = the chunk).
    case bounds

    /// The contents a store needs to answer with `policy`.
    public static func needed(by policy: SelectionPolicy) -> ChunkSummaryContents { policy.needsFullSummary ? .full : .bounds }
}

/// Layout of the summary LongHeads keeps per chunk beside its pages (the archive's "features" record),
/// in floats; one layer's part is contiguous (a layer's selection reads only that part):
///
///     [layers] {
///         keyFeatures [heads][headDim]              paper: the chunk key feature per query head
///                                                   (`full` only; none in `bounds`)
///         bounds      [kvHeads][subs][2][headDim]   quest: min, then max, of the local-RoPE keys
///                                                   of each sub-chunk of `subSize` tokens
///                                                   (`full`: 64 tokens; `bounds`: the whole chunk)
///     }
///
/// Version 2 (version 1 held the key features only); the contents (`ChunkSummaryContents`) are recorded
/// beside the version (absent: `full`). A `full` summary serves every policy; `bounds` serves the ones that
/// read the chunk's bound only, and its bound is the same floats the `full` summary's sub-bounds merge to
/// (min and max are exact), so those policies select the same chunks from either.
public struct ChunkSummaryLayout: Sendable, Equatable {
    /// The layout version recorded by stores.
    public static let version = 2
    public let layers: Int, heads: Int, kvHeads: Int, headDim: Int, chunkSize: Int
    /// Which rows are kept.
    public let contents: ChunkSummaryContents
    /// Tokens per Quest sub-chunk: 64, or the chunk when it is smaller (`full`); the chunk (`bounds`).
    public let subSize: Int
    /// Sub-chunks per chunk.
    public var subs: Int { chunkSize / subSize }

    /// The layout for a model geometry, chunk size and contents.
    public init(layers: Int, heads: Int, kvHeads: Int, headDim: Int, chunkSize: Int, contents: ChunkSummaryContents) {
        (self.layers, self.heads, self.kvHeads, self.headDim, self.chunkSize) = (layers, heads, kvHeads, headDim, chunkSize)
        self.contents = contents
        subSize = contents == .full ? min(64, chunkSize) : chunkSize
        precondition(chunkSize % subSize == 0)
    }

    /// Floats of the paper's key features of one layer (none in `bounds`).
    public var keyFeatureFloatsPerLayer: Int { contents == .full ? heads * headDim : 0 }
    /// Floats of the bounds of one layer.
    public var boundFloatsPerLayer: Int { kvHeads * subs * 2 * headDim }
    /// Floats of one layer's part.
    public var floatsPerLayer: Int { keyFeatureFloatsPerLayer + boundFloatsPerLayer }
    /// Floats per chunk.
    public var floatsPerChunk: Int { layers * floatsPerLayer }
    /// Offset of layer `l`'s key features `[heads][headDim]`.
    public func keyFeatures(layer l: Int) -> Int { l * floatsPerLayer }
    /// Offset of layer `l`'s bounds `[kvHeads][subs][2][headDim]`.
    public func bounds(layer l: Int) -> Int { l * floatsPerLayer + keyFeatureFloatsPerLayer }

    /// Writes the min/max bounds of `keys` (one layer, row-major `[chunkSize][kvHeads][headDim]`, local RoPE)
    /// into `dst` (`[kvHeads][subs][2][headDim]`).
    public func writeBounds(keys: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        let (G, D) = (kvHeads, headDim)
        for g in 0..<G {
            for s in 0..<subs {
                let mn = dst + ((g * subs + s) * 2) * D, mx = mn + D
                let first = keys + ((s * subSize) * G + g) * D
                mn.update(from: first, count: D)
                mx.update(from: first, count: D)
                for t in (s * subSize + 1)..<((s + 1) * subSize) {
                    let k = keys + (t * G + g) * D
                    for d in 0..<D { mn[d] = min(mn[d], k[d]); mx[d] = max(mx[d], k[d]) }
                }
            }
        }
    }
}

/// Plain reference of the Quest bound: Σ_d max(q_d·min_d, q_d·max_d), summed in channel order (the
/// engine's vectorized scoring adds in the same order, so both give the same floats).
public func questBound(_ q: UnsafePointer<Float>, min mn: UnsafePointer<Float>, max mx: UnsafePointer<Float>, _ n: Int) -> Float {
    var s: Float = 0
    for d in 0..<n { s += q[d] >= 0 ? q[d] * mx[d] : q[d] * mn[d] }
    return s
}
