#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// `header` file (little-endian), rewritten whole at every commit: written to `header.tmp`, fsync'd,
// renamed over `header`, then the directory is fsync'd. The rename is the commit point: before it the
// old header (and so the old committed state) is what a reader or `resume` sees, after it the new one.
//
//   off size
//     0  u32    magic "LHKV"
//     4  u32    format version (1)
//     8  u32    file bytes (180 + blob bytes)
//    12  u32    flags (caller-defined)
//    16  u8[16] store id (random at creation; repeated in every data file)
//    32  u8[32] model fingerprint (caller-defined)
//    64  u8[32] tokenizer fingerprint (caller-defined)
//    96  u32    layers
//   100  u32    kvHeads
//   104  u32    queryHeads
//   108  u32    headDim
//   112  u32    chunkSize
//   116  u32    floatsPerPage
//   120  u32    featureFloatsPerChunk
//   124  u32    precision (0 = f16, 1 = q8)
//   128  u64    committed chunks
//   136  u64    committed tokens
//   144  u64    source bytes consumed (end of the last committed chunk's byte range)
//   152  u64    committed bytes of `pages`
//   160  u64    commit sequence number
//   168  u32    blob bytes (≤ 65536)
//   172  u32    reserved (0)
//   176  u8[n]  blob (caller-defined, e.g. JSON)
// 176+n  u32    CRC32C of bytes [0, 176+n)
//
// The other files' committed lengths follow from the chunk count (fixed-size records), except `pages`,
// whose length is stored.

let headerMagic = magic("LHKV")
let headerFixedBytes = 176
/// Largest caller blob.
public let maxStoreBlobBytes = 65536

enum HeaderFile {
    static let name = "header"
    static let tempName = "header.tmp"

    static func encode(_ h: StoreHeader) -> [UInt8] {
        let total = headerFixedBytes + h.blob.count + 4
        var b = [UInt8](repeating: 0, count: total)
        b.withUnsafeMutableBytes { r in
            let p = r.baseAddress!
            store32(p, 0, headerMagic)
            store32(p, 4, h.formatVersion)
            store32(p, 8, UInt32(total))
            store32(p, 12, h.flags)
            for i in 0..<16 { r[16 + i] = h.storeID[i] }
            for i in 0..<32 { r[32 + i] = h.modelFingerprint[i] }
            for i in 0..<32 { r[64 + i] = h.tokenizerFingerprint[i] }
            let g = h.geometry
            for (i, v) in [g.layers, g.kvHeads, g.queryHeads, g.headDim, g.chunkSize, g.floatsPerPage,
                           g.featureFloatsPerChunk, Int(g.precision.rawValue)].enumerated() {
                store32(p, 96 + 4 * i, UInt32(v))
            }
            store64(p, 128, UInt64(h.chunkCount))
            store64(p, 136, UInt64(h.tokenCount))
            store64(p, 144, h.sourceBytesConsumed)
            store64(p, 152, UInt64(h.pagesBytes))
            store64(p, 160, h.commitSequence)
            store32(p, 168, UInt32(h.blob.count))
            for (i, byte) in h.blob.enumerated() { r[headerFixedBytes + i] = byte }
            store32(p, total - 4, crc32c(p, total - 4))
        }
        return b
    }

