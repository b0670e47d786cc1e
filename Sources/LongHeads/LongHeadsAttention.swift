import CKernels
import Kernels
import Model
import Synchronization

/// LongHeads attention (Lu et al. 2024, arXiv 2402.10685; LONGHEADS.md): every query head attends only
/// to the chunks it selects — the first chunk, the previous and current chunks, and the best-scoring rest —
/// laid out contiguously at relative positions, so no head sees more than `attentionLength` tokens.
///
/// CPU design (LONGHEADS.md "The CPU trick"): keys are stored once with LOCAL RoPE (offset inside their
/// chunk); for slot s the query is rotated by p_s = (S-1-s)·w + (t mod w), which yields exactly the
/// paper's relative positions. The previous and current chunks live in RAM (a ring of two pages per
/// layer); older chunks live in a `ChunkArchive` and are paged in per block of new tokens: each selected
/// chunk is read once per block and layer, and partial softmax results are merged (log-sum-exp).
///
/// Below `beginSelective` every query selects all chunks 0...c, which is plain causal attention.
///
/// What the attention asks of a selection policy is `ChunkRanking` (built once from
/// `parameters.policy`); what it tells about its selections goes to `selections`; chunks it completes reach
/// the archive as `CompletedChunk`s, with their tokens and source bytes when they came through `ingest`.
public final class LongHeadsAttention: Attention {
    /// The parameters in force.
    public let parameters: LongHeadsParameters
    /// Model geometry.
    public let config: ModelConfig
    /// Page geometry shared with the archive.
    public let layout: PageLayout
    /// Where completed chunks go.
    public let archive: ChunkArchive
    /// Layout of the per-chunk summary (key features and bounds) handed to the archive.
    public let summary: ChunkSummaryLayout
    /// Chunks forced into every selective head's selection (`share`).
    public private(set) var sharedChunks: [Int] = []
    /// How candidate chunks are ranked: `parameters.policy`'s ranking.
    public let ranking: any ChunkRanking
    /// Where every layer's selections of every block are reported (citations, diagnostics).
    public let selections = SelectionRecorder()
    /// The source of the chunk `ingest` is running, handed to the archive with it.
    private var pendingSource: (chunk: Int, source: ChunkSource)?
    /// Position of the next token: after the archived chunks at first, then after the last block attended.
    public private(set) var position: Int

    private let pool: ThreadPool
    private let w: Int, H: Int, G: Int, D: Int, L: Int, group: Int
    private let maxSlots: Int
    private let scale: Float
    /// cos/sin per relative position 0..<ropePositions, [position][ropeDim/2][2].
    private let ropeTable: UnsafeMutablePointer<Float>
    private let ropePositions: Int
    private let ropeDim: Int
    /// The model's RoPE (its pairing); positions come from `ropeTable`.
    private let rope: RoPE
    /// Ring of two pages per layer: [layer][2][floatsPerPage]; slot c % 2 holds chunk c.
    private let ring: UnsafeMutablePointer<Float>
    private var ringChunk: [[Int]]
    /// Unrotated queries of the current chunk per layer: [layer][w][heads][headDim] (for its key features).
    private let chunkQ: UnsafeMutablePointer<Float>
    /// Local-RoPE keys of the current chunk, row-major: [layer][w][kvHeads][headDim].
    private let chunkK: UnsafeMutablePointer<Float>
    /// Summary of the chunk being completed (`ChunkSummaryLayout`).
    private let pendingFeatures: UnsafeMutablePointer<Float>
    /// Selection scratch: candidate chunks are scored in slabs of at most `slabChunks`, their summaries
    /// transposed to [row][headDim][chunk] so that eight chunks are scored per vector operation.
    private let slabChunks = 256
    private let slab: UnsafeMutablePointer<Float>
    /// Pointers to one layer's summary rows of the chunks of one slab (`ChunkArchive.featureRows`).
    private let slabRows: UnsafeMutablePointer<UnsafePointer<Float>>
    /// Chunks the archive held when this attention was made. Their summaries do not change while it lives
    /// (what it archives later, a question's chunks, may be dropped and archived anew), so their filled
    /// slabs can be kept (`slabCache`).
    private let frozenChunks: Int
    /// Filled slabs of frozen chunks, per (layer, first chunk): a decode step scores every candidate chunk
    /// in every layer, so without them each step (and each question of a session) transposes the same
    /// summaries again. Within `slabCacheLimitBytes`; slabs past it are filled per call as before.
    private var slabCache: [Int: (chunks: Int, stride: Int, floats: UnsafeMutablePointer<Float>)] = [:]
    /// Bytes of filled slabs kept now (`slabCacheLimitBytes`).
    public private(set) var slabCacheBytes = 0
    /// Most bytes of filled slabs kept (`slabCache`); 0 fills every slab per call. Scores are the same
    /// either way (the kept slab holds the floats a fill writes).
    public var slabCacheLimitBytes = 32 << 20
    /// Per scoring task: the slab rows its query reads ([subs][headDim]) and the scores of one slab.
    private let scoreRows: UnsafeMutablePointer<Int32>
    private let scoreOut: UnsafeMutablePointer<Float>
    /// Most scoring tasks at once (`score`: tasks per head × heads).
    private var maxScoreTasks: Int { H * max(1, (8 * pool.threads + H - 1) / H) }
    private let bestScore: UnsafeMutablePointer<Float>     // [w·heads][K-3], descending
    private let bestChunk: UnsafeMutablePointer<Int32>     // [w·heads][K-3]
    private let rotatedQ: UnsafeMutablePointer<Float>      // [w·heads][headDim] queries at the first selectable slot

