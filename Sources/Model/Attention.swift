import CKernels
import Kernels

/// The model's only seam to attention: how keys and values are kept, and which of them a query sees.
///
/// The model hands over q, k and v of `count` new tokens at absolute positions `start ..< start+count`
/// WITHOUT RoPE: an implementation applies positions its own way (dense: absolute; LongHeads: local
/// positions for stored keys and per-slot positions for the query, LONGHEADS.md "The CPU trick").
/// Layers are called in order 0..<layers for each batch of tokens. It throws when keys or values it
/// keeps elsewhere (a store on disk) cannot be read; the forward pass stops with that error.
public protocol Attention: AnyObject {
    /// - Parameters:
    ///   - q: `[count, heads, headDim]`, may be modified in place.
    ///   - k: `[count, kvHeads, headDim]`, may be modified in place.
    ///   - v: `[count, kvHeads, headDim]`.
    ///   - out: `[count, heads, headDim]`, the attention output before the output projection.
    func attend(layer: Int, start: Int, count: Int,
                q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                out: UnsafeMutablePointer<Float>) throws
}

/// Plain causal softmax attention over an in-RAM float KV cache of fixed capacity.
///
/// Keys are kept in the kernel's transposed 16-key tiles (lh_attention.h), values row-major; the
/// query heads that share a KV head are processed together so each key is loaded once for all of them.
public final class DenseAttention: Attention {
    /// Geometry of the model this cache serves.
    public let config: ModelConfig
    /// Tokens the cache can hold.
    public let capacity: Int
    private let rope: RoPE
    private let pool: ThreadPool
    private let tiledCapacity: Int
    private let keys: UnsafeMutablePointer<Float>   // [layers, kvHeads, tiledCapacity/16, headDim, 16], RoPE applied
    private let values: UnsafeMutablePointer<Float> // [layers, kvHeads, capacity, headDim]
    private let ropeTable: UnsafeMutablePointer<Float>
    private var states: UnsafeMutablePointer<lh_softmax_state>
    private var statesCapacity: Int

    /// A cache for `capacity` tokens of a model with `config`.
    public init(config: ModelConfig, capacity: Int, pool: ThreadPool) {
        self.config = config
        self.capacity = capacity
        self.pool = pool
        rope = RoPE(config: config)
        tiledCapacity = (capacity + 15) / 16 * 16
        keys = .allocate(capacity: config.layers * config.kvHeads * tiledCapacity * config.headDim)
        values = .allocate(capacity: config.layers * config.kvHeads * capacity * config.headDim)
        ropeTable = .allocate(capacity: config.ropeDim)
        statesCapacity = 64 * config.heads
        states = .allocate(capacity: statesCapacity)
    }

    deinit {
        keys.deallocate(); values.deallocate(); ropeTable.deallocate(); states.deallocate()
    }

    public func attend(layer: Int, start: Int, count: Int,
                       q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                       out: UnsafeMutablePointer<Float>) {
        precondition(start + count <= capacity, "dense KV cache of \(capacity) tokens overflowed")
        let (H, G, D) = (config.heads, config.kvHeads, config.headDim)
        let group = H / G
        let kvRow = G * D
        // RoPE at absolute positions; keys go into the cache rotated.
        for i in 0..<count {
            rope.fillTable(position: start + i, ropeTable)
            rope.apply(q + i * H * D, heads: H, table: ropeTable)
            rope.apply(k + i * kvRow, heads: G, table: ropeTable)
        }
        let kBase = keys + layer * G * tiledCapacity * D
        let vBase = values + layer * G * capacity * D
        for i in 0..<count {
            for g in 0..<G {
                lh_store_key_tiled(kBase + g * tiledCapacity * D, Int32(D), Int32(start + i), k + i * kvRow + g * D)
                (vBase + (g * capacity + start + i) * D).update(from: v + i * kvRow + g * D, count: D)
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
        pool.run(tasks: nTasks) { t in
            var pair = t
            while pair < pairs {
                // Token i's `group` query heads that read KV head g, causal up to its own position.
                let i = pair / G, g = pair % G
                let h0 = i * H + g * group
                let s = st + h0
                for j in 0..<group { s[j] = lh_softmax_state(m: -.infinity, l: 0) }
                let o = out + h0 * D
                o.update(repeating: 0, count: group * D)
                Self.update(q: q + h0 * D, nq: group, D: D, keys: kBase + g * self.tiledCapacity * D,
                            values: vBase + g * self.capacity * D, n: start + i + 1, scale: scale, states: s, out: o)
                for j in 0..<group { Ops.scale(o + j * D, 1 / s[j].l, D) }
                pair += nTasks
            }
        }
    }

    /// All `nq` queries see keys [0, n).
    @inline(__always)
    static func update(q: UnsafePointer<Float>, nq: Int, D: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                       n: Int, scale: Float, states: UnsafeMutablePointer<lh_softmax_state>, out: UnsafeMutablePointer<Float>) {
        lh_attn_update(q, Int32(D), Int32(nq), Int32(D), keys, values, Int32(D), Int32(n), nil, scale, states, out, Int32(D))
    }
}
