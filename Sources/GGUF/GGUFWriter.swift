import Foundation

/// Writes GGUF version 3 files (layout in GGUFFile.swift). Used to build tiny models for tests and tools.
public struct GGUFWriter {
    private var kv: [(String, GGUFValue)] = []
    private var tensorList: [(name: String, dims: [Int], type: TensorType, data: [UInt8])] = []
    /// Data alignment written to `general.alignment`.
    public var alignment: Int
    /// Data offsets to write instead of the computed ones, by tensor name (tests build broken files with it).
    public var offsetOverrides: [String: Int] = [:]

    /// An empty file description.
    public init(alignment: Int = 32) { self.alignment = alignment }

    /// Adds (or replaces) a metadata value.
    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = kv.firstIndex(where: { $0.0 == key }) { kv[i].1 = value } else { kv.append((key, value)) }
    }

    /// Adds a tensor with raw ggml block data; `dims` fastest-varying first.
    public mutating func addTensor(_ name: String, dims: [Int], type: TensorType, data: [UInt8]) {
        precondition(type.byteCount(elements: dims.reduce(1, *)) == data.count, "tensor \(name): size mismatch")
        tensorList.append((name, dims, type, data))
    }

    /// Replaces the data, shape and type of the tensor called `name` (keeping its place in the file).
    public mutating func replaceTensor(_ name: String, dims: [Int], type: TensorType, data: [UInt8]) {
        precondition(type.byteCount(elements: dims.reduce(1, *)) == data.count, "tensor \(name): size mismatch")
        guard let i = tensorList.firstIndex(where: { $0.name == name }) else { preconditionFailure("no tensor \(name)") }
        tensorList[i] = (name, dims, type, data)
    }

    /// Adds an F32 tensor.
    public mutating func addTensor(_ name: String, dims: [Int], floats: [Float]) {
        var bytes = [UInt8](repeating: 0, count: floats.count * 4)
        bytes.withUnsafeMutableBytes { dst in floats.withUnsafeBytes { dst.copyMemory(from: $0) } }
        addTensor(name, dims: dims, type: .f32, data: bytes)
    }

    /// The file's bytes.
    public func serialized() -> [UInt8] {
        var out = [UInt8]()
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func putString(_ s: String) { put(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
        func putValue(_ v: GGUFValue) {
            switch v {
            case .uint8(let x): put(x)
            case .int8(let x): put(x)
            case .uint16(let x): put(x)
            case .int16(let x): put(x)
            case .uint32(let x): put(x)
            case .int32(let x): put(x)
            case .uint64(let x): put(x)
            case .int64(let x): put(x)
            case .float32(let x): put(x.bitPattern)
            case .float64(let x): put(x.bitPattern)
            case .bool(let x): put(UInt8(x ? 1 : 0))
            case .string(let s): putString(s)
            case .array(let et, let items):
                put(et.rawValue)
                put(UInt64(items.count))
                for i in items { putValue(i) }
            }
        }
        var pairs = kv
        if !pairs.contains(where: { $0.0 == "general.alignment" }) && alignment != 32 {
            pairs.append(("general.alignment", .uint32(UInt32(alignment))))
        }
        put(UInt32(0x4655_4747))
        put(UInt32(3))
        put(UInt64(tensorList.count))
        put(UInt64(pairs.count))
        for (k, v) in pairs {
            putString(k)
            put(v.type.rawValue)
            putValue(v)
        }
        var offset = 0
        var offsets = [Int]()
        for t in tensorList {
            offsets.append(offset)
            offset += (t.data.count + alignment - 1) / alignment * alignment
        }
        for (t, off) in zip(tensorList, offsets) {
            putString(t.name)
            put(UInt32(t.dims.count))
            for d in t.dims { put(UInt64(d)) }
            put(t.type.rawValue)
            put(UInt64(offsetOverrides[t.name] ?? off))
        }
        func pad() { while out.count % alignment != 0 { out.append(0) } }
        pad()
        for t in tensorList {
            out.append(contentsOf: t.data)
            pad()
        }
        return out
    }

    /// Writes the file to `path`.
    public func write(to path: String) throws {
        try Data(serialized()).write(to: URL(fileURLWithPath: path))
    }
}

/// Converts a Float to IEEE half-precision bits (round to nearest even), for building F16 scales.
public func floatToHalfBits(_ f: Float) -> UInt16 {
    Float16(f).bitPattern
}
