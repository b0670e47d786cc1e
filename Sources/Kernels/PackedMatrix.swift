import CKernels

/// A weight matrix (rows x cols = out x in) repacked from ggml block data into the kernels'
/// interleaved format. Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q8_0 and Q5_K are stored exactly; Q6_K, F16, BF16 and
/// F32 are requantized to 8 bits per element with a scale and minimum per 32 (absolute error at
/// most (max - min) / 510 of each block of 32, see `isExact`).
public final class PackedMatrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    /// ggml type id of the source data.
    public let type: UInt32
    /// The C packed matrix; heap-allocated so its address is stable for the C calls.
    let storage: UnsafeMutablePointer<lh_packed>

    /// Repacks `rows` rows of `cols` elements of ggml data of type `type` (row-major, each row
    /// `cols / blockSize` blocks). The source memory is not retained.
    public init(type: UInt32, data: UnsafeRawPointer, rows: Int, cols: Int) throws(KernelError) {
        var p = lh_packed()
        let rc = lh_pack(&p, Int32(bitPattern: type), data, Int64(rows), Int64(cols))
        switch rc {
        case Int32(LH_OK): break
        case Int32(LH_ERR_TYPE): throw .unsupportedType(type: type, rows: rows, cols: cols)
        case Int32(LH_ERR_SHAPE): throw .invalidShape(type: type, rows: rows, cols: cols)
        default: throw .outOfMemory(type: type, rows: rows, cols: cols)
        }
        self.rows = rows
        self.cols = cols
        self.type = type
        storage = .allocate(capacity: 1)
        storage.initialize(to: p)
    }

    deinit {
        lh_packed_free(storage)
        storage.deallocate()
    }

    /// True when the packed values equal the source values exactly (no requantization).
    public var isExact: Bool { storage.pointee.exact != 0 }
    /// Bits per stored weight (4 or 8).
    public var bits: Int { Int(storage.pointee.bits) }
    /// Bytes of packed data.
    public var byteCount: Int { Int(lh_packed_bytes(storage)) }

    /// The packed (possibly requantized) values of row `row` as floats.
    public func dequantizeRow(_ row: Int, into dst: UnsafeMutablePointer<Float>) {
        precondition(row >= 0 && row < rows, "row \(row) out of 0..<\(rows)")
        lh_packed_dequantize_row(storage, Int32(row), dst)
    }
}
