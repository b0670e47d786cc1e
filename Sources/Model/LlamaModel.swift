import GGUF
import Kernels

/// Which rows of logits a forward pass should produce.
public enum LogitRows: Sendable {
    /// None (prefill of a context that continues).
    case none
    /// The last token's row only (generation).
    case last
    /// One row per input token (scoring, tests).
    case all
    /// The rows of these input tokens, in this order (the last token of each sequence packed into one
    /// batch, `PackedAttention`).
    case rows([Int])
}

/// The weights of one transformer block, repacked for the matmul kernels.
struct Block {
    let attnNorm: [Float]
    let wq, wk, wv, wo: PackedMatrix
    /// Q, K, V biases (`ArchitectureFeatures.qkvBias`), else nil.
    let bq, bk, bv: [Float]?
    let ffnNorm: [Float]
    let wGate, wUp, wDown: PackedMatrix
}

/// A Llama-family transformer on CPU: RMSNorm, RoPE, grouped-query attention, SwiGLU, with the
/// variations its `ModelConfig.features` describe (Q/K/V biases, RoPE pairing) — one forward pass for
/// every architecture in `ArchitectureFeatures.known`.
///
/// Weights are repacked once at load into the kernels' interleaved quantized layout; the GGUF mapping
/// stays open for the embedding rows. Scratch buffers for a batch of up to `maxBatch` tokens are
/// allocated once here; `forward` allocates nothing.
public final class LlamaModel {
    /// Hyperparameters.
    public let config: ModelConfig
    /// The most tokens one `forward` call takes.
    public let maxBatch: Int
    /// Worker threads shared by matmuls and attention.
    public let pool: ThreadPool
    /// The file the weights come from.
    public let file: GGUFFile

    private let embedding: GGUFTensorInfo
    private let embeddingRowBytes: Int
    private let blocks: [Block]
    private let outputNorm: [Float]
    private let output: PackedMatrix

    // Scratch, [maxBatch, width] each.
    private let x, xb, q, k, v, att, tmp, gate, up: UnsafeMutablePointer<Float>
    private let actDim: QuantizedActivations   // quantized rows of width dim
    private let actFFN: QuantizedActivations   // quantized rows of width ffnDim
    private var logits: UnsafeMutablePointer<Float>
    private var logitsRows: Int

    /// Loads the model in `file`, checking every tensor's type and shape.
    public init(file: GGUFFile, threads: Int, maxBatch: Int = 256) throws(ModelError) {
        let c = try ModelConfig(gguf: file)
        try c.validate(against: file)
        config = c
        self.file = file
        self.maxBatch = maxBatch
        pool = ThreadPool(threads: threads)
        let kvDim = c.kvHeads * c.headDim

        func tensor(_ name: String, _ dims: [Int]) throws(ModelError) -> GGUFTensorInfo {
            let t: GGUFTensorInfo
            do { t = try file.tensor(name) } catch { throw .gguf(error) }
            guard t.type.isSupportedForCompute else {
                throw .unsupportedTensorType(path: file.path, tensor: name, type: t.type.description)
            }
            guard t.dims == dims else { throw .badShape(path: file.path, tensor: name, expected: dims, found: t.dims) }
            return t
        }
        func vector(_ name: String, _ n: Int) throws(ModelError) -> [Float] {
            let t = try tensor(name, [n])
            return [Float](unsafeUninitializedCapacity: n) { buf, count in
                dequantizeRow(type: t.type.rawValue, file.data(of: t), count: n, into: buf.baseAddress!)
                count = n
            }
        }
        func matrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> PackedMatrix {
            let t = try tensor(name, [cols, rows])
            do {
                return try PackedMatrix(type: t.type.rawValue, data: file.data(of: t), rows: rows, cols: cols)
            } catch {
                throw .kernel(path: file.path, tensor: name, reason: "\(error)")
            }
        }

        embedding = try tensor("token_embd.weight", [c.dim, c.vocabSize])
        embeddingRowBytes = embedding.type.byteCount(elements: c.dim)!
        var bs = [Block]()
        for l in 0..<c.layers {
            let p = "blk.\(l)."
            let bias = c.features.qkvBias
            bs.append(Block(
                attnNorm: try vector(p + "attn_norm.weight", c.dim),
                wq: try matrix(p + "attn_q.weight", rows: c.dim, cols: c.dim),
                wk: try matrix(p + "attn_k.weight", rows: kvDim, cols: c.dim),
                wv: try matrix(p + "attn_v.weight", rows: kvDim, cols: c.dim),
                wo: try matrix(p + "attn_output.weight", rows: c.dim, cols: c.dim),
                bq: bias ? try vector(p + "attn_q.bias", c.dim) : nil,
                bk: bias ? try vector(p + "attn_k.bias", kvDim) : nil,
                bv: bias ? try vector(p + "attn_v.bias", kvDim) : nil,
                ffnNorm: try vector(p + "ffn_norm.weight", c.dim),
                wGate: try matrix(p + "ffn_gate.weight", rows: c.ffnDim, cols: c.dim),
                wUp: try matrix(p + "ffn_up.weight", rows: c.ffnDim, cols: c.dim),
                wDown: try matrix(p + "ffn_down.weight", rows: c.dim, cols: c.ffnDim)))
        }
        blocks = bs
        outputNorm = try vector("output_norm.weight", c.dim)
        // Tied embeddings: without `output.weight` the embedding matrix is the output projection.
        output = try matrix(file.tensors["output.weight"] != nil ? "output.weight" : "token_embd.weight",
                            rows: c.vocabSize, cols: c.dim)

        x = .allocate(capacity: maxBatch * c.dim)
        xb = .allocate(capacity: maxBatch * c.dim)
        q = .allocate(capacity: maxBatch * c.dim)
        k = .allocate(capacity: maxBatch * kvDim)
        v = .allocate(capacity: maxBatch * kvDim)
        att = .allocate(capacity: maxBatch * c.dim)
        tmp = .allocate(capacity: maxBatch * c.dim)
        gate = .allocate(capacity: maxBatch * c.ffnDim)
        up = .allocate(capacity: maxBatch * c.ffnDim)
        actDim = QuantizedActivations(cols: c.dim, maxTokens: maxBatch)
        actFFN = QuantizedActivations(cols: c.ffnDim, maxTokens: maxBatch)
        logitsRows = 1
        logits = .allocate(capacity: c.vocabSize)
    }

