import CKernels
import Kernels

/// Attention for one shared prefix and several independent sequences packed into one batch: every
/// packed token sees the prefix and the earlier tokens of its own segment, nothing of the other
/// segments (a block mask). Each segment's positions start at `prefixCount`, so a segment computes
/// exactly what it would as the only continuation of the prefix in a `DenseAttention` cache.
///
/// Use: `extendPrefix()` then forward the prefix (in as many calls as needed, each continuing at
/// `prefixCount`); then, per batch, `pack(shared:segments:)` with the token counts of the segments in
/// the order their tokens are concatenated, and forward all of them in one call. A batch may start with
/// `shared` tokens that every segment continues (the start its sequences have in common, computed once):
/// they extend the prefix for this batch only. A packed batch leaves the prefix unchanged.
///
/// Bit-identical to `DenseAttention` (tested): the online-softmax kernel folds keys in tiles of 16
/// (lh_attention.h), so each segment gets its own tile-aligned key region that starts with a copy of
/// the prefix's last, partial tile; a query then reads the prefix's full tiles and its region, the
/// same tiles in the same order as one dense call over `[0, position]`.
public final class PackedAttention: Attention {
    /// Geometry of the model this cache serves.
    public let config: ModelConfig
    /// Most prefix tokens.
    public let prefixCapacity: Int
    /// Tokens of the shared prefix held.
    public private(set) var prefixCount = 0

    private enum Mode { case prefix, packed }
    private var mode = Mode.prefix
    private let rope: RoPE
    private let pool: ThreadPool
    private let tiledPrefix: Int
    private let prefixKeys: UnsafeMutablePointer<Float>    // [layers, kvHeads, tiledPrefix/16, headDim, 16], RoPE applied
    private let prefixValues: UnsafeMutablePointer<Float>  // [layers, kvHeads, prefixCapacity, headDim]
    // Segment regions, per layer and KV head: region s starts at `regionStart[s]` (a multiple of 16),
    // holds the prefix's last partial tile (`prefixCount % 16` keys), then the segment's tokens.
    private var regionKeys: UnsafeMutablePointer<Float>    // [layers, kvHeads, regionCapacity/16, headDim, 16]
    private var regionValues: UnsafeMutablePointer<Float>  // [layers, kvHeads, regionCapacity, headDim]
    private var regionCapacity = 0
    private var segmentOf: [Int32] = []       // packed token -> its segment
    private var segmentStart: [Int] = []      // first packed token of each segment
    private var regionStart: [Int] = []
    private var packedCount = 0
    private var shared = 0
    private let ropeTable: UnsafeMutablePointer<Float>
    private var states: UnsafeMutablePointer<lh_softmax_state>
    private var statesCapacity: Int

    /// A cache for a prefix of up to `prefixCapacity` tokens of a model with `config`.
    public init(config: ModelConfig, prefixCapacity: Int, pool: ThreadPool) {
        self.config = config
        self.prefixCapacity = prefixCapacity
        self.pool = pool
        rope = RoPE(config: config)
        tiledPrefix = (prefixCapacity + 15) / 16 * 16
        let (L, G, D) = (config.layers, config.kvHeads, config.headDim)
        prefixKeys = .allocate(capacity: L * G * tiledPrefix * D)
        prefixValues = .allocate(capacity: L * G * prefixCapacity * D)
        regionKeys = .allocate(capacity: 0)
        regionValues = .allocate(capacity: 0)
        ropeTable = .allocate(capacity: config.ropeDim)
        statesCapacity = 64 * config.heads
        states = .allocate(capacity: statesCapacity)
    }

    deinit {
        for p in [prefixKeys, prefixValues, regionKeys, regionValues, ropeTable] { p.deallocate() }
        states.deallocate()
    }

    /// The next forward calls append their tokens to the prefix (one causal sequence at `prefixCount`).
    public func extendPrefix() {
        mode = .prefix
    }

    /// The next forward call holds `shared` tokens continuing the prefix, then independent segments of
    /// these token counts (each ≥ 1) that all continue the shared tokens, concatenated in this order:
    /// shared token i is at position `prefixCount + i`, segment s's token i at `prefixCount + shared + i`.
    public func pack(shared: Int = 0, segments: [Int]) {
        precondition(!segments.isEmpty && segments.allSatisfy { $0 > 0 }, "pack: segments must be non-empty")
        precondition(shared >= 0 && prefixCount + shared <= prefixCapacity, "pack: \(shared) shared tokens overflow the prefix")
        mode = .packed
        self.shared = shared
        let partial = (prefixCount + shared) % 16
        segmentStart = []
        regionStart = []
        segmentOf = [Int32](repeating: -1, count: shared)
        var token = shared, region = 0
        for (s, n) in segments.enumerated() {
            segmentStart.append(token)
            regionStart.append(region)
            segmentOf += repeatElement(Int32(s), count: n)
            token += n
            region += (partial + n + 15) / 16 * 16
        }
        packedCount = token
        if region > regionCapacity {
            regionKeys.deallocate()
            regionValues.deallocate()
            let (L, G, D) = (config.layers, config.kvHeads, config.headDim)
            regionCapacity = region
            regionKeys = .allocate(capacity: L * G * region * D)
            regionValues = .allocate(capacity: L * G * region * D)
        }
    }

