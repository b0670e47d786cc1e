import Foundation
import Testing
@testable import GGUF

/// Little-endian bytes for hand-built headers.
private struct Bytes {
    var b = [UInt8]()
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); b.append(contentsOf: s.utf8) }
    /// Magic, version 3, and the two counts.
    init(tensors: UInt64, kvs: UInt64) { u32(0x4655_4747); u32(3); u64(tensors); u64(kvs) }
}

/// Hostile or inconsistent files: each is a typed error naming the key or tensor, never a trap or a
/// huge allocation (issue 14).
@Suite struct GGUFLimitsTests {
    @Test func deeplyNestedArraysAreRefusedWithoutRecursingFurther() throws {
        // 40,000 nested arrays overflowed the stack before depth was bounded.
        var b = Bytes(tensors: 0, kvs: 1)
        b.str("deep")
        b.u32(GGUFValueType.array.rawValue)
        for _ in 0..<40_000 { b.u32(GGUFValueType.array.rawValue); b.u64(1) }
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: b.b, name: "deep.gguf") }
        do { _ = try GGUFFile(bytes: b.b, name: "deep.gguf") } catch {
            guard case .nestingTooDeep(_, let key, _) = error else { Issue.record("got \(error)"); return }
            #expect(key == "deep")
            #expect(error.description.contains("deep.gguf"))
        }
        // The deepest allowed nesting still reads.
        var ok = Bytes(tensors: 0, kvs: 1)
        ok.str("nest")
        ok.u32(GGUFValueType.array.rawValue)
        for _ in 0..<(GGUFLimits.maxArrayDepth - 1) { ok.u32(GGUFValueType.array.rawValue); ok.u64(1) }
        ok.u32(GGUFValueType.uint8.rawValue); ok.u64(1); ok.b.append(7)
        _ = try GGUFFile(bytes: ok.b)
    }

    @Test func countsBeyondTheFileAreRefusedBeforeAllocation() throws {
        // An array of 2^40 u64 (8 bytes each) in a file of a few dozen bytes.
        var a = Bytes(tensors: 0, kvs: 1)
        a.str("big"); a.u32(GGUFValueType.array.rawValue); a.u32(GGUFValueType.uint64.rawValue); a.u64(1 << 40)
        a.b += [UInt8](repeating: 0, count: 64)
        #expect { try GGUFFile(bytes: a.b) } throws: { e in
            guard case .truncated(_, _, _, _, let what) = e as? GGUFError else { return false }
            return what.contains("big")
        }
        // Array length that fits the bytes (u8) but exceeds the element bound.
        var c = Bytes(tensors: 0, kvs: 1)
        c.str("many"); c.u32(GGUFValueType.array.rawValue); c.u32(GGUFValueType.uint8.rawValue)
        c.u64(UInt64(GGUFLimits.maxArrayCount + 1))
        c.b += [UInt8](repeating: 0, count: GGUFLimits.maxArrayCount + 1)
        #expect { try GGUFFile(bytes: c.b) } throws: { e in
            guard case .badMetadata(_, let key, _) = e as? GGUFError else { return false }
            return key == "many"
        }
        // Tensor and key counts far beyond the file.
        let t = Bytes(tensors: 1 << 50, kvs: 0)
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: t.b + [UInt8](repeating: 0, count: 100)) }
        let k = Bytes(tensors: 0, kvs: UInt64.max)
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: k.b + [UInt8](repeating: 0, count: 100)) }
    }

    @Test func alignmentMustBeABoundedPowerOfTwo() throws {
        for bad: UInt32 in [0, 3, 48, 1 << 21] {
            var w = sampleWriter()
            w.set("general.alignment", .uint32(bad))
            #expect(throws: GGUFError.badMetadata(path: "<memory>", key: "general.alignment",
                                                  reason: "uint32(\(bad)) is not a power of two in 1...\(GGUFLimits.maxAlignment)")) {
                try GGUFFile(bytes: w.serialized())
            }
        }
        var w = sampleWriter()
        w.set("general.alignment", .string("64"))
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: w.serialized()) }
        let f = try GGUFFile(bytes: GGUFWriter(alignment: 64).serialized())
        #expect(f.alignment == 64)
    }

    @Test func tensorOffsetsAreAlignedInsideAndDisjoint() throws {
        var mis = sampleWriter()
        mis.offsetOverrides["a"] = 64 + 4
        #expect(throws: GGUFError.misalignedTensor(path: "<memory>", tensor: "a", offset: 68, alignment: 32)) {
            try GGUFFile(bytes: mis.serialized())
        }
        // "a" (32 bytes) placed at offset 32 overlaps "q" (34 bytes at offset 0).
        var over = sampleWriter()
        over.offsetOverrides["a"] = 32
        #expect(throws: GGUFError.overlappingTensors(path: "<memory>", first: "q", second: "a")) {
            try GGUFFile(bytes: over.serialized())
        }
        var out = sampleWriter()
        out.offsetOverrides["a"] = 1 << 20
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: out.serialized()) }
        // Unchanged, the same file reads, from memory as from disk.
        let f = try GGUFFile(bytes: sampleWriter().serialized())
        #expect(f.tensorNames == ["q", "a"])
    }

    @Test func dimensionsArePositiveBoundedAndFew() throws {
        var w = GGUFWriter()
        w.addTensor("t", dims: [4], floats: [1, 2, 3, 4])
        var bytes = w.serialized()
        // The first dimension of "t" sits after magic, version, counts (24) and the name (8 + 1), n_dims (4).
        let dimAt = 24 + 9 + 4
        for bad: UInt64 in [0, UInt64(GGUFLimits.maxDimension) + 1, UInt64.max] {
            withUnsafeBytes(of: bad.littleEndian) { for i in 0..<8 { bytes[dimAt + i] = $0[i] } }
            #expect { try GGUFFile(bytes: bytes) } throws: { e in
                guard case .badTensorShape(_, let t, _, _) = e as? GGUFError else { return false }
                return t == "t"
            }
        }
        var nd = w.serialized()
        nd[dimAt - 4] = 5
        #expect(throws: GGUFError.badTensorShape(path: "<memory>", tensor: "t", dims: [], reason: "5 dimensions")) {
            try GGUFFile(bytes: nd)
        }
    }
}
