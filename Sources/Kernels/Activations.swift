import CKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How finely `QuantizedActivations` represents each value, trading matmul speed for accuracy.
public enum ActivationPrecision: Sendable, CaseIterable {
    /// q = round(x / da) with da = max|x| / 127 per block of 32: one int8 dot product per weight
    /// (the scheme of llama.cpp's q8). Rounding error up to da / 2 per value; fastest.
    case int8
    /// Two int8 planes, q_hi = round(x / da) and q_lo = round((x / da - q_hi) * 254), so that
    /// x ~ da * (q_hi + q_lo / 254) (~16 bits per value): error up to da / 508 per value, ~250x
    /// smaller than `.int8`, for twice the dot products. Measured on Zen 4: batched matmuls run
    /// at ~55-60% of the int8 speed; decode, bound by weight memory traffic, within ~3%.
    case int16Split

    /// The precision `QuantizedActivations` gets when none is given: `.int16Split`, unless the
    /// environment variable LONGHEADS_ACTIVATIONS=int8 selects `.int8` (to compare accuracy or
    /// speed without code changes). Read once.
    public static let `default`: ActivationPrecision = {
        if let v = getenv("LONGHEADS_ACTIVATIONS"), String(cString: v) == "int8" { return .int8 }
        return .int16Split
    }()

    var id: Int32 {
        switch self {
        case .int8: Int32(LH_ACT_INT8)
        case .int16Split: Int32(LH_ACT_INT16_SPLIT)
        }
    }
}

/// Activations quantized for the matmul kernels, per token and block of 32 values with the
/// step da = max|x| / 127 of the block, at the chosen `precision` (see `ActivationPrecision`).
public final class QuantizedActivations: @unchecked Sendable {
    public let cols: Int
    public let maxTokens: Int
    /// The representation of the values, fixed at creation.
    public let precision: ActivationPrecision
    /// The C activation buffer; heap-allocated so its address is stable for the C calls.
    let storage: UnsafeMutablePointer<lh_qact>

    /// Room for `maxTokens` rows of `cols` values; `cols` must be a positive multiple of 32.
    /// The default (`ActivationPrecision.default`, normally `.int16Split`) is for accuracy: with
    /// `.int8` the rounding noise accumulated over SmolLM2-135M's 30 layers moved logits by up to
    /// 1.76 against float activations.
    public init(cols: Int, maxTokens: Int, precision: ActivationPrecision = .default) {
        var a = lh_qact()
        let rc = lh_qact_init(&a, Int32(cols), Int32(max(1, maxTokens)), precision.id)
        precondition(rc == Int32(LH_OK), "QuantizedActivations: cols \(cols) must be a positive multiple of 32 (or out of memory)")
        self.cols = cols
        self.maxTokens = max(1, maxTokens)
        self.precision = precision
        storage = .allocate(capacity: 1)
        storage.initialize(to: a)
    }

    deinit {
        lh_qact_free(storage)
        storage.deallocate()
    }

    /// Tokens held since the last `quantize`.
    public var tokens: Int { Int(storage.pointee.tokens) }

    /// Quantizes `tokens` rows of `x` (row i starts at x + i * stride; stride defaults to cols).
    /// A pool parallelizes large batches.
    /// All paths give bit-identical results; `path` is for tests.
    public func quantize(_ x: UnsafePointer<Float>, tokens: Int, stride: Int? = nil,
                         pool: ThreadPool? = nil, path: KernelPath? = nil) {
        precondition(tokens >= 0 && tokens <= maxTokens, "quantize: \(tokens) tokens exceed capacity \(maxTokens)")
        let ld = stride ?? cols
        precondition(ld >= cols, "quantize: stride \(ld) < cols \(cols)")
        let p = path ?? KernelPath.active
        precondition(p.isSupported, "quantize: path \(p) not supported on this CPU")
        let rc = lh_qact_quantize_path(p.id, storage, x, Int32(tokens), Int64(ld), pool?.handle)
        precondition(rc == 0)
    }

    /// The quantized-then-dequantized values of token `token` (cols floats): exactly the values
    /// the matmul multiplies the weights with.
    public func dequantize(token: Int, into dst: UnsafeMutablePointer<Float>) {
        precondition(token >= 0 && token < tokens)
        lh_qact_dequantize(storage, Int32(token), dst)
    }
}

/// out[t * outStride + r] = sum_k w[r][k] * x[firstToken + t][k] for t in 0..<tokens,
/// r in 0..<w.rows (outStride defaults to w.rows). `path` forces a SIMD path (tests).
public func matmul(_ w: PackedMatrix, _ x: QuantizedActivations, tokens: Int,
                   into out: UnsafeMutablePointer<Float>, pool: ThreadPool?,
                   firstToken: Int = 0, outStride: Int? = nil, path: KernelPath? = nil) {
    precondition(w.cols == x.cols, "matmul: matrix has \(w.cols) columns, activations \(x.cols)")
    precondition(firstToken >= 0 && tokens >= 0 && firstToken + tokens <= x.tokens,
                 "matmul: tokens \(firstToken)..<\(firstToken + tokens) but \(x.tokens) quantized")
    let ldo = outStride ?? w.rows
    precondition(ldo >= w.rows, "matmul: outStride \(ldo) < rows \(w.rows)")
    let p = path ?? KernelPath.active
    precondition(p.isSupported, "matmul: path \(p) not supported on this CPU")
    let rc = lh_matmul_path(p.id, w.storage, x.storage, Int32(firstToken), Int32(tokens), out,
                            Int64(ldo), pool?.handle)
    precondition(rc == 0, "matmul: invalid arguments")
}

/// Several matrices applied to the same activations in one thread-pool dispatch (e.g. q, k, v
/// or gate, up): outs[i] receives ws[i] x activations with stride ws[i].rows.
public func matmul(_ ws: [PackedMatrix], _ x: QuantizedActivations, tokens: Int,
                   into outs: [UnsafeMutablePointer<Float>], pool: ThreadPool?, firstToken: Int = 0) {
    precondition(ws.count == outs.count && ws.count >= 1 && ws.count <= 8, "matmul: 1...8 matrices, one output each")
    precondition(firstToken >= 0 && tokens >= 0 && firstToken + tokens <= x.tokens)
    withUnsafeTemporaryAllocation(of: UnsafePointer<lh_packed>?.self, capacity: ws.count) { wp in
        withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Float>?.self, capacity: ws.count) { op in
            withUnsafeTemporaryAllocation(of: Int64.self, capacity: ws.count) { lp in
                for i in 0..<ws.count {
                    precondition(ws[i].cols == x.cols, "matmul: matrix \(i) has \(ws[i].cols) columns, activations \(x.cols)")
                    wp[i] = UnsafePointer(ws[i].storage)
                    op[i] = outs[i]
                    lp[i] = Int64(ws[i].rows)
                }
                let rc = lh_matmul_multi(Int32(ws.count), wp.baseAddress, x.storage, Int32(firstToken),
                                         Int32(tokens), op.baseAddress, lp.baseAddress, pool?.handle)
                precondition(rc == 0, "matmul: invalid arguments")
            }
        }
    }
}
