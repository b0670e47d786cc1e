extension DocumentSource {
    /// The rest of the document, whole (`read(into:)` to the end): for inputs read at once (a questions
    /// file, a prompt, `summarize --sections`), never for a document that is streamed.
    public func readAll() throws -> [UInt8] {
        var bytes = [UInt8]()
        var block = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try block.withUnsafeMutableBytes { try read(into: $0) }
            if n == 0 { return bytes }
            bytes += block[..<n]
        }
    }

    /// The rest of the document as UTF-8 text; bytes that are not UTF-8 are
    /// `PipelineError.invalidUTF8`, naming the source and the offset of the first bad sequence.
    public func readText() throws -> String {
        let bytes = try readAll()
        guard let text = String(validating: bytes, as: UTF8.self) else { throw PipelineError.invalidUTF8(name: name, offset: firstInvalidUTF8(bytes)) }
        return text
    }
}
