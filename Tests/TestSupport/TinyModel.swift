import Foundation
import GGUF
import Kernels
import Model

/// Builds small random Llama-family GGUFs for tests: real block formats (Q4_1, Q8_0, F32), a byte-level
/// GPT-2 vocabulary with ChatML specials, and a plain-float reference forward pass to compare against.
/// `architecture = "qwen2"` adds Q/K/V biases (NEOX RoPE follows from the architecture).
public struct TinyModel {
    public var architecture = "llama"
    /// Writes a separate `output.weight` (Qwen2.5-0.5B's layout) instead of tying it to the embedding.
    public var untiedOutput = false
    public var layers = 2
    public var dim = 64
    public var ffn = 96
    public var heads = 4
    public var kvHeads = 2
    public var ropeBase = 10000.0
    public var seed: UInt64 = 42
    public var matrixType: TensorType = .q4_1

    /// A tiny model with the defaults above.
    public init() {}

    public var headDim: Int { dim / heads }
    public var vocab: Int { 256 + specials.count }
    public let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

    /// GPT-2's byte→unicode table: printable bytes map to themselves, the rest to U+0100….
    public static func byteToUnicode() -> [Character] {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }

    /// Deterministic weights: a float matrix per tensor name.
    public struct Weights {
        public var tensors: [String: (dims: [Int], values: [Float])] = [:]
    }

    public func makeWeights() -> Weights {
        var rng = SplitMix(seed: seed)
        var w = Weights()
        func rand(_ n: Int, scale: Float) -> [Float] { (0..<n).map { _ in (rng.nextFloat() * 2 - 1) * scale } }
        let kvDim = kvHeads * headDim
        w.tensors["token_embd.weight"] = ([dim, vocab], rand(dim * vocab, scale: 1))
        w.tensors["output_norm.weight"] = ([dim], rand(dim, scale: 0.2).map { 1 + $0 })
        for l in 0..<layers {
            let p = "blk.\(l)."
            w.tensors[p + "attn_norm.weight"] = ([dim], rand(dim, scale: 0.2).map { 1 + $0 })
            w.tensors[p + "ffn_norm.weight"] = ([dim], rand(dim, scale: 0.2).map { 1 + $0 })
            w.tensors[p + "attn_q.weight"] = ([dim, dim], rand(dim * dim, scale: 0.5))
            w.tensors[p + "attn_k.weight"] = ([dim, kvDim], rand(dim * kvDim, scale: 0.5))
            w.tensors[p + "attn_v.weight"] = ([dim, kvDim], rand(dim * kvDim, scale: 0.5))
            w.tensors[p + "attn_output.weight"] = ([dim, dim], rand(dim * dim, scale: 0.2))
            w.tensors[p + "ffn_gate.weight"] = ([dim, ffn], rand(dim * ffn, scale: 0.3))
            w.tensors[p + "ffn_up.weight"] = ([dim, ffn], rand(dim * ffn, scale: 0.3))
            w.tensors[p + "ffn_down.weight"] = ([ffn, dim], rand(dim * ffn, scale: 0.2))
            if architecture == "qwen2" {
                w.tensors[p + "attn_q.bias"] = ([dim], rand(dim, scale: 0.5))
                w.tensors[p + "attn_k.bias"] = ([kvDim], rand(kvDim, scale: 0.5))
                w.tensors[p + "attn_v.bias"] = ([kvDim], rand(kvDim, scale: 0.5))
            }
        }
        if untiedOutput { w.tensors["output.weight"] = ([dim, vocab], rand(dim * vocab, scale: 0.5)) }
        return w
    }

