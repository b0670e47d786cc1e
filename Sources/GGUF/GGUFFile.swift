#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// GGUF byte layout (little-endian; ggml's docs/gguf.md, versions 2 and 3):
//
//   u32  magic            "GGUF" = 0x46554747
//   u32  version          2 or 3 (1 used u32 counts and is refused)
//   u64  tensor_count
//   u64  metadata_kv_count
//   metadata_kv_count × { string key; u32 value_type; value }
//        string = { u64 length; u8 bytes[length] }   (UTF-8, no terminator)
//        array  = { u32 element_type; u64 count; element × count }
//   tensor_count × { string name; u32 n_dims; u64 ne[n_dims]; u32 type; u64 offset }
//   padding to `general.alignment` (default 32)
//   tensor data: each tensor at data_start + offset, offset a multiple of the alignment.
//
// ne[0] is the fastest-varying dimension: a weight matrix [out, in] has ne = [in, out].

/// Errors from reading a GGUF file; each names what and where.
public enum GGUFError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case notGGUF(path: String, magic: UInt32)
    case unsupportedVersion(path: String, version: UInt32)
    case truncated(path: String, offset: Int, needed: Int, fileSize: Int, reading: String)
    case invalidValueType(path: String, offset: Int, type: UInt32, key: String)
    case invalidString(path: String, offset: Int, reading: String)
    case unknownTensorType(path: String, tensor: String, type: UInt32)
    case badTensorShape(path: String, tensor: String, dims: [Int], reason: String)
    case tensorOutOfBounds(path: String, tensor: String, start: Int, end: Int, fileSize: Int)
    case duplicateKey(path: String, key: String)
    case missingKey(path: String, key: String)
    case wrongKeyType(path: String, key: String, expected: String)
    case missingTensor(path: String, tensor: String)
    /// A metadata value that parses but cannot be right (alignment not a power of two, a count too large, …).
    case badMetadata(path: String, key: String, reason: String)
    /// Metadata arrays nested deeper than `GGUFLimits.maxArrayDepth`.
    case nestingTooDeep(path: String, key: String, offset: Int)
    /// A tensor whose data offset is not a multiple of the file's alignment.
    case misalignedTensor(path: String, tensor: String, offset: Int, alignment: Int)
    /// Two tensors whose data overlap.
    case overlappingTensors(path: String, first: String, second: String)

    public var description: String {
        switch self {
        case .cannotOpen(let p, let r): "\(p): cannot open model file: \(r)"
        case .notGGUF(let p, let m):
            "\(p): not a GGUF file (magic 0x\(String(m, radix: 16)) at offset 0, expected 0x46554747 \"GGUF\")"
        case .unsupportedVersion(let p, let v): "\(p): unsupported GGUF version \(v) (supported: 2, 3)"
        case .truncated(let p, let o, let n, let s, let what):
            "\(p): truncated GGUF file: reading \(what) needs \(n) bytes at offset \(o), but the file has \(s) bytes"
        case .invalidValueType(let p, let o, let t, let k):
            "\(p): invalid metadata value type \(t) for key '\(k)' at offset \(o)"
        case .invalidString(let p, let o, let what): "\(p): invalid UTF-8 in \(what) at offset \(o)"
        case .unknownTensorType(let p, let t, let ty): "\(p): tensor '\(t)' has unknown ggml type \(ty)"
        case .badTensorShape(let p, let t, let d, let r): "\(p): tensor '\(t)' has bad shape \(d): \(r)"
        case .tensorOutOfBounds(let p, let t, let a, let b, let s):
            "\(p): truncated GGUF file: tensor '\(t)' spans bytes \(a)..<\(b) but the file has \(s) bytes"
        case .duplicateKey(let p, let k): "\(p): duplicate metadata key '\(k)'"
        case .missingKey(let p, let k): "\(p): missing metadata key '\(k)'"
        case .wrongKeyType(let p, let k, let e): "\(p): metadata key '\(k)' is not \(e)"
        case .missingTensor(let p, let t): "\(p): missing tensor '\(t)'"
        case .badMetadata(let p, let k, let r): "\(p): bad metadata '\(k)': \(r)"
        case .nestingTooDeep(let p, let k, let o):
            "\(p): metadata key '\(k)' nests arrays deeper than \(GGUFLimits.maxArrayDepth) at offset \(o)"
        case .misalignedTensor(let p, let t, let o, let a):
            "\(p): tensor '\(t)' data offset \(o) is not a multiple of the alignment \(a)"
        case .overlappingTensors(let p, let a, let b): "\(p): tensors '\(a)' and '\(b)' overlap in the file"
        }
    }
}

