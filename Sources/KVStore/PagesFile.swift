#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLZ4
import CStoreSupport

// `pages` file: append-only; the 64-byte data-file prefix (FileSupport.swift; magic "LHPG", record
// bytes 0), then one page per (chunk, layer), in chunk order and layer order within a chunk, back to
// back (no padding). A page is a 40-byte page header followed by its stored bytes:
//
//   off size
//     0  u32  magic "PAGE"
//     4  u32  chunk
//     8  u32  layer
//    12  u32  tokens in the chunk (≤ chunkSize; the page always holds floatsPerPage floats, zero-padded)
//    16  u8   codec: 0 = raw bytes stored as is, 1 = LZ4 block
//    17  u8   precision: 0 = f16, 1 = q8, 2 = q4 (the store's, repeated)
//    18  u16  reserved (0)
//    20  u32  raw bytes: the encoded page before LZ4
//               f16:    floatsPerPage × u16
//               q8, q4: KIVI (arXiv 2402.02750): a plane of half {min, scale} pairs per key channel over
//                       64 tokens and per value token, then a plane of 8- or 4-bit codes in the float
//                       page's order (cstoresupport.h)
//    24  u32  stored bytes (that follow this header)
//    28  u32  CRC32C of the stored bytes
//    32  u32  reserved (0)
//    36  u32  CRC32C of bytes [0, 36) of this page header
//    40  u8[stored bytes]
//
// Codec 0 is used when LZ4 would not make the page smaller: the reader then skips the decompression.
// On real K/V LZ4 gains 1-2.5% on f16, q8 and q4 pages alike (Docs/PERFORMANCE.md "Quantized pages"),
// much more on the zero padding of a partial chunk. The page table (PageTableFile.swift) holds every
// page's offset, stored size and data CRC as well, so a damaged page header is still found and named.

let pagesMagic = magic("LHPG")
let pageMagic = magic("PAGE")
let pageHeaderBytes = 40

enum PageCodec: UInt8 {
    case raw = 0
    case lz4 = 1
}

/// The fields of one page header.
struct PageHeader: Equatable {
    var chunk: Int
    var layer: Int
    var tokens: Int
    var codec: UInt8
    var precision: UInt8
    var rawBytes: Int
    var storedBytes: Int
    var dataCRC: UInt32

    func encode(into p: UnsafeMutableRawPointer) {
        store32(p, 0, pageMagic)
        store32(p, 4, UInt32(chunk))
        store32(p, 8, UInt32(layer))
        store32(p, 12, UInt32(tokens))
        store32(p, 16, UInt32(codec) | UInt32(precision) << 8)
        store32(p, 20, UInt32(rawBytes))
        store32(p, 24, UInt32(storedBytes))
        store32(p, 28, dataCRC)
        store32(p, 32, 0)
        store32(p, 36, crc32c(p, 36))
    }

    /// Parses the header at `p`; nil with the CRCs when it does not check out.
    static func decode(_ p: UnsafeRawPointer) -> (header: PageHeader?, magic: UInt32, stored: UInt32, computed: UInt32) {
        let m = load32(p, 0)
        let stored = load32(p, 36), computed = crc32c(p, 36)
        guard m == pageMagic, stored == computed else { return (nil, m, stored, computed) }
        let cp = load32(p, 16)
        let h = PageHeader(chunk: Int(load32(p, 4)), layer: Int(load32(p, 8)), tokens: Int(load32(p, 12)),
                           codec: UInt8(cp & 0xff), precision: UInt8((cp >> 8) & 0xff), rawBytes: Int(load32(p, 20)),
                           storedBytes: Int(load32(p, 24)), dataCRC: load32(p, 28))
        return (h, m, stored, computed)
    }
}

/// Turns float pages into stored pages (convert, LZ4, CRC). Owns fixed scratch buffers, so encoding
/// allocates nothing. One per writer; not thread-safe.
final class PageEncoder {
    let floats: Int
    let precision: KVPrecision
    let rawBytes: Int
    /// LZ4 acceleration (1 = best ratio of the fast compressor).
    var acceleration: Int32 = 1
    private let raw: UnsafeMutableRawPointer
    /// Page header followed by room for the stored bytes.
    private let out: UnsafeMutableRawPointer
    private let outCapacity: Int
    private let state: UnsafeMutableRawPointer

    private let geometry: StoreGeometry