    /// The GGUF bytes; matrices quantized to `matrixType`, the embedding and an untied output to Q8_0.
    public func gguf() -> (GGUFWriter, Weights) {
        var w = GGUFWriter()
        let a = architecture
        w.set("general.architecture", .string(a))
        w.set("general.name", .string("tiny-test"))
        w.set("\(a).block_count", .uint32(UInt32(layers)))
        w.set("\(a).embedding_length", .uint32(UInt32(dim)))
        w.set("\(a).feed_forward_length", .uint32(UInt32(ffn)))
        w.set("\(a).attention.head_count", .uint32(UInt32(heads)))
        w.set("\(a).attention.head_count_kv", .uint32(UInt32(kvHeads)))
        w.set("\(a).rope.freq_base", .float32(Float(ropeBase)))
        w.set("\(a).attention.layer_norm_rms_epsilon", .float32(1e-5))
        w.set("\(a).context_length", .uint32(4096))
        let b2u = Self.byteToUnicode()
        let tokens = (0..<256).map { String(b2u[$0]) } + specials
        w.set("tokenizer.ggml.model", .string("gpt2"))
        w.set("tokenizer.ggml.pre", .string("smollm"))
        w.set("tokenizer.ggml.tokens", .array(elementType: .string, tokens.map { .string($0) }))
        w.set("tokenizer.ggml.token_type", .array(elementType: .int32, (0..<vocab).map { .int32($0 < 256 ? 1 : 3) }))
        w.set("tokenizer.ggml.merges", .array(elementType: .string, []))
        w.set("tokenizer.ggml.bos_token_id", .uint32(256))
        w.set("tokenizer.ggml.eos_token_id", .uint32(258))
        w.set("tokenizer.ggml.add_bos_token", .bool(false))
        let weights = makeWeights()
        for name in weights.tensors.keys.sorted() {
            let (dims, values) = weights.tensors[name]!
            if dims.count == 1 {
                w.addTensor(name, dims: dims, floats: values)
            } else {
                let type: TensorType = name == "token_embd.weight" || name == "output.weight" ? .q8_0 : matrixType
                w.addTensor(name, dims: dims, type: type, data: Self.quantize(values, type: type))
            }
        }
        return (w, weights)
    }

    /// Writes the model to a temporary file and returns its path.
    public func write(name: String) throws -> String {
        let path = NSTemporaryDirectory() + "tiny-\(getpid())-\(name).gguf"
        try gguf().0.write(to: path)
        return path
    }

