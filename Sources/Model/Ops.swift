/// Small float kernels used by the forward pass and by attention implementations.
/// Written so the compiler vectorizes them (SIMD16 over contiguous rows); they are cheap next to matmuls.
public enum Ops {
    /// out = x / sqrt(mean(x²) + eps) * weight, for one row of `n`.
    @inline(__always)
    public static func rmsNorm(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, n: Int, eps: Float) {
        var ss: Float = 0
        for i in 0..<n { ss += x[i] * x[i] }
        let scale = 1 / (ss / Float(n) + eps).squareRoot()
        for i in 0..<n { out[i] = x[i] * scale * weight[i] }
    }

    /// Dot product of two rows of `n` floats.
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var i = 0
        var acc = SIMD16<Float>()
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 16 <= n {
            let va = ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            let vb = rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            acc += va * vb  // not addProduct: without -mfma it lowers to a libm fmaf call per lane
            i += 16
        }
        var s = acc.sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    /// y += a · x over `n` floats.
    @inline(__always)
    public static func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        while i + 16 <= n {
            var vy = ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            vy += SIMD16(repeating: a) * rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            ry.storeBytes(of: vy, toByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        while i < n { y[i] += a * x[i]; i += 1 }
    }

    /// y *= a over `n` floats.
    @inline(__always)
    public static func scale(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ n: Int) {
        for i in 0..<n { y[i] *= a }
    }

    /// y += x over `n` floats.
    @inline(__always)
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { y[i] += x[i] }
    }

    /// gate = silu(gate) * up, elementwise (SwiGLU).
    @inline(__always)
    public static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, _ n: Int) {
        for i in 0..<n {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
        }
    }

    /// In-place softmax of `n` scores; returns nothing, scores become probabilities.
    @inline(__always)
    public static func softmax(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        var m = -Float.infinity
        for i in 0..<n { m = max(m, x[i]) }
        var s: Float = 0
        for i in 0..<n {
            let e = expf(x[i] - m)
            x[i] = e
            s += e
        }
        let inv = 1 / s
        for i in 0..<n { x[i] *= inv }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rotary position embedding (RoFormer eq. 34): pair i of a head rotates by angle p · base^(-2i/ropeDim).
/// Which two dimensions form pair i is the `pairing` (ggml `rope_type`): (x[2i], x[2i+1]) for llama
/// (NORM), (x[i], x[i + ropeDim/2]) for qwen2 (NEOX); dimensions past `ropeDim` pass through.
public struct RoPE: Sendable {
    /// Head width.
    public let headDim: Int
    /// Rotated dimensions (≤ headDim).
    public let ropeDim: Int
    /// Which dimensions are rotated together.
    public let pairing: RoPEPairing
    /// Inverse frequencies, one per pair.
    public let invFreq: [Double]

    /// A RoPE for heads of `headDim` with the first `ropeDim` dims rotated.
    public init(headDim: Int, ropeDim: Int, base: Double, pairing: RoPEPairing = .interleaved) {
        self.headDim = headDim
        self.ropeDim = ropeDim
        self.pairing = pairing
        invFreq = (0..<ropeDim / 2).map { i in pow(base, -Double(2 * i) / Double(ropeDim)) }
    }

    /// The RoPE a model with `config` uses.
    public init(config: ModelConfig) {
        self.init(headDim: config.headDim, ropeDim: config.ropeDim, base: config.ropeBase, pairing: config.features.ropePairing)
    }

    /// Fills `table` with [cos, sin] pairs for `position`: 2 · ropeDim/2 floats.
    /// Angles are computed in Double: positions of a long document would lose radians in Float.
    public func fillTable(position: Int, _ table: UnsafeMutablePointer<Float>) {
        let p = Double(position)
        for i in 0..<ropeDim / 2 {
            let a = p * invFreq[i]
            table[2 * i] = Float(cos(a))
            table[2 * i + 1] = Float(sin(a))
        }
    }

    /// Rotates `heads` consecutive head vectors at `x` in place using a table from `fillTable`.
    @inline(__always)
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, table: UnsafePointer<Float>) {
        for h in 0..<heads {
            let v = x + h * headDim
            rotate(v, table: table, into: v)
        }
    }

    /// Rotates one head `src` into `dst` (which may be `src`) using a table from `fillTable`;
    /// dimensions past `ropeDim` are copied.
    @inline(__always)
    public func rotate(_ src: UnsafePointer<Float>, table t: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        let half = ropeDim / 2
        // Pair i is (src[i·stride], src[i·stride + offset]).
        let (stride, offset) = pairing == .interleaved ? (2, 1) : (1, half)
        for i in 0..<half {
            let c = t[2 * i], s = t[2 * i + 1]
            let ia = i * stride, ib = ia + offset
            let a = src[ia], b = src[ib]
            dst[ia] = a * c - b * s
            dst[ib] = a * s + b * c
        }
        if UnsafePointer(dst) != src {
            var i = ropeDim
            while i < headDim { dst[i] = src[i]; i += 1 }
        }
    }
}