    /// An encoder for pages of `geometry`; throws when its precision has no encoding of such pages.
    init(geometry g: StoreGeometry) throws {
        guard let bytes = g.encodedPageBytes else { throw StoreError.invalidArgument("no \(g.precision) encoding of pages of \(g)") }
        geometry = g
        floats = g.floatsPerPage
        precision = g.precision
        rawBytes = bytes
        raw = .allocate(byteCount: rawBytes, alignment: 64)
        outCapacity = pageHeaderBytes + max(rawBytes, Int(LZ4_compressBound(Int32(rawBytes))))
        out = .allocate(byteCount: outCapacity, alignment: 64)
        state = .allocate(byteCount: Int(LZ4_sizeofState()), alignment: 64)
    }

    deinit {
        raw.deallocate()
        out.deallocate()
        state.deallocate()
    }

    /// Encodes one page; the returned bytes (header + stored) are valid until the next call.
    func encode(_ src: UnsafePointer<Float>, chunk: Int, layer: Int, tokens: Int)
        -> (bytes: UnsafeRawBufferPointer, storedBytes: Int, dataCRC: UInt32) {
        if let bits = precision.bits {
            cs_kivi_encode(raw.assumingMemoryBound(to: UInt8.self), src, bits, Int32(geometry.kvHeads), Int32(geometry.chunkSize),
                           Int32(geometry.headDim))
        } else {
            cs_f32_to_f16(raw.assumingMemoryBound(to: UInt16.self), src, floats)
        }
        let dst = out + pageHeaderBytes
        let n = Int(LZ4_compress_fast_extState(state, raw.assumingMemoryBound(to: CChar.self),
                                               dst.assumingMemoryBound(to: CChar.self), Int32(rawBytes),
                                               Int32(outCapacity - pageHeaderBytes), acceleration))
        let codec: PageCodec
        let stored: Int
        if n > 0 && n < rawBytes {
            codec = .lz4
            stored = n
        } else {
            codec = .raw
            stored = rawBytes
            dst.copyMemory(from: raw, byteCount: rawBytes)
        }
        let crc = crc32c(dst, stored)
        PageHeader(chunk: chunk, layer: layer, tokens: tokens, codec: codec.rawValue, precision: UInt8(precision.rawValue),
                   rawBytes: rawBytes, storedBytes: stored, dataCRC: crc).encode(into: out)
        return (UnsafeRawBufferPointer(start: out, count: pageHeaderBytes + stored), stored, crc)
    }
}

/// Reading one page out of the mapped `pages` file.
enum PageDecoder {
    /// Checks and decodes the page whose header is at `offset` of the mapping into `dst`
    /// (`floats` floats), without scratch memory: the LZ4 block is decompressed into the tail of
    /// `dst` and converted to float32 in place (cstoresupport.h explains why that is safe).
    /// - Parameters:
    ///   - expected: what the page table says: stored bytes and data CRC.
    ///   - end: committed (or written) length of the file; nothing past it is read.
    ///   - checkData: check the CRC of the stored bytes (false: the caller checked them before, see
    ///     `StoreCore.readPage`); the page header and its CRC are always checked.
    static func decode(base: UnsafeRawPointer, offset: Int, end: Int, path: String, chunk: Int, layer: Int,
                       expectedStored: Int, expectedCRC: UInt32, tokens: Int?, geometry g: StoreGeometry,
                       checkData: Bool = true, into dst: UnsafeMutablePointer<Float>) throws {
        try checkPlacement(offset: offset, end: end, path: path, chunk: chunk, layer: layer, expectedStored: expectedStored, geometry: g)
        let hp = base + offset
        let h = try header(hp, offset: offset, path: path, chunk: chunk, layer: layer, expectedStored: expectedStored,
                           expectedCRC: expectedCRC, tokens: tokens, geometry: g)
        try decodeData(h, hp + pageHeaderBytes, offset: offset, path: path, chunk: chunk, layer: layer, geometry: g,
                       checkData: checkData, into: dst)
    }