    public func attend(layer: Int, start: Int, count: Int,
                       q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                       out: UnsafeMutablePointer<Float>) {
        let (H, G, D) = (config.heads, config.kvHeads, config.headDim)
        let group = H / G
        let kvRow = G * D
        let P = prefixCount
        let packed = mode == .packed
        if packed {
            precondition(count == packedCount, "packed attention: \(count) tokens, the layout holds \(packedCount)")
        } else {
            precondition(start == P && P + count <= prefixCapacity, "prefix of \(prefixCapacity) tokens overflowed, or not continued at \(P)")
        }
        // The position of packed token i; shared tokens (segment -1) and the prefix's continue the prefix.
        let S = packed ? shared : 0
        func position(_ i: Int) -> Int { packed && i >= S ? P + S + i - segmentStart[Int(segmentOf[i])] : P + i }
        for i in 0..<count {
            rope.fillTable(position: position(i), ropeTable)
            rope.apply(q + i * H * D, heads: H, table: ropeTable)
            rope.apply(k + i * kvRow, heads: G, table: ropeTable)
        }
        let pk = prefixKeys + layer * G * tiledPrefix * D
        let pv = prefixValues + layer * G * prefixCapacity * D
        let rk = regionKeys + layer * G * regionCapacity * D
        let rv = regionValues + layer * G * regionCapacity * D
        // Prefix and shared tokens: P + S keys; those in whole tiles are read in place, the rest is
        // copied at the start of each region.
        let full = (P + S) / 16 * 16
        let partial = P + S - full
        for g in 0..<G {
            for i in 0..<(packed ? S : count) {
                lh_store_key_tiled(pk + g * tiledPrefix * D, Int32(D), Int32(P + i), k + i * kvRow + g * D)
                (pv + (g * prefixCapacity + P + i) * D).update(from: v + i * kvRow + g * D, count: D)
            }
            if packed {
                for s in regionStart.indices {
                    let keys = rk + g * regionCapacity * D, values = rv + g * regionCapacity * D
                    if partial > 0 {
                        (keys + regionStart[s] * D).update(from: pk + g * tiledPrefix * D + full * D, count: 16 * D)
                        (values + regionStart[s] * D).update(from: pv + (g * prefixCapacity + full) * D, count: partial * D)
                    }
                }
                for i in S..<count {
                    let s = Int(segmentOf[i])
                    let j = regionStart[s] + partial + i - segmentStart[s]
                    lh_store_key_tiled(rk + g * regionCapacity * D, Int32(D), Int32(j), k + i * kvRow + g * D)
                    (rv + (g * regionCapacity + j) * D).update(from: v + i * kvRow + g * D, count: D)
                }
            }
        }
        if count * H > statesCapacity {
            states.deallocate()
            statesCapacity = count * H
            states = .allocate(capacity: statesCapacity)
        }
        let scale = 1 / Float(D).squareRoot()
        let pairs = count * G
        let nTasks = min(pairs, pool.threads * 8)
        let st = states
        let (tiled, cap, regionCap) = (tiledPrefix, prefixCapacity, regionCapacity)
        pool.run(tasks: nTasks) { t in
            var pair = t
            while pair < pairs {
                // Token i's `group` query heads that read KV head g.
                let i = pair / G, g = pair % G
                let h0 = i * H + g * group
                let s = st + h0
                for j in 0..<group { s[j] = lh_softmax_state(m: -.infinity, l: 0) }
                let o = out + h0 * D
                o.update(repeating: 0, count: group * D)
                if packed && i >= S {
                    // The prefix's whole tiles, then the region: the partial prefix tile and the segment up to i.
                    let seg = Int(self.segmentOf[i])
                    if full > 0 {
                        DenseAttention.update(q: q + h0 * D, nq: group, D: D, keys: pk + g * tiled * D, values: pv + g * cap * D,
                                              n: full, scale: scale, states: s, out: o)
                    }
                    let r = self.regionStart[seg]
                    DenseAttention.update(q: q + h0 * D, nq: group, D: D, keys: rk + (g * regionCap + r) * D,
                                          values: rv + (g * regionCap + r) * D, n: partial + i - self.segmentStart[seg] + 1,
                                          scale: scale, states: s, out: o)
                } else {
                    DenseAttention.update(q: q + h0 * D, nq: group, D: D, keys: pk + g * tiled * D, values: pv + g * cap * D,
                                          n: P + i + 1, scale: scale, states: s, out: o)
                }
                for j in 0..<group { Ops.scale(o + j * D, 1 / s[j].l, D) }
                pair += nTasks
            }
        }
        if !packed && layer == config.layers - 1 { prefixCount += count }
    }
}
