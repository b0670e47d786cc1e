// `tokens` file: the 64-byte data-file prefix (FileSupport.swift; magic "LHTK", record bytes
// 4 × chunkSize + 24), then one fixed-size record per chunk; chunk c's record at 64 + c × recordBytes,
// with w = chunkSize:
//
//   off     size
//     0     i32[w]  token ids (slots past the token count are 0)
//     4w    u64     start of the chunk in the source text (byte offset)
//     4w+8  u64     end of the chunk in the source text (exclusive)
//     4w+16 u32     tokens in the chunk (1...w; only the last chunk may have fewer than w)
//     4w+20 u32     CRC32C of bytes [0, 4w+20) of this record
//
// The byte range lets answers cite the source and lets an interrupted ingest continue where the last
// committed chunk ended.

let tokensMagic = magic("LHTK")

struct TokensRecord: Equatable {
    var tokens: [Int32]
    var byteRange: Range<UInt64>

    static func bytes(chunkSize: Int) -> Int { 4 * chunkSize + 24 }

    func encode(chunkSize w: Int) -> [UInt8] {
        let n = TokensRecord.bytes(chunkSize: w)
        var b = [UInt8](repeating: 0, count: n)
        b.withUnsafeMutableBytes { r in
            let p = r.baseAddress!
            for (i, t) in tokens.enumerated() { store32(p, 4 * i, UInt32(bitPattern: t)) }
            store64(p, 4 * w, byteRange.lowerBound)
            store64(p, 4 * w + 8, byteRange.upperBound)
            store32(p, 4 * w + 16, UInt32(tokens.count))
            store32(p, n - 4, crc32c(p, n - 4))
        }
        return b
    }

    static func decode(_ p: UnsafeRawPointer, chunkSize w: Int, path: String, chunk: Int, offset: Int) throws -> TokensRecord {
        let n = bytes(chunkSize: w)
        let stored = load32(p, n - 4), computed = crc32c(p, n - 4)
        guard stored == computed else {
            throw StoreError.checksumMismatch(path: path, what: "tokens record of chunk \(chunk)", offset: offset,
                                              expected: stored, found: computed)
        }
        let count = Int(load32(p, 4 * w + 16))
        let start = load64(p, 4 * w), end = load64(p, 4 * w + 8)
        guard count >= 1, count <= w, start <= end else {
            throw StoreError.inconsistent(path: path, what: "tokens record of chunk \(chunk)", offset: offset,
                                          expected: "1...\(w) tokens and start ≤ end", found: "\(count) tokens, bytes \(start)..<\(end)")
        }
        let tokens = (0..<count).map { Int32(bitPattern: load32(p, 4 * $0)) }
        return TokensRecord(tokens: tokens, byteRange: start..<end)
    }
}