    // Per-call scratch, sized for a block of `w` tokens.
    private let selection: UnsafeMutablePointer<Int32>     // [w][heads][maxSlots] chosen chunks, sorted
    private let selectionCount: UnsafeMutablePointer<Int32> // [w][heads]
    private let requests: UnsafeMutablePointer<UInt64>     // chunk << 40 | kvHead << 32 | token·heads+head << 8 | slot
    // Partial softmax of each archived (token·head, slot) read, merged in slot order afterwards so that
    // results do not depend on which thread read which chunk.
    private let partialState: UnsafeMutablePointer<lh_softmax_state> // [w·heads][maxSlots]
    private let partialAcc: UnsafeMutablePointer<Float>    // [w·heads][maxSlots][headDim]
    private let scratchQ: UnsafeMutablePointer<Float>      // [threads][w][headDim] rotated queries of one work item
    private let scratchAcc: UnsafeMutablePointer<Float>    // [threads][w][headDim]
    private let scratchState: UnsafeMutablePointer<lh_softmax_state> // [threads][w]
    private let scratchLimit: UnsafeMutablePointer<Int32>  // [threads][w]
    // Feature scratch per head: rotated queries [w][D], states [w], outputs [w][D].
    private let featQ: UnsafeMutablePointer<Float>
    private let featState: UnsafeMutablePointer<lh_softmax_state>
    private let featAcc: UnsafeMutablePointer<Float>

    /// A LongHeads attention over `archive`, continuing a document of `archive.chunkCount` complete chunks
    /// (their last chunk is loaded into the recent window; the next token is at `chunkCount · w`). Those
    /// chunks must stay as they are while the attention lives (their selection slabs are kept); chunks it
    /// archives later may be dropped and archived anew (`restore`).
    public init(config: ModelConfig, parameters: LongHeadsParameters, archive: ChunkArchive, pool: ThreadPool) throws {
        precondition(parameters.problem == nil, parameters.problem ?? "")
        self.config = config
        self.parameters = parameters
        self.archive = archive
        self.pool = pool
        (w, H, G, D, L) = (parameters.chunkSize, config.heads, config.kvHeads, config.headDim, config.layers)
        group = H / G
        layout = PageLayout(kvHeads: G, headDim: D, chunkSize: w)
        summary = ChunkSummaryLayout(layers: L, heads: H, kvHeads: G, headDim: D, chunkSize: w, contents: parameters.summary)
        maxSlots = max(parameters.chunksPerQuery, (parameters.beginSelective + w - 1) / w + 1)
        scale = 1 / Float(D).squareRoot()
        ropeDim = config.ropeDim
        ropePositions = maxSlots * w
        ropeTable = .allocate(capacity: ropePositions * ropeDim)
        rope = RoPE(config: config)
        for p in 0..<ropePositions { rope.fillTable(position: p, ropeTable + p * ropeDim) }
        let page = layout.floatsPerPage
        ring = .allocate(capacity: L * 2 * page)
        ring.initialize(repeating: 0, count: L * 2 * page)
        ringChunk = Array(repeating: [-1, -1], count: L)
        chunkQ = .allocate(capacity: L * w * H * D)
        chunkK = .allocate(capacity: L * w * G * D)
        pendingFeatures = .allocate(capacity: summary.floatsPerChunk)
        slab = .allocate(capacity: max(H, 2 * G * summary.subs) * D * slabChunks)
        ranking = parameters.policy.ranking(summary)
        let pick = max(1, parameters.chunksPerQuery - 3)
        let kept = ranking.kept(pick: pick)
        bestScore = .allocate(capacity: w * H * max(1, kept))
        bestChunk = .allocate(capacity: w * H * max(1, kept))
        rotatedQ = .allocate(capacity: w * H * D)
        slabRows = .allocate(capacity: slabChunks)
        let tasks = config.heads * max(1, (8 * pool.threads + config.heads - 1) / config.heads)
        scoreRows = .allocate(capacity: tasks * summary.subs * config.headDim)
        scoreOut = .allocate(capacity: tasks * slabChunks)
        selection = .allocate(capacity: w * H * maxSlots)
        selectionCount = .allocate(capacity: w * H)
        requests = .allocate(capacity: w * H * maxSlots)
        let T = pool.threads
        partialState = .allocate(capacity: w * H * maxSlots)
        partialAcc = .allocate(capacity: w * H * maxSlots * D)
        scratchQ = .allocate(capacity: T * w * D)
        scratchAcc = .allocate(capacity: T * w * D)
        scratchState = .allocate(capacity: T * w)
        scratchLimit = .allocate(capacity: T * w)
        featQ = .allocate(capacity: H * w * D)
        featState = .allocate(capacity: H * w)
        featAcc = .allocate(capacity: H * w * D)
        // Continue after the archived chunks: the last one is the "previous chunk" of the next token.
        let n = archive.chunkCount
        position = n * w
        frozenChunks = n
        if n > 0 {
            for l in 0..<L {
                let dst = ringPage(layer: l, chunk: n - 1)
                try archive.withPage(chunk: n - 1, layer: l) { src in dst.update(from: src, count: page) }
                ringChunk[l][(n - 1) % 2] = n - 1
            }
        }
    }

