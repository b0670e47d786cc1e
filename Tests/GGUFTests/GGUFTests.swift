import Foundation
import Testing
@testable import GGUF

/// A small file exercising every value type, arrays, and two tensors.
func sampleWriter() -> GGUFWriter {
    var w = GGUFWriter()
    w.set("general.architecture", .string("llama"))
    w.set("u8", .uint8(7)); w.set("i8", .int8(-7)); w.set("u16", .uint16(65535)); w.set("i16", .int16(-300))
    w.set("u32", .uint32(4_000_000_000)); w.set("i32", .int32(-5)); w.set("u64", .uint64(1 << 40))
    w.set("i64", .int64(-(1 << 40))); w.set("f32", .float32(1.5)); w.set("f64", .float64(-2.25)); w.set("b", .bool(true))
    w.set("s", .string("héllo ✓"))
    w.set("arr.s", .array(elementType: .string, [.string("a"), .string(""), .string("<|im_start|>")]))
    w.set("arr.i", .array(elementType: .int32, [.int32(1), .int32(-2)]))
    w.set("arr.empty", .array(elementType: .float32, []))
    w.set("arr.nested", .array(elementType: .array, [.array(elementType: .uint8, [.uint8(1)])]))
    w.addTensor("q", dims: [32, 1], type: .q8_0, data: [UInt8](repeating: 1, count: 34))
    // Last, and 32 bytes long, so that the file ends exactly at its last byte.
    w.addTensor("a", dims: [4, 2], floats: [1, 2, 3, 4, 5, 6, 7, 8])
    return w
}

func tempPath(_ name: String) -> String {
    NSTemporaryDirectory() + "gguf-test-\(getpid())-\(name).gguf"
}

@Suite struct GGUFReaderTests {
    @Test func roundTripsEveryValueType() throws {
        let p = tempPath("rt")
        try sampleWriter().write(to: p)
        defer { try? FileManager.default.removeItem(atPath: p) }
        let f = try GGUFFile(path: p)
        #expect(f.version == 3)
        #expect(try f.string("general.architecture") == "llama")
        #expect(f.metadata["u8"] == .uint8(7))
        #expect(f.metadata["i16"]?.intValue == -300)
        #expect(f.metadata["u32"]?.intValue == 4_000_000_000)
        #expect(f.metadata["i64"]?.intValue == -(1 << 40))
        #expect(f.metadata["f32"]?.floatValue == 1.5)
        #expect(f.metadata["f64"]?.floatValue == -2.25)
        #expect(f.metadata["b"]?.boolValue == true)
        #expect(f.metadata["s"]?.stringValue == "héllo ✓")
        #expect(f.metadata["arr.s"]?.stringArray == ["a", "", "<|im_start|>"])
        #expect(f.metadata["arr.i"]?.intArray == [1, -2])
        #expect(f.metadata["arr.empty"]?.floatArray == [])
        #expect(f.metadata["arr.nested"]?.arrayValue?.first?.arrayValue == [.uint8(1)])
        #expect(f.metadataKeys.first == "general.architecture")
        let a = try f.tensor("a")
        #expect(a.dims == [4, 2] && a.type == .f32 && a.byteCount == 32)
        #expect(a.fileOffset % 32 == 0)
        let floats = f.data(of: a).assumingMemoryBound(to: Float.self)
        #expect(floats[0] == 1 && floats[7] == 8)
        #expect(try f.tensor("q").type == .q8_0)
        #expect(f.tensorNames == ["q", "a"])
    }

    @Test func everyTruncationIsAClearError() throws {
        let bytes = sampleWriter().serialized()
        let p = tempPath("trunc")
        defer { try? FileManager.default.removeItem(atPath: p) }
        // Every prefix must fail with an error, never crash or succeed.
        for n in stride(from: 0, to: bytes.count, by: 7) {
            try Data(bytes[0..<n]).write(to: URL(fileURLWithPath: p))
            do {
                _ = try GGUFFile(path: p)
                Issue.record("prefix \(n) of \(bytes.count) parsed")
            } catch {
                switch error {
                case .truncated, .tensorOutOfBounds: break
                default: Issue.record("prefix \(n): unexpected \(error)")
                }
                #expect(error.description.contains(p))
            }
        }
    }

    @Test func rejectsNonGGUFAndBadVersion() throws {
        let p = tempPath("bad")
        defer { try? FileManager.default.removeItem(atPath: p) }
        try Data("hello, this is not a model file".utf8).write(to: URL(fileURLWithPath: p))
        #expect(throws: GGUFError.notGGUF(path: p, magic: 0x6c6c6568)) { try GGUFFile(path: p) }
        var bytes = sampleWriter().serialized()
        bytes[4] = 1
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        #expect(throws: GGUFError.unsupportedVersion(path: p, version: 1)) { try GGUFFile(path: p) }
        #expect(throws: GGUFError.self) { try GGUFFile(path: p + ".missing") }
    }

    @Test func rejectsUnknownTensorType() throws {
        var w = GGUFWriter()
        w.addTensor("t", dims: [4], floats: [1, 2, 3, 4])
        var bytes = w.serialized()
        // The tensor's type field sits just before its u64 offset at the end of the tensor info.
        let typeAt = 4 + 4 + 8 + 8 + (8 + 1) + 4 + 8
        #expect(bytes[typeAt] == 0)
        bytes[typeAt] = 99
        let p = tempPath("type")
        defer { try? FileManager.default.removeItem(atPath: p) }
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        #expect(throws: GGUFError.unknownTensorType(path: p, tensor: "t", type: 99)) { try GGUFFile(path: p) }
    }

    @Test func typeSizes() {
        #expect(TensorType.q4_1.byteCount(elements: 64) == 40)
        #expect(TensorType.q6_K.byteCount(elements: 512) == 420)
        #expect(TensorType.q4_K.byteCount(elements: 100) == nil)
    }
}