    /// Reads the page at `offset` of `file` with one `preadv` and decodes it into `dst`, like
    /// `decode(base:...)` but without mapping the file (nothing stays resident, no page faults): the
    /// stored bytes go straight into `dst`, at its tail for a raw page (converted in place) and at its
    /// head for an LZ4 page (decompressed into the tail, which they cannot reach: an LZ4 page is smaller
    /// than its raw encoding, and the tail holds `4 × floats − raw` ≥ raw bytes).
    static func read(file: StoreFile, offset: Int, end: Int, chunk: Int, layer: Int, expectedStored: Int, expectedCRC: UInt32,
                     tokens: Int?, geometry g: StoreGeometry, checkData: Bool, into dst: UnsafeMutablePointer<Float>) throws {
        try checkPlacement(offset: offset, end: end, path: file.path, chunk: chunk, layer: layer, expectedStored: expectedStored, geometry: g)
        let rawBytes = try encodedBytes(g, path: file.path)
        // The encoder stores a page raw exactly when LZ4 would not make it smaller (stored == raw).
        let rawPage = expectedStored == rawBytes
        let data = UnsafeMutableRawPointer(dst) + (rawPage ? 4 * g.floatsPerPage - rawBytes : 0)
        let h = try readStored(file: file, offset: offset, chunk: chunk, layer: layer, expectedStored: expectedStored, expectedCRC: expectedCRC,
                               tokens: tokens, geometry: g, into: data)
        try decodeData(h, UnsafeRawPointer(data), offset: offset, path: file.path, chunk: chunk, layer: layer, geometry: g,
                       checkData: checkData, into: dst)
    }

    /// Reads the page at `offset` of `file` like `read`, but leaves it in its encoding: `dst` receives the
    /// page's raw bytes (`StoreGeometry.encodedPageBytes`: for q8/q4 the KIVI parameter and code planes),
    /// after LZ4 when the page is stored compressed. This is what the page cache holds for quantized
    /// stores; the attention dequantizes it as it reads (`lh_attn_update_kivi`). A raw page is read
    /// straight into `dst`; an LZ4 page into temporary memory, then decompressed into `dst`.
    static func readEncoded(file: StoreFile, offset: Int, end: Int, chunk: Int, layer: Int, expectedStored: Int, expectedCRC: UInt32,
                            tokens: Int?, geometry g: StoreGeometry, checkData: Bool, into dst: UnsafeMutableRawPointer) throws {
        try checkPlacement(offset: offset, end: end, path: file.path, chunk: chunk, layer: layer, expectedStored: expectedStored, geometry: g)
        let rawBytes = try encodedBytes(g, path: file.path)
        func finish(_ data: UnsafeMutableRawPointer) throws {
            let h = try readStored(file: file, offset: offset, chunk: chunk, layer: layer, expectedStored: expectedStored, expectedCRC: expectedCRC,
                                   tokens: tokens, geometry: g, into: data)
            try checkStoredCRC(h, UnsafeRawPointer(data), offset: offset, path: file.path, chunk: chunk, layer: layer, checkData: checkData)
            if h.codec == PageCodec.lz4.rawValue {
                try decompress(h, UnsafeRawPointer(data), rawBytes: rawBytes, offset: offset, path: file.path, chunk: chunk, layer: layer, into: dst)
            }
        }
        if expectedStored == rawBytes {
            try finish(dst)
        } else {
            try withUnsafeTemporaryAllocation(byteCount: expectedStored, alignment: 16) { try finish($0.baseAddress!) }
        }
    }

