#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// `header` file (little-endian): two slots of `headerSlotBytes` (69632) bytes, slot k at k × 69632, as
// LMDB's two meta pages. Commit n (the commit sequence number) overwrites slot n mod 2 in place and
// fdatasyncs it; the other slot keeps commit n − 1. A reader takes the valid slot with the larger sequence
// number, so a torn or damaged write of the newest slot falls back to the previous commit (and
// `HeaderFile.read` says so). Creation writes both slots (sequence 0 and 1), so both are always valid
// unless damaged. Each slot (offsets within the slot):
//
//   off size
//     0  u32    magic "LHKV"
//     4  u32    format version (2)
//     8  u32    slot bytes used (180 + blob bytes); the rest of the slot is zero
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
//   124  u32    precision (0 = f16, 1 = q8, 2 = q4)
//   128  u64    committed chunks                        (< 2^63)
//   136  u64    committed tokens                        (< 2^63)
//   144  u64    source bytes consumed (end of the last committed chunk's byte range; < 2^63)
//   152  u64    committed bytes of `pages`              (< 2^63)
//   160  u64    commit sequence number (the generation; < 2^63)
//   168  u32    blob bytes (≤ 65536)
//   172  u32    reserved (0)
//   176  u8[n]  blob (caller-defined, e.g. JSON)
// 176+n  u32    CRC32C of bytes [0, 176+n) of the slot
//
// Everything is validated when a slot is decoded (`decodeSlot`), with checked arithmetic: the geometry
// (each number 1 ... 2^30, precision known), the counts (tokens within what the chunks can hold, pages at
// least as long as the chunks' page headers), the blob length. The other files' committed lengths follow
// from the chunk count (fixed-size records), except `pages`, whose length is stored. Format version 1 (one
// slot, replaced by rename) is refused: such a store must be ingested again.

let headerMagic = magic("LHKV")
let headerFixedBytes = 176
/// Largest caller blob.
public let maxStoreBlobBytes = 65536

/// Bytes of one header slot: the largest header (fixed part, blob, CRC) rounded up to 4 KiB, so that the two
/// slots never share a file-system block.
let headerSlotBytes = (headerFixedBytes + maxStoreBlobBytes + 4 + 4095) / 4096 * 4096

/// The header as read: the commit in use and, when a slot had to be passed over, why.
struct HeaderReading {
    var header: StoreHeader
    /// Set when a slot is damaged (torn write, bit rot): what was wrong and which commit is used instead.
    var fallback: StoreError?
}

enum HeaderFile {
    static let name = "header"
    /// Where creation writes the header before renaming it to `header` (the creation's commit point).
    static let newName = "header.new"

    /// One whole slot: the header, then zeros to the slot's end (so that any byte of the file is checked).
    static func encode(_ h: StoreHeader) -> [UInt8] {
        let total = headerFixedBytes + h.blob.count + 4
        var b = [UInt8](repeating: 0, count: headerSlotBytes)
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

    /// Reads `dir/header` and returns the newest valid commit (see `readSlots`).
    static func read(dir: String) throws -> StoreHeader { try readSlots(dir: dir).header }

    /// Reads both slots of `dir/header` and takes the valid one with the larger commit sequence. A damaged
    /// slot is passed over (and named in `fallback`) when the other is valid; when neither is, slot 0's error
    /// is thrown. A file of another format version (1) is refused whole.
    static func readSlots(dir: String) throws -> HeaderReading {
        let path = joinPath(dir, name)
        var st = stat()
        guard stat(dir, &st) == 0 else { throw StoreError.cannotOpen(path: dir, reason: errnoText(errno)) }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw StoreError.cannotOpen(path: dir, reason: "not a directory") }
        if lstat(path, &st) != 0 && errno == ENOENT {
            throw StoreError.cannotOpen(path: dir, reason: "no `header` file: not a KV store (or its creation never completed)")
        }
        let file = try StoreFile.openFile(path, flags: O_RDONLY, create: false, faults: nil)
        let size = try file.size()
        guard size <= 2 * headerSlotBytes else {
            throw StoreError.inconsistent(path: path, what: "header length", offset: 0,
                                          expected: "at most \(2 * headerSlotBytes) bytes (two slots)", found: "\(size) bytes")
        }
        var b = [UInt8](repeating: 0, count: 2 * headerSlotBytes)
        try b.withUnsafeMutableBytes { try file.read(into: $0.baseAddress!, size, at: 0, what: "header") }
        var results: [Result<StoreHeader, StoreError>] = []
        for slot in 0..<2 {
            let have = max(0, min(headerSlotBytes, size - slot * headerSlotBytes))
            do {
                let h = try b.withUnsafeBytes { r in
                    try decodeSlot(r.baseAddress! + slot * headerSlotBytes, bytes: have, path: path, slot: slot)
                }
                results.append(.success(h))
            } catch let e as StoreError {
                results.append(.failure(e))
            }
        }
        switch (results[0], results[1]) {
        case (.success(let a), .success(let b)):
            guard a.storeID == b.storeID else {
                throw StoreError.foreignFile(path: path, expectedStore: a.storeID, foundStore: b.storeID)
            }
            guard a.commitSequence != b.commitSequence, a.commitSequence % 2 == 0, b.commitSequence % 2 == 1 else {
                throw StoreError.inconsistent(path: path, what: "commit sequence numbers of the header slots", offset: 160,
                                              expected: "an even number in slot 0 and an odd one in slot 1",
                                              found: "\(a.commitSequence) and \(b.commitSequence)")
            }
            return HeaderReading(header: a.commitSequence > b.commitSequence ? a : b, fallback: nil)
        case (.success(let h), .failure(let e)): return try fallback(h, good: 0, e)
        case (.failure(let e), .success(let h)): return try fallback(h, good: 1, e)
        case (.failure(let e0), .failure(let e1)):
            if case .unsupportedVersion = e1 { throw e1 }
            throw e0
        }
    }