    deinit {
        for p in [ropeTable, ring, chunkQ, chunkK, pendingFeatures, partialAcc, scratchQ, scratchAcc, featQ, featAcc, slab, bestScore, rotatedQ] {
            p.deallocate()
        }
        bestChunk.deallocate()
        slabRows.deallocate()
        for entry in slabCache.values { entry.floats.deallocate() }
        scoreRows.deallocate()
        scoreOut.deallocate()
        selection.deallocate(); selectionCount.deallocate(); requests.deallocate()
        partialState.deallocate(); featState.deallocate()
        scratchState.deallocate(); scratchLimit.deallocate()
    }

    /// Forces `chunks` into every selective head's selection from the next token on, in this order, replacing
    /// its lowest-ranked picks (at most K-3; chunks outside 1...c-2 are skipped: chunk 0, the previous and the
    /// current chunk are kept anyway); `[]` ends it. Used for the chunks retrieved for a question under
    /// `quest-lexical` (`LexicalRetrieval`), and by diagnosis for the needle's chunks, to measure what the
    /// model reaches when selection is perfect (the "oracle" of `bench niah`).
    public func share(_ chunks: [Int]) { sharedChunks = chunks }

    /// Runs one whole chunk of a document, `source.tokens` at positions `start ..< start + chunkSize` (`start`
    /// a chunk boundary), through `model`, and archives it with `source`: the archive gets the chunk's token
    /// ids and source bytes with its pages (`CompletedChunk`). Chunks completed through a plain
    /// `model.forward` reach the archive without a source.
    public func ingest(chunk source: ChunkSource, at start: Int, model: LlamaModel) throws {
        precondition(source.tokens.count == w && start % w == 0, "ingest takes one whole chunk at a chunk boundary")
        pendingSource = (start / w, source)
        defer { pendingSource = nil }
        _ = try model.forward(source.tokens[...], start: start, attention: self, logits: .none)
    }

    private func ringPage(layer: Int, chunk: Int) -> UnsafeMutablePointer<Float> {
        ring + (layer * 2 + chunk % 2) * layout.floatsPerPage
    }

    /// Rotates `src` (one head) by relative position `p` into `dst`.
    @inline(__always)
    private func rotate(_ src: UnsafePointer<Float>, by p: Int, into dst: UnsafeMutablePointer<Float>) {
        rope.rotate(src, table: ropeTable + p * ropeDim, into: dst)
    }

    public func attend(layer: Int, start: Int, count: Int,
                       q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                       out: UnsafeMutablePointer<Float>) throws {
        precondition(count <= w, "LongHeads takes blocks of at most one chunk (\(w) tokens), got \(count)")
        position = start + count
        // A block may straddle one chunk boundary: handle each chunk's segment in order.
        var i0 = 0
        while i0 < count {
            let p0 = start + i0
            let i1 = min(count, i0 + (w - p0 % w))
            try attendSegment(layer: layer, p0: p0, n: i1 - i0, q: q + i0 * H * D, k: k + i0 * G * D, v: v + i0 * G * D, out: out + i0 * H * D)
            i0 = i1
        }
    }