/// Bounds the reader enforces before it allocates anything a file asks for.
///
/// gguf.md bounds none of these; they are far above what any real model uses (vocabularies are
/// ≤ 256 Ki tokens, arrays are one level deep, alignment is 32) and low enough that a hostile file
/// cannot exhaust the stack or memory.
public enum GGUFLimits {
    /// Deepest nesting of metadata arrays (an array of arrays is depth 2).
    public static let maxArrayDepth = 8
    /// Most elements in one metadata array.
    public static let maxArrayCount = 1 << 24
    /// Largest `general.alignment` (a power of two).
    public static let maxAlignment = 1 << 20
    /// Most dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
    public static let maxDims = 4
    /// Largest single dimension of a tensor.
    public static let maxDimension = 1 << 40
}

/// Where one tensor lives in the file and what it holds.
public struct GGUFTensorInfo: Sendable {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    public let name: String
    /// Dimensions, fastest-varying first (ggml `ne`).
    public let dims: [Int]
    /// Element type.
    public let type: TensorType
    /// Absolute byte offset of the data in the file.
    public let fileOffset: Int
    /// Size of the data in bytes.
    public let byteCount: Int
    /// Number of elements.
    public var elementCount: Int { dims.reduce(1, *) }
}

/// A GGUF file, memory-mapped read-only. Tensor data is not copied: `data(of:)` points into the mapping,
/// which lives as long as this object.
public final class GGUFFile: @unchecked Sendable {
    /// Path the file was opened from.
    public let path: String
    /// GGUF format version (2 or 3).
    public let version: UInt32
    /// Metadata, by key, in file order available through `metadataKeys`.
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Tensors by name.
    public let tensors: [String: GGUFTensorInfo]
    /// Tensor names in file order.
    public let tensorNames: [String]
    /// Data alignment (`general.alignment`, default 32).
    public let alignment: Int
    /// Size of the file in bytes.
    public let fileSize: Int

    private let base: UnsafeRawPointer
    private let mappedLength: Int
    private let mapped: Bool

