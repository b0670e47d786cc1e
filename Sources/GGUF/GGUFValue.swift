/// One metadata value of a GGUF file (gguf.md, "Key-value pairs": the 13 value types).
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8)
    case int8(Int8)
    case uint16(UInt16)
    case int16(Int16)
    case uint32(UInt32)
    case int32(Int32)
    case uint64(UInt64)
    case int64(Int64)
    case float32(Float)
    case float64(Double)
    case bool(Bool)
    case string(String)
    /// A homogeneous array; `elementType` is kept so that an empty array round-trips.
    case array(elementType: GGUFValueType, [GGUFValue])

    /// The value as a string, if it is one.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// Any integer type (or bool) as `Int`; nil for floats, strings, arrays, and u64 values beyond `Int.max`.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return v <= UInt64(Int.max) ? Int(v) : nil
        case .int64(let v): return Int(v)
        case .bool(let v): return v ? 1 : 0
        default: return nil
        }
    }

    /// Any numeric value as `Double`.
    public var floatValue: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return intValue.map(Double.init)
        }
    }

    /// The value as a bool (integers: non-zero is true).
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return intValue.map { $0 != 0 }
    }

    /// The elements, if this is an array.
    public var arrayValue: [GGUFValue]? {
        if case .array(_, let a) = self { return a }
        return nil
    }

    /// An array of strings, if every element is a string.
    public var stringArray: [String]? {
        guard let a = arrayValue else { return nil }
        var out = [String]()
        out.reserveCapacity(a.count)
        for v in a {
            guard let s = v.stringValue else { return nil }
            out.append(s)
        }
        return out
    }

    /// An array of integers, if every element is an integer.
    public var intArray: [Int]? {
        guard let a = arrayValue else { return nil }
        var out = [Int]()
        out.reserveCapacity(a.count)
        for v in a {
            guard let i = v.intValue else { return nil }
            out.append(i)
        }
        return out
    }

    /// An array of floats, if every element is numeric.
    public var floatArray: [Float]? {
        guard let a = arrayValue else { return nil }
        var out = [Float]()
        out.reserveCapacity(a.count)
        for v in a {
            guard let f = v.floatValue else { return nil }
            out.append(Float(f))
        }
        return out
    }

    /// The wire type of this value.
    public var type: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .uint64: .uint64
        case .int64: .int64
        case .float32: .float32
        case .float64: .float64
        case .bool: .bool
        case .string: .string
        case .array: .array
        }
    }
}

/// The wire type ids of GGUF metadata values (gguf.md, `gguf_metadata_value_type`).
public enum GGUFValueType: UInt32, Sendable, Equatable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6
    case bool = 7, string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12
}