    /// Tokens at positions p0..<p0+n, all inside chunk c = p0 / w.
    private func attendSegment(layer l: Int, p0: Int, n: Int, q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>,
                               v: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) throws {
        let c = p0 / w
        let o0 = p0 % w
        precondition(c >= archive.chunkCount, "position \(p0) is inside an archived chunk")
        if o0 == 0 { ringChunk[l][c % 2] = c }
        precondition(ringChunk[l][c % 2] == c, "tokens must arrive in order")
        let page = ringPage(layer: l, chunk: c)

        // 1. Keep the new tokens: keys with local RoPE (tiled and row-major), values, unrotated queries.
        for i in 0..<n {
            let o = o0 + i
            (chunkQ + ((l * w + o) * H) * D).update(from: q + i * H * D, count: H * D)
            for g in 0..<G {
                let kr = chunkK + ((l * w + o) * G + g) * D
                rotate(k + (i * G + g) * D, by: o, into: kr)
                lh_store_key_tiled(page + layout.keys(g), Int32(D), Int32(o), kr)
                (page + layout.values(g) + o * D).update(from: v + (i * G + g) * D, count: D)
            }
        }

        // 2. Selection per (token, head): sorted chunk lists.
        try select(layer: l, p0: p0, n: n, q: q)

        // 3. Every selected (chunk, KV head): all queries that chose it — across the block's tokens and the
        //    heads sharing that KV head — rotated to their slot positions and run in one kernel call, so each
        //    chunk is read once per block and each key tile serves many queries. One partial softmax per
        //    (token·head, slot); archived chunks come from the archive, c-1 and c from the RAM ring.
        let pairs = n * H
        var nreq = 0
        for pair in 0..<pairs {
            let g = (pair % H) / group
            let cnt = Int(selectionCount[pair])
            for s in 0..<cnt {
                let j = UInt64(selection[pair * maxSlots + s])
                requests[nreq] = j << 40 | UInt64(g) << 32 | UInt64(pair) << 8 | UInt64(s)
                nreq += 1
            }
        }
        var reqs = UnsafeMutableBufferPointer(start: requests, count: nreq)
        reqs.sort()
        // Work items: runs of one (chunk, KV head), cut into pieces of at most `piece` queries.
        let piece = w
        var items = [(Int, Int)]()
        items.reserveCapacity(64)
        var r = 0
        while r < nreq {
            let key = reqs[r] >> 32
            var e = r
            while e < nreq && reqs[e] >> 32 == key { e += 1 }
            var x = r
            while x < e { items.append((x, min(e, x + piece))); x += piece }
            r = e
        }
        let failure = Mutex<Error?>(nil)
        let prevPage = c >= 1 ? ringPage(layer: l, chunk: c - 1) : nil
        items.withUnsafeBufferPointer { ib in
            pool.runWithThread(tasks: ib.count) { task, thread in
                let (lo, hi) = ib[task]
                let chunk = Int(reqs[lo] >> 40), g = Int((reqs[lo] >> 32) & 0xFF)
                let m = hi - lo
                let qs = self.scratchQ + thread * self.w * self.D
                let st = self.scratchState + thread * self.w
                let lim = self.scratchLimit + thread * self.w
                for x in 0..<m {
                    let pair = Int((reqs[lo + x] >> 8) & 0xFFFFFF), s = Int(reqs[lo + x] & 0xFF)
                    let o = o0 + pair / self.H
                    let S = Int(self.selectionCount[pair])
                    self.rotate(q + pair * self.D, by: (S - 1 - s) * self.w + o, into: qs + x * self.D)
                    st[x] = lh_softmax_state(m: -.infinity, l: 0)
                    lim[x] = Int32(chunk == c ? o + 1 : self.w)  // causal inside the current chunk
                    (self.partialAcc + (pair * self.maxSlots + s) * self.D).update(repeating: 0, count: self.D)
                }
                func runKernel(_ kernel: (UnsafeMutablePointer<Float>) -> Void) {
                    // Outputs go straight to each request's partial slot: rows are not evenly strided, so
                    // the kernel writes a scratch block that is copied out.
                    let acc = self.scratchAcc + thread * self.w * self.D
                    acc.update(repeating: 0, count: m * self.D)
                    kernel(acc)
                    for x in 0..<m {
                        let slot = Int((reqs[lo + x] >> 8) & 0xFFFFFF) * self.maxSlots + Int(reqs[lo + x] & 0xFF)
                        self.partialState[slot] = st[x]
                        (self.partialAcc + slot * self.D).update(from: acc + x * self.D, count: self.D)
                    }
                }
                func run(_ pg: UnsafePointer<Float>) {
                    runKernel { acc in
                        lh_attn_update(qs, Int32(self.D), Int32(m), Int32(self.D), pg + self.layout.keys(g), pg + self.layout.values(g),
                                       Int32(self.D), Int32(self.w), lim, self.scale, st, acc, Int32(self.D))
                    }
                }
                if chunk == c {
                    run(page)
                } else if chunk == c - 1, let prevPage {
                    run(prevPage)
                } else {
                    do {
                        try self.archive.withStoredPage(chunk: chunk, layer: l) { stored in
                            switch stored {
                            case .floats(let pg): run(pg)
                            case .kivi(var kp):
                                // q8/q4 pages: dequantized tile by tile inside the kernel (issue 13), the same
                                // bits as decoding the page first.
                                precondition(Int(kp.kvHeads) == self.G && Int(kp.chunk) == self.w, "archive page geometry differs from the model's")
                                runKernel { acc in
                                    lh_attn_update_kivi(qs, Int32(self.D), Int32(m), Int32(self.D), &kp, Int32(g), Int32(self.w), lim,
                                                        self.scale, st, acc, Int32(self.D))
                                }
                            }
                        }
                    } catch {
                        failure.withLock { if $0 == nil { $0 = error } }
                    }
                }
            }
        }
        if let e = failure.withLock({ $0 }) { throw e }

        // 4. Merge each query's partials in slot order and normalize.
        let tasks = min(pairs, pool.threads * 8)
        pool.run(tasks: tasks) { task in
            var pair = task
            while pair < pairs {
                let S = Int(self.selectionCount[pair])
                var st = lh_softmax_state(m: -.infinity, l: 0)
                let acc = out + pair * self.D
                acc.update(repeating: 0, count: self.D)
                for s in 0..<S {
                    let part = self.partialState[pair * self.maxSlots + s]
                    guard part.l > 0 else { continue }
                    let pacc = self.partialAcc + (pair * self.maxSlots + s) * self.D
                    let mx = max(st.m, part.m)
                    let a = st.l > 0 ? expf(st.m - mx) : 0, b = expf(part.m - mx)
                    for d in 0..<self.D { acc[d] = acc[d] * a + pacc[d] * b }
                    st = lh_softmax_state(m: mx, l: st.l * a + part.l * b)
                }
                let inv = 1 / st.l
                for d in 0..<self.D { acc[d] *= inv }
                pair += tasks
            }
        }

        // 5. A completed chunk: key features for this layer; after the last layer, archive it.
        if (p0 + n) % w == 0 {
            computeFeatures(layer: l, page: page)
            if l == L - 1 {
                let pages = (0..<L).map { UnsafeBufferPointer(start: ringPage(layer: $0, chunk: c), count: layout.floatsPerPage) }
                let source = pendingSource.flatMap { $0.chunk == c ? $0.source : nil }
                try archive.append(CompletedChunk(index: c, pages: pages, features: UnsafeBufferPointer(start: pendingFeatures, count: summary.floatsPerChunk),
                                                  source: source))
                // Keep the chunk in the ring as the archive stores it (f16, q8 or q4 on disk), not as computed:
                // an attention built over the archive later (a resumed ingest, `ask`) loads exactly this, so
                // an interrupted and resumed ingest continues exactly as an uninterrupted one.
                for layer in 0..<L {
                    let dst = ringPage(layer: layer, chunk: c)
                    try archive.withPage(chunk: c, layer: layer) { src in dst.update(from: src, count: layout.floatsPerPage) }
                }
            }
        }
    }