    /// Opens and validates `path`: header, every metadata value, every tensor's extent within the file.
    public convenience init(path: String) throws(GGUFError) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .cannotOpen(path: path, reason: "not a regular file") }
        let size = Int(st.st_size)
        guard size >= 4 else {
            throw .truncated(path: path, offset: 0, needed: 4, fileSize: size, reading: "magic")
        }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw .cannotOpen(path: path, reason: "mmap failed: " + String(cString: strerror(errno)))
        }
        try self.init(path: path, base: UnsafeRawPointer(m), size: size, mapped: true)
    }

    /// Parses a GGUF image held in memory (the fuzz targets and tests use this); `name` stands for the
    /// path in errors. The bytes are copied.
    public convenience init(bytes: [UInt8], name: String = "<memory>") throws(GGUFError) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: bytes.count) } }
        try self.init(path: name, base: UnsafeRawPointer(p), size: bytes.count, mapped: false)
    }

    /// Parses the image at `base` and takes ownership of it (unmapped or freed on error and in `deinit`).
    private init(path: String, base: UnsafeRawPointer, size: Int, mapped: Bool) throws(GGUFError) {
        self.path = path
        self.base = base
        mappedLength = size
        self.mapped = mapped
        fileSize = size
        do {
            var r = Reader(base: base, size: size, path: path)
            let magic = try r.u32("magic")
            guard magic == 0x4655_4747 else { throw GGUFError.notGGUF(path: path, magic: magic) }
            version = try r.u32("version")
            guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(path: path, version: version) }
            // Each tensor info takes at least 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset)
            // bytes, each key/value at least 8 (key length) + 4 (type) + 1 (a u8 value): counts beyond what the
            // rest of the file can hold are refused before anything is reserved for them.
            let tensorCount = try r.count("tensor count", minItemBytes: 32)
            let kvCount = try r.count("metadata count", minItemBytes: 13)
            var md = [String: GGUFValue]()
            var keys = [String]()
            for _ in 0..<kvCount {
                let key = try r.string("metadata key")
                let typeOffset = r.offset
                let rawType = try r.u32("value type of '\(key)'")
                guard let t = GGUFValueType(rawValue: rawType) else {
                    throw GGUFError.invalidValueType(path: path, offset: typeOffset, type: rawType, key: key)
                }
                let v = try r.value(t, key: key, depth: 0)
                guard md.updateValue(v, forKey: key) == nil else { throw GGUFError.duplicateKey(path: path, key: key) }
                keys.append(key)
            }
            metadata = md
            metadataKeys = keys
            // gguf.md: `general.alignment` is a u32, a nonzero power of two; 32 when absent.
            if let a = md["general.alignment"] {
                guard let align = a.intValue, align > 0, align & (align - 1) == 0, align <= GGUFLimits.maxAlignment else {
                    throw GGUFError.badMetadata(path: path, key: "general.alignment",
                                                reason: "\(a) is not a power of two in 1...\(GGUFLimits.maxAlignment)")
                }
                alignment = align
            } else {
                alignment = 32
            }

            struct Raw { let name: String; let dims: [Int]; let type: UInt32; let offset: UInt64 }
            var raws = [Raw]()
            raws.reserveCapacity(tensorCount)
            for _ in 0..<tensorCount {
                let name = try r.string("tensor name")
                let nd = try r.u32("dimension count of '\(name)'")
                guard nd >= 1, nd <= GGUFLimits.maxDims else {
                    throw GGUFError.badTensorShape(path: path, tensor: name, dims: [], reason: "\(nd) dimensions")
                }
                var dims = [Int]()
                for _ in 0..<nd {
                    let d = try r.u64("dimensions of '\(name)'")
                    guard d > 0, d <= UInt64(GGUFLimits.maxDimension) else {
                        throw GGUFError.badTensorShape(path: path, tensor: name, dims: dims + [Int(truncatingIfNeeded: d)], reason: "dimension out of range")
                    }
                    dims.append(Int(d))
                }
                let type = try r.u32("type of '\(name)'")
                let off = try r.u64("offset of '\(name)'")
                raws.append(Raw(name: name, dims: dims, type: type, offset: off))
            }
            let dataStart = (r.offset + alignment - 1) / alignment * alignment
            var infos = [String: GGUFTensorInfo]()
            var names = [String]()
            for raw in raws {
                guard let type = TensorType(rawValue: raw.type) else {
                    throw GGUFError.unknownTensorType(path: path, tensor: raw.name, type: raw.type)
                }
                var n = 1
                for d in raw.dims {
                    let (p, o) = n.multipliedReportingOverflow(by: d)
                    guard !o else { throw GGUFError.badTensorShape(path: path, tensor: raw.name, dims: raw.dims, reason: "too many elements") }
                    n = p
                }
                guard raw.dims[0] % type.blockSize == 0, let bytes = type.byteCount(elements: n) else {
                    throw GGUFError.badTensorShape(path: path, tensor: raw.name, dims: raw.dims,
                                                   reason: "row of \(raw.dims[0]) is not a multiple of the \(type) block size \(type.blockSize)")
                }
                guard raw.offset < UInt64(size) else {
                    throw GGUFError.tensorOutOfBounds(path: path, tensor: raw.name, start: dataStart + Int(truncatingIfNeeded: raw.offset & 0xFFFF_FFFF_FFFF), end: -1, fileSize: size)
                }
                // gguf.md: every offset is a multiple of `general.alignment` (relative to the data section,
                // which itself starts aligned).
                guard raw.offset % UInt64(alignment) == 0 else {
                    throw GGUFError.misalignedTensor(path: path, tensor: raw.name, offset: Int(raw.offset), alignment: alignment)
                }
                let start = dataStart + Int(raw.offset)
                guard bytes <= size, start <= size - bytes else {
                    throw GGUFError.tensorOutOfBounds(path: path, tensor: raw.name, start: start, end: start &+ bytes, fileSize: size)
                }
                guard infos[raw.name] == nil else { throw GGUFError.duplicateKey(path: path, key: "tensor " + raw.name) }
                infos[raw.name] = GGUFTensorInfo(name: raw.name, dims: raw.dims, type: type, fileOffset: start, byteCount: bytes)
                names.append(raw.name)
            }
            // No two tensors may share bytes: a writer that did so (or a crafted file) would make one
            // tensor's weights another's.
            let byStart = names.compactMap { infos[$0] }.filter { $0.byteCount > 0 }.sorted { $0.fileOffset < $1.fileOffset }
            for (a, b) in zip(byStart, byStart.dropFirst()) where a.fileOffset + a.byteCount > b.fileOffset {
                throw GGUFError.overlappingTensors(path: path, first: a.name, second: b.name)
            }
            tensors = infos
            tensorNames = names
        } catch let e as GGUFError {
            Self.release(base, size, mapped: mapped)
            throw e
        } catch {
            Self.release(base, size, mapped: mapped)
            fatalError("unreachable: \(error)")
        }
    }

    private static func release(_ base: UnsafeRawPointer, _ length: Int, mapped: Bool) {
        if mapped {
            munmap(UnsafeMutableRawPointer(mutating: base), length)
        } else {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }

    deinit { Self.release(base, mappedLength, mapped: mapped) }

    /// Pointer to a tensor's data inside the mapping (valid while `self` lives).
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawPointer {
        base + tensor.fileOffset
    }

    /// The tensor called `name`, or a `missingTensor` error.
    public func tensor(_ name: String) throws(GGUFError) -> GGUFTensorInfo {
        guard let t = tensors[name] else { throw .missingTensor(path: path, tensor: name) }
        return t
    }

    /// Required integer metadata.
    public func int(_ key: String) throws(GGUFError) -> Int {
        guard let v = metadata[key] else { throw .missingKey(path: path, key: key) }
        guard let i = v.intValue else { throw .wrongKeyType(path: path, key: key, expected: "an integer") }
        return i
    }

    /// Required numeric metadata.
    public func float(_ key: String) throws(GGUFError) -> Double {
        guard let v = metadata[key] else { throw .missingKey(path: path, key: key) }
        guard let f = v.floatValue else { throw .wrongKeyType(path: path, key: key, expected: "a number") }
        return f
    }

    /// Required string metadata.
    public func string(_ key: String) throws(GGUFError) -> String {
        guard let v = metadata[key] else { throw .missingKey(path: path, key: key) }
        guard let s = v.stringValue else { throw .wrongKeyType(path: path, key: key, expected: "a string") }
        return s
    }
}