    deinit {
        for p in [x, xb, q, k, v, att, tmp, gate, up, logits] { p.deallocate() }
    }

    /// Runs `tokens` (at most `maxBatch`) at positions `start ..< start + tokens.count` through the model.
    ///
    /// Returns the requested logits, `[rows, vocabSize]`, valid until the next call.
    public func forward(_ tokens: ArraySlice<Int32>, start: Int, attention: Attention, logits want: LogitRows) throws -> UnsafeBufferPointer<Float> {
        let n = tokens.count
        precondition(n > 0 && n <= maxBatch, "forward takes 1...\(maxBatch) tokens, got \(n)")
        let c = config
        let (dim, ffn) = (c.dim, c.ffnDim)

        // Embedding lookup.                                   x: [n, dim]
        let base = file.data(of: embedding)
        for (i, t) in tokens.enumerated() {
            precondition(t >= 0 && Int(t) < c.vocabSize, "token id \(t) outside the vocabulary")
            dequantizeRow(type: embedding.type.rawValue, base + Int(t) * embeddingRowBytes, count: dim, into: x + i * dim)
        }

        for (l, b) in blocks.enumerated() {
            // Attention norm.                                  xb: [n, dim]
            b.attnNorm.withUnsafeBufferPointer { w in
                for i in 0..<n { Ops.rmsNorm(x + i * dim, w.baseAddress!, xb + i * dim, n: dim, eps: c.rmsEps) }
            }
            actDim.quantize(xb, tokens: n)
            // Projections, no RoPE yet.                        q: [n, heads, headDim]; k, v: [n, kvHeads, headDim]
            matmul(b.wq, actDim, tokens: n, into: q, pool: pool)
            matmul(b.wk, actDim, tokens: n, into: k, pool: pool)
            matmul(b.wv, actDim, tokens: n, into: v, pool: pool)
            // Biases (qwen2: llm_build_qwen2 adds them right after each projection, before RoPE).
            if let bq = b.bq, let bk = b.bk, let bv = b.bv {
                Self.addRows(bq, to: q, rows: n)
                Self.addRows(bk, to: k, rows: n)
                Self.addRows(bv, to: v, rows: n)
            }
            // Attention (positions applied by the implementation). att: [n, heads, headDim]
            try attention.attend(layer: l, start: start, count: n, q: q, k: k, v: v, out: att)
            // Output projection and residual.                  x += Wo · att
            actDim.quantize(att, tokens: n)
            matmul(b.wo, actDim, tokens: n, into: tmp, pool: pool)
            Ops.add(tmp, into: x, n * dim)
            // FFN norm.                                        xb: [n, dim]
            b.ffnNorm.withUnsafeBufferPointer { w in
                for i in 0..<n { Ops.rmsNorm(x + i * dim, w.baseAddress!, xb + i * dim, n: dim, eps: c.rmsEps) }
            }
            actDim.quantize(xb, tokens: n)
            // SwiGLU.                                          gate, up: [n, ffnDim]
            matmul(b.wGate, actDim, tokens: n, into: gate, pool: pool)
            matmul(b.wUp, actDim, tokens: n, into: up, pool: pool)
            Ops.swiglu(gate, up, n * ffn)
            // Down projection and residual.                    x += Wdown · h
            actFFN.quantize(gate, tokens: n)
            matmul(b.wDown, actFFN, tokens: n, into: tmp, pool: pool)
            Ops.add(tmp, into: x, n * dim)
        }

        // Final norm and output projection for the rows asked for. logits: [rows, vocab]
        let first: Int, rows: Int
        var picked: [Int]? = nil
        switch want {
        case .none: return UnsafeBufferPointer(start: logits, count: 0)
        case .last: (first, rows) = (n - 1, 1)
        case .all: (first, rows) = (0, n)
        case .rows(let r):
            precondition(!r.isEmpty && r.allSatisfy { (0..<n).contains($0) }, "logit rows \(r) outside the \(n) tokens")
            (first, rows, picked) = (0, r.count, r)
        }
        if rows > logitsRows {
            logits.deallocate()
            logits = .allocate(capacity: rows * c.vocabSize)
            logitsRows = rows
        }
        outputNorm.withUnsafeBufferPointer { w in
            for i in 0..<rows {
                Ops.rmsNorm(x + (picked?[i] ?? first + i) * dim, w.baseAddress!, xb + i * dim, n: dim, eps: c.rmsEps)
            }
        }
        actDim.quantize(xb, tokens: rows)
        matmul(output, actDim, tokens: rows, into: logits, pool: pool)
        return UnsafeBufferPointer(start: logits, count: rows * c.vocabSize)
    }

    /// Adds `bias` to each of `rows` consecutive rows of its width at `x`.
    private static func addRows(_ bias: [Float], to x: UnsafeMutablePointer<Float>, rows: Int) {
        bias.withUnsafeBufferPointer { b in
            for r in 0..<rows { Ops.add(b.baseAddress!, into: x + r * b.count, b.count) }
        }
    }
}