    /// Slot `good` holds `h`, the other one failed with `e`: use `h` if it sits in its own slot (a v1 file,
    /// or a file of another version, is refused whole, never read as one slot).
    private static func fallback(_ h: StoreHeader, good: Int, _ e: StoreError) throws -> HeaderReading {
        if case .unsupportedVersion = e { throw e }
        guard h.commitSequence % 2 == UInt64(good) else { throw e }
        return HeaderReading(header: h, fallback: .headerSlotDamaged(path: path(of: e), slot: 1 - good, cause: e.description,
                                                                     usedSequence: h.commitSequence, usedChunks: h.chunkCount))
    }

    private static func path(of e: StoreError) -> String {
        switch e {
        case .notAStore(let p, _, _), .headerChecksumMismatch(let p, _, _), .truncated(let p, _, _, _), .inconsistent(let p, _, _, _, _): return p
        default: return name
        }
    }

    /// Decodes and validates one slot (`bytes` of it present in the file). Every field from the file is
    /// checked before use, with checked arithmetic: a crafted slot whose CRC was recomputed gets an error
    /// naming the field, never a trap.
    static func decodeSlot(_ p: UnsafeRawPointer, bytes size: Int, path: String, slot: Int) throws -> StoreHeader {
        let base = slot * headerSlotBytes
        func bad(_ what: String, _ o: Int, _ expected: String, _ found: String) -> StoreError {
            .inconsistent(path: path, what: "\(what) (header slot \(slot))", offset: base + o, expected: expected, found: found)
        }
        guard size >= 12 else {
            if size >= 4, load32(p, 0) != headerMagic { throw StoreError.notAStore(path: path, expectedMagic: headerMagic, foundMagic: load32(p, 0)) }
            throw StoreError.truncated(path: path, what: "header slot \(slot)", neededBytes: base + headerFixedBytes + 4, fileBytes: base + size)
        }
        let m = load32(p, 0)
        guard m == headerMagic else { throw StoreError.notAStore(path: path, expectedMagic: headerMagic, foundMagic: m) }
        let v = load32(p, 4)
        guard v == formatVersion else { throw StoreError.unsupportedVersion(path: path, supported: formatVersion, found: v) }
        let total = Int(load32(p, 8))
        guard total >= headerFixedBytes + 4, total <= headerSlotBytes else {
            throw bad("header length field", 8, "\(headerFixedBytes + 4)...\(headerSlotBytes)", "\(total)")
        }
        guard total <= size else {
            throw StoreError.truncated(path: path, what: "header slot \(slot)", neededBytes: base + total, fileBytes: base + size)
        }
        let stored = load32(p, total - 4), computed = crc32c(p, total - 4)
        guard stored == computed else { throw StoreError.headerChecksumMismatch(path: path, expected: stored, found: computed) }
        // The rest of the slot is zero (slots are written whole): a damaged byte there is found too.
        guard size == headerSlotBytes else {
            throw StoreError.truncated(path: path, what: "header slot \(slot)", neededBytes: base + headerSlotBytes, fileBytes: base + size)
        }
        if let nonzero = (total..<headerSlotBytes).first(where: { p.load(fromByteOffset: $0, as: UInt8.self) != 0 }) {
            throw bad("padding after the header", nonzero, "zero", "\(p.load(fromByteOffset: nonzero, as: UInt8.self))")
        }
        let blobBytes = Int(load32(p, 168))
        guard headerFixedBytes + blobBytes + 4 == total else {
            throw bad("blob length", 168, "\(total - headerFixedBytes - 4)", "\(blobBytes)")
        }
        guard let precision = KVPrecision(rawValue: load32(p, 124)) else {
            throw bad("precision", 124, "0 (f16), 1 (q8) or 2 (q4)", "\(load32(p, 124))")
        }
        // Geometry: every number 1 ... 2^30 (features may be 0), so that products of two of them fit.
        let names = ["layers", "kvHeads", "queryHeads", "headDim", "chunkSize", "floatsPerPage", "featureFloatsPerChunk"]
        var g32 = [Int]()
        for (i, n) in names.enumerated() {
            let x = Int(load32(p, 96 + 4 * i))
            let low = n == "featureFloatsPerChunk" ? 0 : 1
            guard x >= low, x <= 1 << 30 else { throw bad(n, 96 + 4 * i, "\(low)...\(1 << 30)", "\(x)") }
            g32.append(x)
        }
        let g = StoreGeometry(layers: g32[0], kvHeads: g32[1], queryHeads: g32[2], headDim: g32[3], chunkSize: g32[4],
                              floatsPerPage: g32[5], featureFloatsPerChunk: g32[6], precision: precision)
        // Quantized pages exist only for the K/V page layout: refused here, not at the first page read.
        guard g.encodedPageBytes != nil else {
            throw bad("floatsPerPage", 116, "2 × chunkSize × kvHeads × headDim with chunkSize a multiple of 16 for \(precision) pages", "\(g.floatsPerPage)")
        }
        // u64 counts: below 2^63, so they fit an Int.
        func count(_ o: Int, _ what: String) throws -> Int {
            let x = load64(p, o)
            guard x < 1 << 63 else { throw bad(what, o, "less than 2^63", "\(x)") }
            return Int(x)
        }
        let chunks = try count(128, "committed chunks"), tokens = try count(136, "committed tokens")
        let source = try count(144, "source bytes consumed"), pagesBytes = try count(152, "committed bytes of pages")
        let sequence = try count(160, "commit sequence number")
        // Tokens: all chunks but the last are full, the last holds 1 ... chunkSize.
        let (most, o1) = chunks.multipliedReportingOverflow(by: g.chunkSize)
        guard !o1 else { throw bad("committed chunks", 128, "at most \(Int.max / g.chunkSize) chunks of \(g.chunkSize)", "\(chunks)") }
        let least = chunks == 0 ? 0 : most - g.chunkSize + 1
        guard tokens >= least, tokens <= most else {
            throw bad("committed tokens", 136, chunks == 0 ? "0 (no chunks)" : "\(least)...\(most) for \(chunks) chunks of \(g.chunkSize)",
                      "\(tokens)")
        }
        // Pages: the prefix and at least one page header per (chunk, layer).
        let (pageCount, o2) = chunks.multipliedReportingOverflow(by: g.layers)
        let (headers, o3) = pageCount.multipliedReportingOverflow(by: pageHeaderBytes)
        guard !o2, !o3, pagesBytes >= dataFileHeaderBytes + headers else {
            throw bad("committed bytes of pages", 152, "at least \(o2 || o3 ? "?" : "\(dataFileHeaderBytes + headers)") for \(chunks) chunks",
                      "\(pagesBytes)")
        }
        return StoreHeader(
            formatVersion: v, storeID: Array(UnsafeRawBufferPointer(start: p + 16, count: 16)),
            modelFingerprint: Array(UnsafeRawBufferPointer(start: p + 32, count: 32)),
            tokenizerFingerprint: Array(UnsafeRawBufferPointer(start: p + 64, count: 32)), geometry: g, flags: load32(p, 12),
            chunkCount: chunks, tokenCount: tokens, sourceBytesConsumed: UInt64(source), pagesBytes: pagesBytes,
            commitSequence: UInt64(sequence), blob: Array(UnsafeRawBufferPointer(start: p + headerFixedBytes, count: blobBytes)))
    }