    /// Fills `selection`/`selectionCount` for the segment's tokens (LONGHEADS.md "Selection"): below
    /// `beginSelective` all chunks 0...c; past it chunk 0, the previous and the current chunk always, and the
    /// K-3 best of chunks 1...c-2 under the policy, sorted.
    private func select(layer l: Int, p0: Int, n: Int, q: UnsafeMutablePointer<Float>) throws {
        let c = p0 / w
        let K = parameters.chunksPerQuery
        let pick = K - 3
        let selectiveFrom = max(0, min(n, parameters.beginSelective - p0))  // first selective token index
        for i in 0..<selectiveFrom {
            for h in 0..<H {
                let pair = i * H + h
                for s in 0...c { selection[pair * maxSlots + s] = Int32(s) }
                selectionCount[pair] = Int32(c + 1)
            }
        }
        if selectiveFrom < n {
            precondition(c >= 3 && c - 2 >= pick)
            let first = selectiveFrom * H, pairs = n * H
            if pick > 0 {
                // The ranking may keep more candidates than it picks (quest-exact): exact logits pick among them.
                let kept = min(c - 2, ranking.kept(pick: pick))
                bestScore.initialize(repeating: -.infinity, count: pairs * kept)
                bestChunk.initialize(repeating: Int32.max, count: pairs * kept)
                try score(layer: l, p0: p0, n: n, from: selectiveFrom, candidates: c - 2, pick: kept, q: q)
                if kept > pick { try rescoreExactly(layer: l, first: first, pairs: pairs, kept: kept, pick: pick) }
            }
            for pair in first..<pairs {
                let sel = selection + pair * maxSlots
                sel[0] = 0
                for b in 0..<pick { sel[1 + b] = bestChunk[pair * pick + b] }
                if !sharedChunks.isEmpty, pick > 0 {
                    // Force the shared chunks in, replacing the lowest-ranked picks.
                    var b = pick - 1
                    for j in sharedChunks where j >= 1 && j <= c - 2 && b >= 0 {
                        if !(0..<pick).contains(where: { sel[1 + $0] == Int32(j) }) { sel[1 + b] = Int32(j); b -= 1 }
                    }
                }
                var chosen = UnsafeMutableBufferPointer(start: sel + 1, count: pick)
                chosen.sort()
                sel[pick + 1] = Int32(c - 1)
                sel[pick + 2] = Int32(c)
                selectionCount[pair] = Int32(pick + 3)
            }
        }
        selections.record(SelectionRecord(layer: l, positions: p0..<(p0 + n), heads: H, maxSlots: maxSlots,
                                          slots: selection, counts: selectionCount))
    }

    /// Candidates per query head that `quest-exact` rescoring reads.
    public static func exactCandidates(pick: Int) -> Int { 8 * pick }