    /// Reads and checks `dir/header`: magic, version, length, CRC, and sane numbers.
    static func read(dir: String) throws -> StoreHeader {
        let path = joinPath(dir, name)
        var st = stat()
        guard stat(dir, &st) == 0 else { throw StoreError.cannotOpen(path: dir, reason: errnoText(errno)) }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw StoreError.cannotOpen(path: dir, reason: "not a directory") }
        if access(path, F_OK) != 0 && errno == ENOENT {
            throw StoreError.cannotOpen(path: dir, reason: "no `header` file: not a KV store (or its creation never completed)")
        }
        let file = try StoreFile.openFile(path, flags: O_RDONLY, create: false, faults: nil)
        let size = try file.size()
        guard size >= 12 else {
            if size >= 4 {
                var m: UInt32 = 0
                try file.read(into: &m, 4, at: 0, what: "magic")
                if m != headerMagic { throw StoreError.notAStore(path: path, expectedMagic: headerMagic, foundMagic: m) }
            }
            throw StoreError.truncated(path: path, what: "header", neededBytes: headerFixedBytes + 4, fileBytes: size)
        }
        guard size <= headerFixedBytes + maxStoreBlobBytes + 4 else {
            throw StoreError.inconsistent(path: path, what: "header length", offset: 8,
                                          expected: "at most \(headerFixedBytes + maxStoreBlobBytes + 4) bytes", found: "\(size) bytes")
        }
        var b = [UInt8](repeating: 0, count: size)
        try b.withUnsafeMutableBytes { try file.read(into: $0.baseAddress!, size, at: 0, what: "header") }
        return try b.withUnsafeBytes { r -> StoreHeader in
            let p = r.baseAddress!
            let m = load32(p, 0)
            guard m == headerMagic else { throw StoreError.notAStore(path: path, expectedMagic: headerMagic, foundMagic: m) }
            let v = load32(p, 4)
            guard v == formatVersion else { throw StoreError.unsupportedVersion(path: path, supported: formatVersion, found: v) }
            let total = Int(load32(p, 8))
            guard total == size, size >= headerFixedBytes + 4 else {
                // A short file is truncation; otherwise the length field itself is damaged.
                if total > size { throw StoreError.truncated(path: path, what: "header", neededBytes: total, fileBytes: size) }
                throw StoreError.inconsistent(path: path, what: "header length field", offset: 8, expected: "\(size)", found: "\(total)")
            }
            let stored = load32(p, total - 4), computed = crc32c(p, total - 4)
            guard stored == computed else { throw StoreError.headerChecksumMismatch(path: path, expected: stored, found: computed) }
            let blobBytes = Int(load32(p, 168))
            guard headerFixedBytes + blobBytes + 4 == total else {
                throw StoreError.inconsistent(path: path, what: "blob length", offset: 168,
                                              expected: "\(total - headerFixedBytes - 4)", found: "\(blobBytes)")
            }
            let u = { (o: Int) in Int(load32(p, o)) }
            guard let precision = KVPrecision(rawValue: load32(p, 124)) else {
                throw StoreError.inconsistent(path: path, what: "precision", offset: 124, expected: "0 (f16) or 1 (q8)", found: "\(load32(p, 124))")
            }
            // u64 counts beyond Int (a crafted header with a valid CRC) are errors, not traps.
            func count(_ o: Int, _ what: String) throws -> Int {
                let v = load64(p, o)
                guard v <= UInt64(Int.max) else {
                    throw StoreError.inconsistent(path: path, what: what, offset: o, expected: "at most \(Int.max)", found: "\(v)")
                }
                return Int(v)
            }
            let g = StoreGeometry(layers: u(96), kvHeads: u(100), queryHeads: u(104), headDim: u(108), chunkSize: u(112),
                                  floatsPerPage: u(116), featureFloatsPerChunk: u(120), precision: precision)
            return StoreHeader(
                formatVersion: v, storeID: Array(r[16..<32]), modelFingerprint: Array(r[32..<64]),
                tokenizerFingerprint: Array(r[64..<96]), geometry: g, flags: load32(p, 12),
                chunkCount: try count(128, "committed chunks"), tokenCount: try count(136, "committed tokens"),
                sourceBytesConsumed: load64(p, 144), pagesBytes: try count(152, "committed bytes of pages"), commitSequence: load64(p, 160),
                blob: Array(r[headerFixedBytes..<(headerFixedBytes + blobBytes)]))
        }
    }

    /// The commit point: write-temp, fsync, rename over `header`, fsync the directory.
    /// On failure the temp file is removed and the old header is untouched.
    static func write(_ h: StoreHeader, dir: String, faults: FaultInjector?) throws {
        let tmp = joinPath(dir, tempName)
        let bytes = encode(h)
        unlink(tmp)  // a commit that never reached its rename (the writer holds the lock)
        do {
            let f = try StoreFile.openFile(tmp, flags: O_WRONLY, create: true, faults: faults)
            try f.write(bytes, at: 0)
            try f.sync()
        } catch {
            unlink(tmp)
            throw error
        }
        do {
            try faults?.check(joinPath(dir, name), "rename")
            guard rename(tmp, joinPath(dir, name)) == 0 else {
                throw StoreError.io(path: joinPath(dir, name), operation: "rename of header.tmp", offset: nil, errno: errno)
            }
        } catch {
            unlink(tmp)
            throw error
        }
        try syncDirectory(dir, faults: faults)
    }
}