    /// Creates `dir/header` with both slots: `h` as commit 0 in slot 0 and as commit 1 in slot 1. Written to
    /// `header.new` (O_EXCL), fsync'd, renamed to `header`, then the directory is fsync'd: a `header` that
    /// exists is always whole, and a crash before the rename leaves only leftovers that creation may replace.
    /// Returns the header of commit 1.
    static func create(_ h: StoreHeader, dir: String, faults: FaultInjector?) throws -> StoreHeader {
        var h1 = h
        h1.commitSequence = 1
        var h0 = h
        h0.commitSequence = 0
        let tmp = joinPath(dir, newName)
        let f = try StoreFile.openFile(tmp, flags: O_WRONLY, create: true, faults: faults)
        try f.write(encode(h0) + encode(h1), at: 0)
        try f.sync()
        try faults?.check(joinPath(dir, name), "rename")
        guard rename(tmp, joinPath(dir, name)) == 0 else {
            throw StoreError.io(path: joinPath(dir, name), operation: "rename of \(newName)", offset: nil, errno: errno)
        }
        faults?.observer?.renamed(tmp, joinPath(dir, name))
        try syncDirectory(dir, faults: faults)
        return h1
    }

    /// The commit point: writes `h` into slot `h.commitSequence mod 2` in place and fdatasyncs it. The other
    /// slot (the previous commit) is untouched, so a torn write leaves that commit readable.
    static func write(_ h: StoreHeader, dir: String, faults: FaultInjector?) throws {
        let f = try StoreFile.openFile(joinPath(dir, name), flags: O_WRONLY, create: false, faults: faults)
        try f.write(encode(h), at: Int(h.commitSequence % 2) * headerSlotBytes)
        try f.sync()
    }
}