    /// quest-exact, stage 2: each pair's `kept` candidates (`bestChunk`, stride `kept`) ranked by their
    /// largest exact logit max_t q'·k_t over the chunk's keys (q' the rotated query of `score`); the best
    /// `pick` go to `bestChunk` at stride `pick`. Each candidate chunk's page is read once per call.
    private func rescoreExactly(layer l: Int, first: Int, pairs: Int, kept: Int, pick: Int) throws {
        var users: [Int32: [Int32]] = [:]  // chunk → indices pair·kept + b that hold it
        for pair in first..<pairs {
            for b in 0..<kept where bestChunk[pair * kept + b] != Int32.max {
                users[bestChunk[pair * kept + b], default: []].append(Int32(pair * kept + b))
            }
        }
        let chunks = Array(users.keys)
        let exact = UnsafeMutablePointer<Float>.allocate(capacity: pairs * kept)
        defer { exact.deallocate() }
        exact.initialize(repeating: -.infinity, count: pairs * kept)
        let rows = (0..<D).map { Int32($0) }
        let failure = Mutex<Error?>(nil)
        pool.run(tasks: chunks.count) { u in
            let chunk = chunks[u]
            do {
                try self.archive.withPage(chunk: Int(chunk), layer: l) { page in
                    var out = [Float](repeating: 0, count: 16)
                    for slot in users[chunk]! {
                        let pair = Int(slot) / kept, h = pair % self.H, g = h / self.group
                        let qh = UnsafePointer(self.rotatedQ + pair * self.D)
                        let keys = page + self.layout.keys(g)
                        var best = -Float.infinity
                        for tile in 0..<(self.w / 16) {
                            lh_chunk_scores(qh, Int32(self.D), keys + tile * 16 * self.D, 16, rows, 1, 16, &out)
                            for v in out { best = max(best, v) }
                        }
                        exact[Int(slot)] = best
                    }
                }
            } catch {
                failure.withLock { $0 = $0 ?? error }
            }
        }
        if let e = failure.withLock({ $0 }) { throw e }
        var cand = [(Float, Int32)](repeating: (0, 0), count: kept)
        for pair in first..<pairs {
            for b in 0..<kept { cand[b] = (exact[pair * kept + b], bestChunk[pair * kept + b]) }
            cand.sort { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
            for b in 0..<pick { bestChunk[pair * pick + b] = cand[b].1 }
        }
    }

    /// Scores chunks 1...candidates for the selective tokens `from..<n` of the segment and keeps each
    /// (token, head)'s `pick` best in `bestScore`/`bestChunk` (descending; ties keep the earlier chunk).
    ///
    /// Candidates are read in slabs of at most `slabChunks` chunks, so the scratch does not grow with the
    /// document. Each slab's rows of this layer are transposed to `[row][headDim][chunk]` (`ranking.fill`);
    /// a task (one head, a range of tokens) then scores eight chunks per vector step over the rows its query
    /// reads (`ranking.rows`), adding channels in order — the same sums as the plain references
    /// (`questBound`, a channel-ordered dot for the paper's rule).
    private func score(layer l: Int, p0: Int, n: Int, from: Int, candidates: Int, pick: Int, q: UnsafeMutablePointer<Float>) throws {
        let (H, D) = (self.H, self.D)
        let ranking = self.ranking
        let subs = ranking.subs
        let rowsPerChunk = ranking.rowsPerChunk
        let stride = (min(slabChunks, candidates) + 7) / 8 * 8
        // Queries: unrotated for the paper; for Quest rotated to the first selectable slot, (K-2)·w + t mod w.
        let qs: UnsafePointer<Float>
        if !ranking.rotatesQuery {
            qs = UnsafePointer(q)
        } else {
            let p = (parameters.chunksPerQuery - 2) * w
            for i in from..<n {
                for h in 0..<H { rotate(q + (i * H + h) * D, by: p + (p0 + i) % w, into: rotatedQ + (i * H + h) * D) }
            }
            qs = UnsafePointer(rotatedQ)
        }
        let tokens = n - from
        let parts = max(1, min((tokens + 15) / 16, (8 * pool.threads + H - 1) / H))  // tasks per head
        precondition(H * parts <= maxScoreTasks)
        var j0 = 1
        while j0 <= candidates {
            let m = min(slabChunks, candidates - j0 + 1)
            let m8 = (m + 7) / 8 * 8
            let key = l * (1 << 32) + j0
            let rows: UnsafePointer<Float>
            if j0 + m <= frozenChunks, let kept = slabCache[key], kept.chunks == m, kept.stride == stride {
                rows = UnsafePointer(kept.floats)
            } else {
                // Transpose this layer's rows of chunks j0..<j0+m into the slab: slab[row][d][x].
                try archive.featureRows(layer: l, chunks: j0..<(j0 + m), rowFloats: summary.floatsPerLayer, into: slabRows)
                for x in 0..<m {
                    // Layer l's part of the summary: key features, then bounds.
                    ranking.fill(slab: slab, stride: stride, column: x, summary: slabRows[x], layer: l)
                }
                for r in 0..<rowsPerChunk { for d in 0..<D { for x in m..<m8 { slab[(r * D + d) * stride + x] = 0 } } }
                rows = UnsafePointer(slab)
                keepSlab(key: key, chunks: m, stride: stride, floats: rowsPerChunk * D * stride, frozen: j0 + m <= frozenChunks)
            }
            pool.run(tasks: H * parts) { task in
                let h = task / parts, part = task % parts
                for i in (from + part * tokens / parts)..<(from + (part + 1) * tokens / parts) {
                    let pair = i * H + h
                    let qh = qs + pair * D
                    let bs = self.bestScore + pair * pick, bc = self.bestChunk + pair * pick
                    // Per sub-chunk and dimension, the slab row this query reads.
                    let rowIndex = self.scoreRows + task * subs * D, scores = self.scoreOut + task * stride
                    ranking.rows(head: h, query: qh, into: rowIndex)
                    lh_chunk_scores(qh, Int32(D), rows, Int32(stride), rowIndex, Int32(subs), Int32(m), scores)
                    for x in 0..<m {
                        let sc = scores[x]
                        guard sc > bs[pick - 1] else { continue }
                        var b = pick - 1
                        while b > 0 && sc > bs[b - 1] { bs[b] = bs[b - 1]; bc[b] = bc[b - 1]; b -= 1 }
                        bs[b] = sc
                        bc[b] = Int32(j0 + x)
                    }
                }
            }
            j0 += m
        }
    }

    /// Keeps a copy of the slab just filled (`floats` floats: chunks j0..<j0+`chunks` of one layer, at
    /// `stride`) under `key` when its chunks are `frozen` and it fits `slabCacheLimitBytes`, replacing a slab
    /// of the same key filled for another chunk count or stride.
    private func keepSlab(key: Int, chunks: Int, stride: Int, floats: Int, frozen: Bool) {
        guard frozen else { return }
        if let old = slabCache.removeValue(forKey: key) {
            slabCacheBytes -= ranking.rowsPerChunk * D * old.stride * MemoryLayout<Float>.stride
            old.floats.deallocate()
        }
        let bytes = floats * MemoryLayout<Float>.stride
        guard slabCacheBytes + bytes <= slabCacheLimitBytes else { return }
        let copy = UnsafeMutablePointer<Float>.allocate(capacity: floats)
        copy.initialize(from: slab, count: floats)
        slabCache[key] = (chunks, stride, copy)
        slabCacheBytes += bytes
    }

    /// Key features of the chunk in `page` for every head of layer `l` (LONGHEADS.md "Per-chunk
    /// representation"): local-RoPE q/k, full attention inside the chunk, mean output = value feature,
    /// then the value feature as a single query over the keys with the keys as values = key feature.
    private func computeFeatures(layer l: Int, page: UnsafeMutablePointer<Float>) {
        // A `bounds` summary keeps no key features: skip their intra-chunk attention.
        if summary.keyFeatureFloatsPerLayer > 0 { computeKeyFeatures(layer: l, page: page) }
        // Quest bounds of the local-RoPE keys (row-major copy of this layer's chunk keys).
        summary.writeBounds(keys: chunkK + l * w * G * D, into: pendingFeatures + summary.bounds(layer: l))
    }

    private func computeKeyFeatures(layer l: Int, page: UnsafeMutablePointer<Float>) {
        pool.run(tasks: H) { h in
            let g = h / self.group
            let qs = self.featQ + h * self.w * self.D
            let st = self.featState + h * self.w
            let acc = self.featAcc + h * self.w * self.D
            for o in 0..<self.w {
                self.rotate(self.chunkQ + ((l * self.w + o) * self.H + h) * self.D, by: o, into: qs + o * self.D)
                st[o] = lh_softmax_state(m: -.infinity, l: 0)
            }
            acc.update(repeating: 0, count: self.w * self.D)
            lh_attn_update(qs, Int32(self.D), Int32(self.w), Int32(self.D), page + self.layout.keys(g), page + self.layout.values(g),
                           Int32(self.D), Int32(self.w), nil, self.scale, st, acc, Int32(self.D))
            // Value feature: mean of the normalized outputs (reuse row 0 of qs as scratch).
            let vf = qs
            vf.update(repeating: 0, count: self.D)
            for o in 0..<self.w {
                let inv = 1 / (st[o].l * Float(self.w))
                for d in 0..<self.D { vf[d] += acc[o * self.D + d] * inv }
            }
            // Key feature: vf attends over the local-RoPE keys, with the keys as values.
            var s1 = lh_softmax_state(m: -.infinity, l: 0)
            let kf = self.pendingFeatures + self.summary.keyFeatures(layer: l) + h * self.D
            kf.update(repeating: 0, count: self.D)
            lh_attn_update(vf, Int32(self.D), 1, Int32(self.D), page + self.layout.keys(g), self.chunkK + (l * self.w * self.G + g) * self.D,
                           Int32(self.G * self.D), Int32(self.w), nil, self.scale, &s1, kf, Int32(self.D))
            for d in 0..<self.D { kf[d] /= s1.l }
        }
    }
}

extension LongHeadsAttention {
    /// What a `LongHeadsAttention` holds of the tokens it has run past its archive: the recent window (the
    /// ring's two pages per layer: the previous chunk and the partial current one), which chunk each ring slot
    /// holds, the current chunk's unrotated queries and local-RoPE keys (its key features and bounds are
    /// computed from them when it completes), the shared chunks and the next position.
    ///
    /// `DocumentSession` takes one after a store's tail (the tokens after its last complete chunk) and restores
    /// it before every question, instead of running the tail through the model again: a restored attention
    /// holds the same bits as one that ran the tail, so the question's logits are the same bit for bit
    /// (`LongHeadsSnapshotTests`). Buffers are allocated once, when the snapshot is taken.
    public final class Snapshot {
        /// Position of the next token.
        public let position: Int
        /// Complete chunks the archive held when the snapshot was taken.
        public let archivedChunks: Int
        /// The parameters of the attention it was taken from.
        public let parameters: LongHeadsParameters
        let shape: [Int]
        let sharedChunks: [Int]
        let ringChunk: [[Int]]
        /// Current-chunk rows kept per layer (the tokens of the partial chunk).
        let rows: Int
        let ring: UnsafeMutableBufferPointer<Float>
        let chunkQ: UnsafeMutableBufferPointer<Float>
        let chunkK: UnsafeMutableBufferPointer<Float>