    /// Reference quantizers for building test files (ggml block layouts).
    public static func quantize(_ x: [Float], type: TensorType) -> [UInt8] {
        var out = [UInt8]()
        func half(_ f: Float) { let b = floatToHalfBits(f); out.append(UInt8(b & 0xFF)); out.append(UInt8(b >> 8)) }
        switch type {
        case .f32:
            for f in x { withUnsafeBytes(of: f.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        case .q8_0:
            for b in stride(from: 0, to: x.count, by: 32) {
                let blk = x[b..<b + 32]
                let amax = blk.map(abs).max()!
                let d = amax / 127
                half(d)
                for v in blk { out.append(UInt8(bitPattern: Int8(d == 0 ? 0 : (v / d).rounded()))) }
            }
        case .q4_1:
            for b in stride(from: 0, to: x.count, by: 32) {
                let blk = Array(x[b..<b + 32])
                let mn = blk.min()!, mx = blk.max()!
                let d = (mx - mn) / 15
                half(d); half(mn)
                let q = blk.map { d == 0 ? UInt8(0) : UInt8(min(15, max(0, (($0 - mn) / d).rounded()))) }
                for i in 0..<16 { out.append(q[i] | q[i + 16] << 4) }
            }
        default:
            fatalError("test quantizer for \(type) not written")
        }
        return out
    }
}

/// A tiny deterministic PRNG for test data.
public struct SplitMix {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func nextFloat() -> Float { Float(next() >> 40) / Float(1 << 24) }
}

/// A plain float forward pass over a GGUF (weights dequantized by the reference dequantizer), written
/// independently of the engine: the ground truth for the engine's tests.
public struct ReferenceForward {
    public let file: GGUFFile
    public let c: ModelConfig

    public init(path: String) throws {
        file = try GGUFFile(path: path)
        c = try ModelConfig(gguf: file)
    }

    func tensor(_ name: String) -> [Float] {
        let t = file.tensors[name]!
        var out = [Float](repeating: 0, count: t.elementCount)
        out.withUnsafeMutableBufferPointer { dequantizeRow(type: t.type.rawValue, file.data(of: t), count: t.elementCount, into: $0.baseAddress!) }
        return out
    }

    /// y[r] = Σ W[r, c] x[c], W stored [rows, cols] row-major (ggml ne = [cols, rows]).
    func matvec(_ w: [Float], _ x: [Float], rows: Int) -> [Float] {
        let cols = x.count
        return (0..<rows).map { r in (0..<cols).reduce(Float(0)) { $0 + w[r * cols + $1] * x[$1] } }
    }

    func rmsNorm(_ x: [Float], _ w: [Float]) -> [Float] {
        let ms = x.reduce(0) { $0 + $1 * $1 } / Float(x.count)
        let s = 1 / (ms + c.rmsEps).squareRoot()
        return zip(x, w).map { $0 * s * $1 }
    }

    /// RoPE of one head at `offset`: ggml NORM pairs (2i, 2i+1) for llama, NEOX pairs (i, i + n/2) for qwen2
    /// (ggml_rope_ext's two layouts; the architecture decides, as llama_model_rope_type does).
    func rope(_ v: inout [Float], offset: Int, position: Int) {
        let neox = c.architecture == "qwen2"
        let half = c.ropeDim / 2
        for i in 0..<half {
            let theta = Double(position) * pow(c.ropeBase, -Double(2 * i) / Double(c.ropeDim))
            let (cs, sn) = (Float(cos(theta)), Float(sin(theta)))
            let (ia, ib) = neox ? (offset + i, offset + i + half) : (offset + 2 * i, offset + 2 * i + 1)
            let (a, b) = (v[ia], v[ib])
            v[ia] = a * cs - b * sn
            v[ib] = a * sn + b * cs
        }
    }

    /// Softmax attention of `q` over `keys`/`values` (rows), scale 1/sqrt(d).
    func attendRows(_ q: [Float], _ keys: [[Float]], _ values: [[Float]]) -> [Float] {
        let d = q.count
        var s = keys.map { k in zip(q, k).reduce(Float(0)) { $0 + $1.0 * $1.1 } / Float(d).squareRoot() }
        let m = s.max()!
        s = s.map { expf($0 - m) }
        let z = s.reduce(0, +)
        var out = [Float](repeating: 0, count: values[0].count)
        for (j, v) in values.enumerated() { for x in 0..<v.count { out[x] += s[j] / z * v[x] } }
        return out
    }

    /// LongHeads as the paper's code computes it, naively (keys re-rotated at their slot positions, no
    /// caching): the ground truth for the engine's local-RoPE/rotated-query implementation.
    /// `qs`, `ks`, `vs` are the layer's UNROTATED projections per position.
    func longHeadsAttention(qs: [[Float]], ks: [[Float]], vs: [[Float]], pos: Int, w: Int, attention: Int, beginSelective: Int,
                            policy: String) -> [Float] {
        let (H, G, hd) = (c.heads, c.kvHeads, c.headDim)
        let K = attention / w
        let cur = pos / w
        var out = [Float](repeating: 0, count: H * hd)
        func head(_ v: [Float], _ h: Int) -> [Float] { Array(v[h * hd..<(h + 1) * hd]) }
        func rotated(_ v: [Float], _ p: Int) -> [Float] { var x = v; rope(&x, offset: 0, position: p); return x }
        for h in 0..<H {
            let g = h / (H / G)
            var chunks = Array(0...cur)
            if pos >= beginSelective {
                // Key feature of chunk j (local RoPE inside the chunk), scored with the unrotated query.
                func keyFeature(_ j: Int) -> [Float] {
                    let qL = (0..<w).map { rotated(head(qs[j * w + $0], h), $0) }
                    let kL = (0..<w).map { rotated(head(ks[j * w + $0], g), $0) }
                    let vL = (0..<w).map { head(vs[j * w + $0], g) }
                    let outs = qL.map { attendRows($0, kL, vL) }
                    let mean = (0..<hd).map { d in outs.reduce(Float(0)) { $0 + $1[d] } / Float(w) }
                    return attendRows(mean, kL, kL)
                }
                // Quest bound (Selection.swift): per channel min/max of the chunk's local-RoPE keys (over sub-chunks
                // of min(64, w) tokens for quest-sub, max-pooled), the query rotated to slot 1: (K-2)·w + pos mod w.
                func questScore(_ j: Int) -> Float {
                    let q = rotated(head(qs[pos], h), (K - 2) * w + pos % w)
                    let kL = (0..<w).map { rotated(head(ks[j * w + $0], g), $0) }
                    let sub = policy == "quest-sub" ? min(64, w) : w
                    return stride(from: 0, to: w, by: sub).map { s0 in
                        (0..<hd).reduce(Float(0)) { acc, d in
                            let col = kL[s0..<(s0 + sub)].map { $0[d] }
                            return acc + max(q[d] * col.min()!, q[d] * col.max()!)
                        }
                    }.max()!
                }
                let q = head(qs[pos], h)
                let scored = (1...(cur - 2)).map { j in
                    (policy == "paper" ? zip(q, keyFeature(j)).reduce(Float(0)) { $0 + $1.0 * $1.1 } : questScore(j), j)
                }
                func byScore(_ a: (Float, Int), _ b: (Float, Int)) -> Bool { a.0 > b.0 || (a.0 == b.0 && a.1 < b.1) }
                var best = scored.sorted(by: byScore).prefix(K - 3).map { $0.1 }
                if policy == "quest-exact" {
                    // The bound keeps 8·(K-3) candidates; each is ranked by its largest exact logit q'·k.
                    let qr = rotated(head(qs[pos], h), (K - 2) * w + pos % w)
                    best = scored.sorted(by: byScore).prefix(8 * (K - 3)).map { (_, j) in
                        ((0..<w).map { t in zip(qr, rotated(head(ks[j * w + t], g), t)).reduce(Float(0)) { $0 + $1.0 * $1.1 } }.max()!, j)
                    }.sorted(by: byScore).prefix(K - 3).map { $0.1 }
                }
                chunks = ([0] + best + [cur - 1, cur]).sorted()
            }
            // Lay the chunks out contiguously: slot s holds positions s·w ..< s·w + w; the query sits at the end.
            var keys = [[Float]](), values = [[Float]]()
            for (s, j) in chunks.enumerated() {
                for o in 0..<w where j * w + o <= pos {
                    keys.append(rotated(head(ks[j * w + o], g), s * w + o))
                    values.append(head(vs[j * w + o], g))
                }
            }
            let qpos = (chunks.count - 1) * w + pos % w
            let o = attendRows(rotated(head(qs[pos], h), qpos), keys, values)
            for d in 0..<hd { out[h * hd + d] = o[d] }
        }
        return out
    }

    /// Logits for every position of `tokens`, `[tokens.count][vocab]`; with `longHeads` (chunk, attention
    /// length, selective start) attention follows the paper's LongHeads rule instead of dense.
    public func logits(_ tokens: [Int32], longHeads: (Int, Int, Int)? = nil, policy: String = "quest") -> [[Float]] {
        let (D, H, G, hd) = (c.dim, c.heads, c.kvHeads, c.headDim)
        let emb = tensor("token_embd.weight")
        var xs = tokens.map { Array(emb[Int($0) * D..<(Int($0) + 1) * D]) }
        for l in 0..<c.layers {
            let p = "blk.\(l)."
            let (wq, wk, wv, wo) = (tensor(p + "attn_q.weight"), tensor(p + "attn_k.weight"), tensor(p + "attn_v.weight"), tensor(p + "attn_output.weight"))
            let (wg, wu, wd) = (tensor(p + "ffn_gate.weight"), tensor(p + "ffn_up.weight"), tensor(p + "ffn_down.weight"))
            let (an, fn) = (tensor(p + "attn_norm.weight"), tensor(p + "ffn_norm.weight"))
            var ks = [[Float]](), vs = [[Float]](), qs = [[Float]]()
            var rawQ = [[Float]](), rawK = [[Float]]()
            for (pos, x) in xs.enumerated() {
                let h = rmsNorm(x, an)
                var q = matvec(wq, h, rows: D), k = matvec(wk, h, rows: G * hd)
                var v = matvec(wv, h, rows: G * hd)
                if file.tensors[p + "attn_q.bias"] != nil {
                    q = zip(q, tensor(p + "attn_q.bias")).map { $0 + $1 }
                    k = zip(k, tensor(p + "attn_k.bias")).map { $0 + $1 }
                    v = zip(v, tensor(p + "attn_v.bias")).map { $0 + $1 }
                }
                rawQ.append(q); rawK.append(k)
                for hh in 0..<H { rope(&q, offset: hh * hd, position: pos) }
                for g in 0..<G { rope(&k, offset: g * hd, position: pos) }
                qs.append(q); ks.append(k); vs.append(v)
            }
            for pos in 0..<xs.count {
                var att = [Float](repeating: 0, count: D)
                if let (w, attention, begin) = longHeads {
                    att = longHeadsAttention(qs: rawQ, ks: rawK, vs: vs, pos: pos, w: w, attention: attention, beginSelective: begin,
                                             policy: policy)
                } else {
                for hh in 0..<H {
                    let g = hh / (H / G)
                    var s = (0...pos).map { j in
                        (0..<hd).reduce(Float(0)) { $0 + qs[pos][hh * hd + $1] * ks[j][g * hd + $1] } / Float(hd).squareRoot()
                    }
                    let m = s.max()!
                    s = s.map { expf($0 - m) }
                    let z = s.reduce(0, +)
                    for j in 0...pos { for d in 0..<hd { att[hh * hd + d] += s[j] / z * vs[j][g * hd + d] } }
                }
                }
                let o = matvec(wo, att, rows: D)
                for d in 0..<D { xs[pos][d] += o[d] }
                let h = rmsNorm(xs[pos], fn)
                let g = matvec(wg, h, rows: c.ffnDim), u = matvec(wu, h, rows: c.ffnDim)
                let a = zip(g, u).map { $0 / (1 + expf(-$0)) * $1 }
                let dn = matvec(wd, a, rows: D)
                for d in 0..<D { xs[pos][d] += dn[d] }
            }
        }
        let on = tensor("output_norm.weight")
        let out = file.tensors["output.weight"] != nil ? tensor("output.weight") : emb
        return xs.map { matvec(out, rmsNorm($0, on), rows: c.vocabSize) }
    }
}
