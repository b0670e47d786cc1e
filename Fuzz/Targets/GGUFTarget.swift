// libFuzzer target: the GGUF reader, model config + whole-file validation, and building a tokenizer
// from the file's metadata — everything a model file given to `--model` goes through before any
// tensor is computed with. Built by Scripts/fuzz.sh together with Sources/Model/{Config,ModelValidation}.swift.
import GGUF
import Tokenization
#if !FUZZING
import Model  // in the fuzz build, Config.swift and ModelValidation.swift are compiled in
#endif

#if FUZZING
/// libFuzzer's entry point (Scripts/fuzz.sh builds with -D FUZZING; the unit tests call `fuzzGGUF` directly).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEntry(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt { fuzzGGUF(data, size) }
#endif

/// One fuzz input; returns 0 (libFuzzer's convention) unless it traps.
@discardableResult
func fuzzGGUF(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    guard let file = try? GGUFFile(bytes: bytes, name: "fuzz.gguf") else { return 0 }
    // Every tensor the reader accepts lies inside the image: touch its first and last byte (ASan
    // reports any read outside the heap copy).
    var sum: UInt8 = 0
    for name in file.tensorNames {
        guard let t = file.tensors[name] else { fatalError("tensor \(name) listed but absent") }
        precondition(t.fileOffset >= 0 && t.byteCount >= 0 && t.fileOffset + t.byteCount <= file.fileSize)
        if t.byteCount > 0 {
            let p = file.data(of: t).assumingMemoryBound(to: UInt8.self)
            sum &+= p[0] &+ p[t.byteCount - 1]
        }
    }
    if let config = try? ModelConfig(gguf: file) { _ = try? config.validate(against: file) }
    if let tokenizer = try? Tokenizer(gguf: file) {
        let ids = tokenizer.encode("Hello, world! <|im_start|> 123", parseSpecial: true, addBOS: true)
        precondition(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.vocabularySize })
        _ = tokenizer.decode(ids + [-1, Int32(tokenizer.vocabularySize)], renderSpecial: true)
    }
    return CInt(sum & 0)
}