    /// Reads the page header and the `expectedStored` stored bytes at `offset` (one `preadv`, short reads
    /// retried) into `data`, and checks the header, including that its codec agrees with the sizes.
    private static func readStored(file: StoreFile, offset: Int, chunk: Int, layer: Int, expectedStored: Int, expectedCRC: UInt32,
                                   tokens: Int?, geometry g: StoreGeometry, into data: UnsafeMutableRawPointer) throws -> PageHeader {
        let rawPage = expectedStored == (try encodedBytes(g, path: file.path))
        return try withUnsafeTemporaryAllocation(byteCount: pageHeaderBytes, alignment: 16) { hb in
            let hp = hb.baseAddress!
            var iov = [iovec(iov_base: hp, iov_len: pageHeaderBytes), iovec(iov_base: data, iov_len: expectedStored)]
            let want = pageHeaderBytes + expectedStored
            var done = 0
            while done < want {
                // Retry short reads from where they stopped (only the data part can be left).
                let n: Int = iov.withUnsafeMutableBufferPointer { v in
                    if done < pageHeaderBytes {
                        v[0] = iovec(iov_base: hp + done, iov_len: pageHeaderBytes - done)
                        return preadv(file.fd, v.baseAddress!, 2, off_t(offset + done))
                    }
                    v[1] = iovec(iov_base: data + (done - pageHeaderBytes), iov_len: want - done)
                    return preadv(file.fd, v.baseAddress! + 1, 1, off_t(offset + done))
                }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StoreError.io(path: file.path, operation: "read of page chunk \(chunk) layer \(layer)", offset: offset + done, errno: errno)
                }
                if n == 0 { throw StoreError.truncated(path: file.path, what: "page chunk \(chunk) layer \(layer)", neededBytes: offset + want, fileBytes: offset + done) }
                done += n
            }
            let h = try header(UnsafeRawPointer(hp), offset: offset, path: file.path, chunk: chunk, layer: layer, expectedStored: expectedStored,
                               expectedCRC: expectedCRC, tokens: tokens, geometry: g)
            if (h.codec == PageCodec.raw.rawValue) != rawPage {
                throw StoreError.inconsistent(path: file.path, what: "codec in page header of chunk \(chunk) layer \(layer)", offset: offset,
                                              expected: rawPage ? "0 (raw: stored size = raw size)" : "1 (LZ4: stored size < raw size)", found: "\(h.codec)")
            }
            return h
        }
    }

    /// The page table's stored size is bounded by the page's raw encoding first (the encoder keeps LZ4 only
    /// when it is smaller): a hostile entry with a valid CRC cannot make a read run past `dst` or the sum
    /// below overflow.
    private static func checkPlacement(offset: Int, end: Int, path: String, chunk: Int, layer: Int, expectedStored: Int,
                                       geometry g: StoreGeometry) throws {
        let rawBytes = try encodedBytes(g, path: path)
        guard expectedStored > 0, expectedStored <= rawBytes else {
            throw StoreError.inconsistent(path: path, what: "stored size in the page table entry of chunk \(chunk) layer \(layer)", offset: offset,
                                          expected: "1...\(rawBytes) bytes (the page's raw size)", found: "\(expectedStored)")
        }
        guard offset >= dataFileHeaderBytes, offset <= end, pageHeaderBytes + expectedStored <= end - offset else {
            throw StoreError.inconsistent(path: path, what: "page table entry of chunk \(chunk) layer \(layer)", offset: offset,
                                          expected: "a page inside the \(end) committed bytes",
                                          found: "\(pageHeaderBytes + expectedStored) bytes at offset \(offset)")
        }
    }

    /// The checked header at `hp` (the page's header, from the file at `offset`).
    private static func header(_ hp: UnsafeRawPointer, offset: Int, path: String, chunk: Int, layer: Int, expectedStored: Int,
                               expectedCRC: UInt32, tokens: Int?, geometry g: StoreGeometry) throws -> PageHeader {
        let (hOpt, m, hStored, hComputed) = PageHeader.decode(hp)
        guard let h = hOpt else {
            if m != pageMagic {
                throw StoreError.inconsistent(path: path, what: "page header magic of chunk \(chunk) layer \(layer)", offset: offset,
                                              expected: hex32(pageMagic), found: hex32(m))
            }
            throw StoreError.pageChecksumMismatch(path: path, chunk: chunk, layer: layer, offset: offset, expected: hStored, found: hComputed)
        }
        let rawBytes = try encodedBytes(g, path: path)
        func mismatch(_ what: String, _ e: String, _ f: String) -> StoreError {
            .inconsistent(path: path, what: "\(what) in page header of chunk \(chunk) layer \(layer)", offset: offset, expected: e, found: f)
        }
        if h.chunk != chunk || h.layer != layer { throw mismatch("page identity", "chunk \(chunk) layer \(layer)", "chunk \(h.chunk) layer \(h.layer)") }
        if h.storedBytes != expectedStored { throw mismatch("stored size", "\(expectedStored)", "\(h.storedBytes)") }
        if h.dataCRC != expectedCRC { throw mismatch("data CRC", hex32(expectedCRC), hex32(h.dataCRC)) }
        if h.rawBytes != rawBytes { throw mismatch("raw size", "\(rawBytes)", "\(h.rawBytes)") }
        if h.precision != UInt8(g.precision.rawValue) { throw mismatch("precision", "\(g.precision.rawValue)", "\(h.precision)") }
        if let tokens, h.tokens != tokens { throw mismatch("token count", "\(tokens)", "\(h.tokens)") }
        guard let codec = PageCodec(rawValue: h.codec) else { throw mismatch("codec", "0 or 1", "\(h.codec)") }
        if codec == .raw && h.storedBytes != rawBytes { throw mismatch("stored size of a raw page", "\(rawBytes)", "\(h.storedBytes)") }
        return h
    }

    /// Checks the stored bytes at `data` (unless `checkData` is false) and decodes them into `dst`. `data`
    /// may lie inside `dst`: at its tail (a raw page, converted in place) or below it (an LZ4 page).
    private static func decodeData(_ h: PageHeader, _ data: UnsafeRawPointer, offset: Int, path: String, chunk: Int, layer: Int,
                                   geometry g: StoreGeometry, checkData: Bool, into dst: UnsafeMutablePointer<Float>) throws {
        let rawBytes = try encodedBytes(g, path: path)
        try checkStoredCRC(h, data, offset: offset, path: path, chunk: chunk, layer: layer, checkData: checkData)
        let n = g.floatsPerPage
        let src: UnsafeRawPointer
        if h.codec == PageCodec.lz4.rawValue {
            let tail = UnsafeMutableRawPointer(dst) + (4 * n - rawBytes)
            try decompress(h, data, rawBytes: rawBytes, offset: offset, path: path, chunk: chunk, layer: layer, into: tail)
            src = UnsafeRawPointer(tail)
        } else {
            src = data
        }
        if let bits = g.precision.bits {
            // The parameter plane is copied out first: in place, the floats overwrite it (cstoresupport.h).
            let (G, w, D) = (Int32(g.kvHeads), Int32(g.chunkSize), Int32(g.headDim))
            withUnsafeTemporaryAllocation(byteCount: cs_kivi_param_bytes(G, w, D), alignment: 16) { params in
                cs_kivi_decode(dst, src.assumingMemoryBound(to: UInt8.self), params.baseAddress!.assumingMemoryBound(to: UInt16.self),
                               bits, G, w, D)
            }
        } else {
            cs_f16_to_f32(dst, src.assumingMemoryBound(to: UInt16.self), n)
        }
    }

    /// Checks the CRC of the stored bytes at `data` (unless `checkData` is false).
    private static func checkStoredCRC(_ h: PageHeader, _ data: UnsafeRawPointer, offset: Int, path: String, chunk: Int, layer: Int,
                                       checkData: Bool) throws {
        let crc = checkData ? crc32c(data, h.storedBytes) : h.dataCRC
        guard crc == h.dataCRC else {
            throw StoreError.pageChecksumMismatch(path: path, chunk: chunk, layer: layer, offset: offset + pageHeaderBytes,
                                                  expected: h.dataCRC, found: crc)
        }
    }

    /// Decompresses the LZ4 block at `data` into exactly `rawBytes` bytes at `dst`.
    private static func decompress(_ h: PageHeader, _ data: UnsafeRawPointer, rawBytes: Int, offset: Int, path: String, chunk: Int, layer: Int,
                                   into dst: UnsafeMutableRawPointer) throws {
        let got = LZ4_decompress_safe(data.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self),
                                      Int32(h.storedBytes), Int32(rawBytes))
        guard Int(got) == rawBytes else {
            throw StoreError.decompressionFailed(path: path, chunk: chunk, layer: layer, offset: offset,
                                                 reason: got < 0 ? "malformed LZ4 block (error \(got))" : "\(got) bytes, expected \(rawBytes)")
        }
    }

    /// The page's encoded size, or the error naming the geometry that has none (a damaged header).
    private static func encodedBytes(_ g: StoreGeometry, path: String) throws -> Int {
        guard let bytes = g.encodedPageBytes else {
            throw StoreError.inconsistent(path: path, what: "header geometry of \(g.precision) pages", offset: 0,
                                          expected: "floatsPerPage = 2 × chunkSize × kvHeads × headDim, chunkSize a multiple of 16",
                                          found: "\(g.floatsPerPage) floats/page, chunk \(g.chunkSize), \(g.kvHeads) KV heads, head dim \(g.headDim)")
        }
        return bytes
    }
}

/// Bytes of the LZ4 block of `n` bytes at `p` (acceleration 1, as the encoder), or `n` when LZ4 does not
/// make them smaller: for measurements of what LZ4 gains on parts of a page (Docs/PERFORMANCE.md).
func lz4StoredSize(_ p: UnsafeRawPointer, _ n: Int) -> Int {
    let bound = Int(LZ4_compressBound(Int32(n)))
    let dst = UnsafeMutablePointer<CChar>.allocate(capacity: bound)
    defer { dst.deallocate() }
    let got = Int(LZ4_compress_default(p.assumingMemoryBound(to: CChar.self), dst, Int32(n), Int32(bound)))
    return got > 0 && got < n ? got : n
}