        init(of a: LongHeadsAttention) {
            position = a.position
            archivedChunks = a.archive.chunkCount
            parameters = a.parameters
            shape = a.shape
            sharedChunks = a.sharedChunks
            ringChunk = a.ringChunk
            // A chunk completed at `position` is in the ring (and archived); the next token starts a new one.
            rows = a.position % a.w
            ring = .allocate(capacity: a.L * 2 * a.layout.floatsPerPage)
            _ = ring.initialize(from: UnsafeBufferPointer(start: a.ring, count: ring.count))
            chunkQ = .allocate(capacity: a.L * rows * a.H * a.D)
            chunkK = .allocate(capacity: a.L * rows * a.G * a.D)
            for l in 0..<a.L {
                chunkQ.baseAddress!.advanced(by: l * rows * a.H * a.D).initialize(from: a.chunkQ + l * a.w * a.H * a.D, count: rows * a.H * a.D)
                chunkK.baseAddress!.advanced(by: l * rows * a.G * a.D).initialize(from: a.chunkK + l * a.w * a.G * a.D, count: rows * a.G * a.D)
            }
        }

        deinit {
            ring.deallocate()
            chunkQ.deallocate()
            chunkK.deallocate()
        }
    }

    /// Geometry a snapshot must match to be restored: layers, chunk size, heads, KV heads, head width.
    private var shape: [Int] { [L, w, H, G, D] }

