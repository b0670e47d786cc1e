import CKernels

/// The ggml weight types the kernels can dequantize and multiply with (ids as in GGUF files).
public enum WeightType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q4_K = 12, q5_K = 13, q6_K = 14, bf16 = 30

    /// Elements per block (1 for the float types).
    public var blockSize: Int { Int(lh_type_block_size(Int32(rawValue))) }
    /// Bytes per block.
    public var blockBytes: Int { Int(lh_type_block_bytes(Int32(rawValue))) }
    /// Bytes of a row of `count` elements, or nil if `count` is not a whole number of blocks.
    public func rowBytes(count: Int) -> Int? {
        let b = lh_type_row_bytes(Int32(rawValue), Int64(count))
        return b < 0 ? nil : Int(b)
    }

    public var description: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        case .bf16: "BF16"
        }
    }

    static func name(of id: UInt32) -> String {
        WeightType(rawValue: id)?.description ?? "type \(id)"
    }
}

/// The SIMD implementations of the kernels.
public enum KernelPath: String, Sendable, CaseIterable {
    case scalar, avx2, avx512

    var id: Int32 {
        switch self {
        case .scalar: Int32(LH_PATH_SCALAR)
        case .avx2: Int32(LH_PATH_AVX2)
        case .avx512: Int32(LH_PATH_AVX512)
        }
    }

    /// Whether this CPU can run the path.
    public var isSupported: Bool { lh_path_supported(id) != 0 }

    /// The path in use: the best one the CPU supports, unless the environment variable
    /// LONGHEADS_KERNEL=scalar|avx2|avx512 names another supported one.
    public static var active: KernelPath {
        switch lh_active_path() {
        case Int32(LH_PATH_AVX512): .avx512
        case Int32(LH_PATH_AVX2): .avx2
        default: .scalar
        }
    }

    /// Name of the active path ("scalar", "avx2" or "avx512").
    public static var activePath: String { active.rawValue }
}

/// Reference (plain scalar) dequantization of `count` elements of ggml data of type `type`,
/// e.g. one embedding row. `count` must be a whole number of blocks of a supported type.
public func dequantizeRow(type: UInt32, _ src: UnsafeRawPointer, count: Int,
                          into dst: UnsafeMutablePointer<Float>) {
    let rc = lh_dequantize_row(Int32(bitPattern: type), src, dst, Int64(count))
    precondition(rc == 0, "dequantizeRow: unsupported type \(WeightType.name(of: type)) or count \(count)")
}
