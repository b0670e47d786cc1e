/// The rankings of the selection policies (`SelectionPolicy.ranking`), the one place that knows what each
/// policy reads of a chunk's summary (`ChunkSummaryLayout`, Selection.swift) and how a query reads it.

extension SelectionPolicy {
    /// How this policy ranks candidate chunks, for chunk summaries of `summary`'s layout.
    public func ranking(_ summary: ChunkSummaryLayout) -> any ChunkRanking {
        switch self {
        case .paper: KeyFeatureRanking(summary: summary)
        // quest-lexical ranks as quest; its retrieved chunk is shared by the pipeline (`LongHeadsAttention.share`).
        case .quest, .questLexical: QuestBoundRanking(summary: summary, perSubChunk: false, exactCandidates: false)
        case .questSub: QuestBoundRanking(summary: summary, perSubChunk: true, exactCandidates: false)
        case .questExact: QuestBoundRanking(summary: summary, perSubChunk: false, exactCandidates: true)
        }
    }
}

/// The paper's rule (arXiv 2402.10685 §3.2): the unrotated query against the chunk key feature of its head.
public struct KeyFeatureRanking: ChunkRanking {
    let summary: ChunkSummaryLayout
    public var rotatesQuery: Bool { false }
    public var subs: Int { 1 }
    public var rowsPerChunk: Int { summary.heads }

    public func fill(slab: UnsafeMutablePointer<Float>, stride: Int, column x: Int, summary row: UnsafePointer<Float>, layer: Int) {
        let D = summary.headDim
        // `row` starts at the layer's key features, [heads][headDim].
        for r in 0..<summary.heads { for d in 0..<D { slab[(r * D + d) * stride + x] = row[r * D + d] } }
    }

    public func rows(head h: Int, query q: UnsafePointer<Float>, into rowIndex: UnsafeMutablePointer<Int32>) {
        let D = summary.headDim
        for d in 0..<D { rowIndex[d] = Int32(h * D + d) }
    }

    public func kept(pick: Int) -> Int { pick }
}

/// Quest's bound (arXiv 2406.10774 §3): per channel, the query rotated to the first selectable slot
/// times the max of the chunk's local-RoPE keys where it is ≥ 0, else times the min. `perSubChunk`
/// (quest-sub) keeps one bound per sub-chunk, max-pooled by the scoring kernel; otherwise the sub-chunk
/// bounds are merged into one over the chunk. `exactCandidates` (quest-exact) keeps
/// `LongHeadsAttention.exactCandidates(pick:)` candidates for the attention's exact rescoring.
public struct QuestBoundRanking: ChunkRanking {
    let summary: ChunkSummaryLayout
    let perSubChunk: Bool
    let exactCandidates: Bool
    public var rotatesQuery: Bool { true }
    public var subs: Int { perSubChunk ? summary.subs : 1 }
    public var rowsPerChunk: Int { summary.kvHeads * subs * 2 }

    public func fill(slab: UnsafeMutablePointer<Float>, stride: Int, column x: Int, summary row: UnsafePointer<Float>, layer l: Int) {
        let (G, D, S) = (summary.kvHeads, summary.headDim, summary.subs)
        let src = row + (summary.bounds(layer: l) - summary.keyFeatures(layer: l))  // [G][S][2][D]
        for g in 0..<G {
            if perSubChunk {
                for r in 0..<(S * 2) { for d in 0..<D { slab[((g * S * 2 + r) * D + d) * stride + x] = src[(g * S * 2 + r) * D + d] } }
            } else {
                for d in 0..<D {
                    var mn = src[(g * S * 2) * D + d], mx = src[(g * S * 2 + 1) * D + d]
                    for s in 1..<S { mn = min(mn, src[((g * S + s) * 2) * D + d]); mx = max(mx, src[((g * S + s) * 2 + 1) * D + d]) }
                    slab[((g * 2) * D + d) * stride + x] = mn
                    slab[((g * 2 + 1) * D + d) * stride + x] = mx
                }
            }
        }
    }

    public func rows(head h: Int, query q: UnsafePointer<Float>, into rowIndex: UnsafeMutablePointer<Int32>) {
        let D = summary.headDim, g = h / (summary.heads / summary.kvHeads), subs = self.subs
        for s in 0..<subs {
            for d in 0..<D { rowIndex[s * D + d] = Int32(((g * subs + s) * 2 + (q[d] >= 0 ? 1 : 0)) * D + d) }
        }
    }

    public func kept(pick: Int) -> Int { exactCandidates ? LongHeadsAttention.exactCandidates(pick: pick) : pick }
}