/// Bounds-checked little-endian cursor over the mapping.
private struct Reader {
    let base: UnsafeRawPointer
    let size: Int
    let path: String
    var offset = 0

    mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws(GGUFError) {
        guard n >= 0, n <= size - offset else {
            throw .truncated(path: path, offset: offset, needed: n, fileSize: size, reading: what())
        }
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws(GGUFError) -> T {
        try need(MemoryLayout<T>.size, what())
        let v = T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return v
    }

    mutating func u32(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt32 { try load(UInt32.self, what()) }
    mutating func u64(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt64 { try load(UInt64.self, what()) }

    /// A u64 count of items of at least `minItemBytes` each that must fit the remaining bytes, checked
    /// before anything is allocated for them.
    mutating func count(_ what: @autoclosure () -> String, minItemBytes: Int = 1) throws(GGUFError) -> Int {
        let at = offset
        let n = try u64(what())
        let remaining = UInt64(size - offset)
        let (need, o) = n.multipliedReportingOverflow(by: UInt64(minItemBytes))
        guard !o, n == 0 || need <= remaining else {
            throw .truncated(path: path, offset: at, needed: o ? Int.max : Int(min(need, UInt64(Int.max))), fileSize: size, reading: what())
        }
        return Int(n)
    }

    /// Fewest bytes one value of type `t` takes.
    static func minBytes(_ t: GGUFValueType) -> Int {
        switch t {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64, .string: 8
        case .array: 12
        }
    }

    mutating func string(_ what: @autoclosure () -> String) throws(GGUFError) -> String {
        let at = offset
        let n = try count(what())
        try need(n, what())
        let buf = UnsafeRawBufferPointer(start: base + offset, count: n)
        guard let s = String(validating: buf.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw .invalidString(path: path, offset: at, reading: what())
        }
        offset += n
        return s
    }

    /// One value of type `t`; `depth` counts the arrays it sits in (bounded, so the recursion is too).
    mutating func value(_ t: GGUFValueType, key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        switch t {
        case .uint8: return .uint8(try load(UInt8.self, "value of '\(key)'"))
        case .int8: return .int8(try load(Int8.self, "value of '\(key)'"))
        case .uint16: return .uint16(try load(UInt16.self, "value of '\(key)'"))
        case .int16: return .int16(try load(Int16.self, "value of '\(key)'"))
        case .uint32: return .uint32(try load(UInt32.self, "value of '\(key)'"))
        case .int32: return .int32(try load(Int32.self, "value of '\(key)'"))
        case .uint64: return .uint64(try load(UInt64.self, "value of '\(key)'"))
        case .int64: return .int64(try load(Int64.self, "value of '\(key)'"))
        case .float32: return .float32(Float(bitPattern: try load(UInt32.self, "value of '\(key)'")))
        case .float64: return .float64(Double(bitPattern: try load(UInt64.self, "value of '\(key)'")))
        case .bool: return .bool(try load(UInt8.self, "value of '\(key)'") != 0)
        case .string: return .string(try string("value of '\(key)'"))
        case .array:
            let typeOffset = offset
            guard depth < GGUFLimits.maxArrayDepth else { throw .nestingTooDeep(path: path, key: key, offset: typeOffset) }
            let raw = try u32("array type of '\(key)'")
            guard let et = GGUFValueType(rawValue: raw) else {
                throw .invalidValueType(path: path, offset: typeOffset, type: raw, key: key)
            }
            let countOffset = offset
            let n = try count("array length of '\(key)'", minItemBytes: Self.minBytes(et))
            guard n <= GGUFLimits.maxArrayCount else {
                throw .badMetadata(path: path, key: key, reason: "array of \(n) elements at offset \(countOffset) (at most \(GGUFLimits.maxArrayCount))")
            }
            var items = [GGUFValue]()
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try value(et, key: key, depth: depth + 1)) }
            return .array(elementType: et, items)
        }
    }
}
