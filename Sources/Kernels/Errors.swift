/// Errors of the Kernels module. Each case carries the ggml type id and shape it concerns.
public enum KernelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The ggml type cannot be repacked or dequantized by these kernels.
    case unsupportedType(type: UInt32, rows: Int, cols: Int)
    /// The shape does not fit the packed format: `cols` must be a positive multiple of 32 (and
    /// of 256 for K-quants), `rows` positive.
    case invalidShape(type: UInt32, rows: Int, cols: Int)
    /// Allocation of the packed matrix failed.
    case outOfMemory(type: UInt32, rows: Int, cols: Int)

    public var description: String {
        switch self {
        case let .unsupportedType(t, r, c):
            "unsupported weight type \(WeightType.name(of: t)) for a \(r)x\(c) matrix"
        case let .invalidShape(t, r, c):
            "invalid shape \(r)x\(c) for \(WeightType.name(of: t)) weights (columns must be a positive multiple of 32, or 256 for K-quants)"
        case let .outOfMemory(t, r, c):
            "out of memory packing a \(r)x\(c) \(WeightType.name(of: t)) matrix"
        }
    }
}
