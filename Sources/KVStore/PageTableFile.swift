// `pagetable` file: the 64-byte data-file prefix (FileSupport.swift; magic "LHPT", record bytes
// 16 × layers + 16), then one fixed-size record per chunk, appended per chunk; chunk c's record is
// at 64 + c × recordBytes:
//
//   per layer l (16 bytes each, at 16 × l):
//     +0   u64  offset of the page header of (c, l) in `pages`
//     +8   u32  stored bytes of the page (after its 40-byte header)
//     +12  u32  CRC32C of the stored bytes (as in the page header)
//   trailer (at 16 × layers):
//     +0   u32  tokens in the chunk
//     +4   u32  CRC32C of the chunk's features (featureFloatsPerChunk × f32 in `features`)
//     +8   u32  reserved (0)
//     +12  u32  CRC32C of bytes [0, 16 × layers + 12) of this record
//
// The features file is one contiguous float array (mapped zero-copy), so its per-chunk CRCs live here.

let pageTableMagic = magic("LHPT")

/// One chunk's page-table record.
struct PageTableRecord: Equatable {
    var offsets: [Int]
    var storedBytes: [Int]
    var dataCRCs: [UInt32]
    var tokens: Int
    var featuresCRC: UInt32

    static func bytes(layers: Int) -> Int { 16 * layers + 16 }

    func encode() -> [UInt8] {
        let layers = offsets.count
        let n = PageTableRecord.bytes(layers: layers)
        var b = [UInt8](repeating: 0, count: n)
        b.withUnsafeMutableBytes { r in
            let p = r.baseAddress!
            for l in 0..<layers {
                store64(p, 16 * l, UInt64(offsets[l]))
                store32(p, 16 * l + 8, UInt32(storedBytes[l]))
                store32(p, 16 * l + 12, dataCRCs[l])
            }
            store32(p, 16 * layers, UInt32(tokens))
            store32(p, 16 * layers + 4, featuresCRC)
            store32(p, n - 4, crc32c(p, n - 4))
        }
        return b
    }

    /// Checks the record's CRC and decodes it; `offset` is only for the error message.
    static func decode(_ p: UnsafeRawPointer, layers: Int, path: String, chunk: Int, offset: Int) throws -> PageTableRecord {
        let n = bytes(layers: layers)
        let stored = load32(p, n - 4), computed = crc32c(p, n - 4)
        guard stored == computed else {
            throw StoreError.checksumMismatch(path: path, what: "page-table record of chunk \(chunk)", offset: offset,
                                              expected: stored, found: computed)
        }
        var r = PageTableRecord(offsets: [], storedBytes: [], dataCRCs: [], tokens: Int(load32(p, 16 * layers)),
                                featuresCRC: load32(p, 16 * layers + 4))
        r.offsets.reserveCapacity(layers)
        for l in 0..<layers {
            r.offsets.append(try pageOffset(p, layer: l, path: path, chunk: chunk, offset: offset))
            r.storedBytes.append(Int(load32(p, 16 * l + 8)))
            r.dataCRCs.append(load32(p, 16 * l + 12))
        }
        return r
    }

    /// The (offset, stored bytes, CRC) of one layer, after checking the whole record's CRC.
    static func entry(_ p: UnsafeRawPointer, layer: Int, layers: Int, path: String, chunk: Int, offset: Int) throws
        -> (offset: Int, stored: Int, crc: UInt32, tokens: Int) {
        let n = bytes(layers: layers)
        let stored = load32(p, n - 4), computed = crc32c(p, n - 4)
        guard stored == computed else {
            throw StoreError.checksumMismatch(path: path, what: "page-table record of chunk \(chunk)", offset: offset,
                                              expected: stored, found: computed)
        }
        return (try pageOffset(p, layer: layer, path: path, chunk: chunk, offset: offset), Int(load32(p, 16 * layer + 8)),
                load32(p, 16 * layer + 12), Int(load32(p, 16 * layers)))
    }

    /// The u64 page offset of `layer`; one that no file can reach (beyond 2^56 bytes) is an error, not a
    /// trap, even under a valid CRC (a crafted file), and sums of an offset and u32 lengths cannot overflow.
    private static func pageOffset(_ p: UnsafeRawPointer, layer: Int, path: String, chunk: Int, offset: Int) throws -> Int {
        let v = load64(p, 16 * layer)
        guard v <= 1 << 56 else {
            throw StoreError.inconsistent(path: path, what: "page offset of chunk \(chunk), layer \(layer)", offset: offset + 16 * layer,
                                          expected: "a file offset", found: "\(v)")
        }
        return Int(v)
    }
}
