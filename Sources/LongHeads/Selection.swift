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
}

/// Layout of the summary LongHeads keeps per chunk beside its pages (the archive's "features" record),
/// in floats, for every policy at once so a store can serve any of them; one layer's part is contiguous
/// (a layer's selection reads only that part):
///
///     [layers] {
///         keyFeatures [heads][headDim]              paper: the chunk key feature per query head
///         bounds      [kvHeads][subs][2][headDim]   quest: min, then max, of the local-RoPE keys
///                                                   of each sub-chunk of `subSize` tokens
///     }
///
/// Version 2 (version 1 held the key features only).
public struct ChunkSummaryLayout: Sendable, Equatable {
    /// The layout version recorded by stores.
    public static let version = 2
    public let layers: Int, heads: Int, kvHeads: Int, headDim: Int, chunkSize: Int
    /// Tokens per Quest sub-chunk: 64, or the chunk when it is smaller.
    public let subSize: Int
    /// Sub-chunks per chunk.
    public var subs: Int { chunkSize / subSize }

    /// The layout for a model geometry and chunk size.
    public init(layers: Int, heads: Int, kvHeads: Int, headDim: Int, chunkSize: Int) {
        (self.layers, self.heads, self.kvHeads, self.headDim, self.chunkSize) = (layers, heads, kvHeads, headDim, chunkSize)
        subSize = min(64, chunkSize)
        precondition(chunkSize % subSize == 0)
    }

    /// Floats of the paper's key features of one layer.
    public var keyFeatureFloatsPerLayer: Int { heads * headDim }
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