    /// The state after the tokens run so far (`Snapshot`), to `restore` later instead of running them again.
    /// Take it between forward passes (not inside one).
    public func snapshot() -> Snapshot { Snapshot(of: self) }

    /// Puts this attention back in the state of `snapshot`, taken from this attention or from one of the
    /// same model and parameters over the same archive. The archive must hold exactly the chunks it held
    /// then: chunks completed since (by a question or an answer) must have been dropped first
    /// (`StoreArchive.discardSessionChunks`). Selection observers are kept; shared chunks are the snapshot's.
    public func restore(_ snapshot: Snapshot) {
        precondition(snapshot.shape == shape && snapshot.parameters == parameters, "a snapshot of another model or parameters")
        precondition(archive.chunkCount == snapshot.archivedChunks,
                     "the archive holds \(archive.chunkCount) chunks, the snapshot was taken over \(snapshot.archivedChunks)")
        precondition(snapshot.archivedChunks >= frozenChunks, "the snapshot is older than the chunks this attention was made over")
        position = snapshot.position
        sharedChunks = snapshot.sharedChunks
        ringChunk = snapshot.ringChunk
        ring.update(from: snapshot.ring.baseAddress!, count: snapshot.ring.count)
        let rows = snapshot.rows
        for l in 0..<L {
            (chunkQ + l * w * H * D).update(from: snapshot.chunkQ.baseAddress! + l * rows * H * D, count: rows * H * D)
            (chunkK + l * w * G * D).update(from: snapshot.chunkK.baseAddress! + l * rows * G * D, count: rows * G * D)
        }
    }
}

/// How a selection policy ranks the candidate chunks 1...c-2, as `LongHeadsAttention`'s scoring uses it
/// (one conformance per policy: `SelectionPolicy.ranking`, Ranking.swift). A chunk's score for a query is
/// Σ over channels of q_d times one row of the chunk's summary, chosen per channel (and per sub-chunk, the
/// largest sub-chunk score winning); the attention does the arithmetic in its vector kernel, the ranking
/// says which summary rows there are and which a query reads.
public protocol ChunkRanking: Sendable {
    /// Whether the query is rotated to the first selectable slot, position (K-2)·w + t mod w (Quest), or
    /// scored without RoPE (the paper's key features).
    var rotatesQuery: Bool { get }
    /// Sub-chunks scored per chunk, max-pooled.
    var subs: Int { get }
    /// Rows per chunk in the slab.
    var rowsPerChunk: Int { get }
    /// Writes one chunk's rows into column `x` of a slab laid out `[row][headDim][stride]`, from `row`, the
    /// chunk's summary part of layer `layer` (`ChunkSummaryLayout.keyFeatures(layer:)` onwards).
    func fill(slab: UnsafeMutablePointer<Float>, stride: Int, column x: Int, summary row: UnsafePointer<Float>, layer: Int)
    /// The slab row query head `head` reads for each sub-chunk s and channel d, at `rowIndex[s · headDim + d]`,
    /// given the (rotated or not) query `query`.
    func rows(head: Int, query: UnsafePointer<Float>, into rowIndex: UnsafeMutablePointer<Int32>)
    /// Candidates kept by the scores when a head picks `pick` chunks; more than `pick` asks the attention to
    /// rank the kept ones by their exact logits (quest-exact).
    func kept(pick: Int) -> Int
}

#if canImport(Glibc)
import Glibc
#endif
