#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CStoreSupport
import Foundation

/// The corpus-wide lexical index, `DIR/index`: the BM25 statistics (Robertson & Zaragoza 2009, eq. 3.15,
/// with Lucene's non-negative idf — the same scoring as `LexicalRetrieval` over one store) of every
/// segment's chunk tokens, merged, as an inverted file. A `SealedFile` (magic "LHCINDX"); its payload,
/// little-endian:
///
/// ```
/// offset     size    field
///      0        4    u32 CRC32C of the `manifest` file this index was built from
///      4        4    u32 segment count S (= the manifest's)
///      8        8    u64 chunk count C (< 2^32)
///     16        8    u64 term count T (< 2^31)
///     24        8    u64 posting count P (< 2^40)
///     32        8    u64 total length: Σ chunk lengths in tokens (BM25's average length)
///     40      24·C   chunks: u32 segment (< S), u32 chunk in the segment's store (= its chunk count for the
///                    tail, the tokens after the last full chunk), u64 source byte start, u64 source byte end
///                    (file offsets, start ≤ end)
///  40+24C     16·T   terms, token id ascending: i32 token id, u32 document frequency df (≥ 1),
///                    u64 first posting (the postings of term t are first[t] ..< first[t] + df, contiguous)
/// 40+24C+16T   8·P   postings, chunk ascending within a term: u32 chunk (< C), u16 term frequency (≥ 1),
///                    u16 chunk length in tokens (≥ tf)
/// ```
/// Chunk tokens are the document's: the chat template that opens a chat segment is left out (as
/// `DocumentPipeline.retrieve` leaves it out), else every question would route to segment openings.
///
/// Reading never maps or loads the whole file: the CRC is checked in 1 MiB blocks, the term table is
/// held (at most the vocabulary: a few MB), and a question reads only its terms' postings and its best
/// chunks' rows with `pread`. So RAM does not grow with the corpus; every field read is checked where
/// it is decoded.
public final class CorpusIndex {
    /// The file's path.
    public let path: String
    /// Segments, chunks, terms, postings, Σ lengths.
    public let segmentCount: Int, chunkCount: Int, termCount: Int, postingCount: Int, totalLength: Int
    /// CRC32C of the manifest the index belongs to.
    public let manifestCRC: UInt32
    private let fd: Int32
    private let payloadStart: Int
    private var termIDs: [Int32] = []
    private var termDF: [UInt32] = []
    private var termFirst: [UInt64] = []

    static let fixed = 40, chunkRow = 24, termRow = 16, postingRow = 8

    /// A chunk of the corpus and its source bytes.
    public struct Chunk: Sendable, Equatable {
        /// Segment number (manifest order).
        public var segment: Int
        /// Chunk index in the segment's store (the store's chunk count for its tail).
        public var chunk: Int
        /// Source file byte range.
        public var start: Int, end: Int
        /// A chunk of segment `segment`.
        public init(segment: Int, chunk: Int, start: Int, end: Int) {
            self.segment = segment
            self.chunk = chunk
            self.start = start
            self.end = end
        }
    }

    /// A ranked chunk.
    public struct Hit: Sendable, Equatable {
        /// Global chunk number.
        public var id: Int
        /// BM25 score.
        public var score: Double
        /// Where it is.
        public var chunk: Chunk
    }

    /// Opens and checks the index at `path`.
    public init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw CorpusError.cannotRead(path: path, reason: String(cString: strerror(errno))) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        func bad(_ f: String, _ r: String) -> CorpusError { .invalid(path: path, field: f, reason: r) }
        do {
            // The frame, checked by streaming the whole file through the CRC (no mapping: RSS stays flat).
            guard size >= SealedFile.headerBytes + 4 + Self.fixed else { throw bad("length", "truncated: \(size) bytes") }
            let head = try Self.pread(fd, path: path, offset: 0, count: SealedFile.headerBytes)
            var m = [UInt8]("LHCINDX".utf8) + [0]
            m = Array(m.prefix(8))
            guard Array(head[0..<8]) == m else { throw bad("magic", "not a longheads corpus index") }
            let (v, len): (UInt32, UInt64) = head.withUnsafeBytes { (readLE($0, 8), readLE($0, 16)) }
            guard v == SealedFile.version else { throw bad("version", "format version \(v); this build reads version \(SealedFile.version)") }
            guard len <= 1 << 44, Int(len) == size - SealedFile.headerBytes - 4 else {
                throw bad("length", "payload length \(len), but the file holds \(size) bytes (truncated or damaged)")
            }
            var crc: UInt32 = 0
            var at = 0
            let block = 1 << 20
            while at < size - 4 {
                let n = min(block, size - 4 - at)
                let b = try Self.pread(fd, path: path, offset: at, count: n)
                crc = b.withUnsafeBytes { cs_crc32c_continue(crc, $0) }
                at += n
            }
            let stored: UInt32 = try Self.pread(fd, path: path, offset: size - 4, count: 4).withUnsafeBytes { readLE($0, 0) }
            guard crc == stored else { throw bad("crc32c", String(format: "checksum %08x, the file records %08x (damaged)", crc, stored)) }
            payloadStart = SealedFile.headerBytes
            let f = try Self.pread(fd, path: path, offset: payloadStart, count: Self.fixed)
            let (mc, s, c, t, p, total): (UInt32, UInt32, UInt64, UInt64, UInt64, UInt64) = f.withUnsafeBytes {
                (readLE($0, 0), readLE($0, 4), readLE($0, 8), readLE($0, 16), readLE($0, 24), readLE($0, 32))
            }
            guard c < 1 << 32 else { throw bad("chunkCount", "\(c) (at most 2^32 - 1)") }
            guard t < 1 << 31 else { throw bad("termCount", "\(t) (at most 2^31 - 1)") }
            guard p < 1 << 40 else { throw bad("postingCount", "\(p) (at most 2^40 - 1)") }
            guard total < 1 << 50 else { throw bad("totalLength", "\(total)") }
            guard UInt64(Self.fixed) + c * 24 + t * 16 + p * 8 == len else {
                throw bad("postingCount", "\(c) chunks, \(t) terms and \(p) postings need \(UInt64(Self.fixed) + c * 24 + t * 16 + p * 8) bytes, the payload has \(len)")
            }
            manifestCRC = mc
            segmentCount = Int(s)
            chunkCount = Int(c)
            termCount = Int(t)
            postingCount = Int(p)
            totalLength = Int(total)
            // The term table: ids ascending, postings contiguous and covering all P.
            let terms = try Self.pread(fd, path: path, offset: payloadStart + Self.fixed + chunkCount * Self.chunkRow, count: termCount * Self.termRow)
            termIDs.reserveCapacity(termCount)
            var next: UInt64 = 0
            try terms.withUnsafeBytes { b in
                for i in 0..<termCount {
                    let id: Int32 = readLE(b, i * 16), df: UInt32 = readLE(b, i * 16 + 4), first: UInt64 = readLE(b, i * 16 + 8)
                    guard i == 0 || id > termIDs[i - 1] else { throw bad("terms[\(i)].id", "\(id) is not above the previous term") }
                    guard df >= 1, UInt64(df) <= c else { throw bad("terms[\(i)].df", "\(df) is not in 1...\(c)") }
                    guard first == next else { throw bad("terms[\(i)].first", "\(first), but the previous term's postings end at \(next)") }
                    next += UInt64(df)
                    termIDs.append(id)
                    termDF.append(df)
                    termFirst.append(first)
                }
            }
            guard next == p else { throw bad("postingCount", "\(p), but the terms hold \(next) postings") }
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    static func pread(_ fd: Int32, path: String, offset: Int, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress! + got, count - got, off_t(offset + got)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw CorpusError.cannotRead(path: path, reason: n == 0 ? "truncated at byte \(offset + got)" : String(cString: strerror(errno)))
            }
            got += n
        }
        return out
    }

    /// Chunk `i` (global number), checked against the segment count.
    public func chunk(_ i: Int) throws -> Chunk {
        precondition(i >= 0 && i < chunkCount)
        let b = try Self.pread(fd, path: path, offset: payloadStart + Self.fixed + i * Self.chunkRow, count: Self.chunkRow)
        let (s, c, start, end): (UInt32, UInt32, UInt64, UInt64) = b.withUnsafeBytes { (readLE($0, 0), readLE($0, 4), readLE($0, 8), readLE($0, 16)) }
        guard Int(s) < segmentCount else { throw CorpusError.invalid(path: path, field: "chunks[\(i)].segment", reason: "\(s), but there are \(segmentCount) segments") }
        guard start <= end, end < 1 << 50 else { throw CorpusError.invalid(path: path, field: "chunks[\(i)].end", reason: "byte range \(start)..<\(end)") }
        return Chunk(segment: Int(s), chunk: Int(c), start: Int(start), end: Int(end))
    }

    /// BM25 parameters (as `LexicalRetrieval`).
    public static let k1 = 1.2, b = 0.75

    /// The `limit` chunks of the corpus that score highest for the token ids of `query` (distinct ids
    /// are the terms), best first; ties go to the earlier chunk. Reads only the query terms' postings.
    public func rank(query: [Int32], limit: Int) throws -> [Hit] {
        guard chunkCount > 0, limit > 0 else { return [] }
        var seen = Set<Int32>()
        var scores = [Int: Double]()
        let avg = max(1, Double(totalLength) / Double(chunkCount))
        let n = Double(chunkCount)
        for id in query where seen.insert(id).inserted {
            guard let t = termSlot(id) else { continue }
            let df = Int(termDF[t])
            let idf = Foundation.log(1 + (n - Double(df) + 0.5) / (Double(df) + 0.5))
            let off = payloadStart + Self.fixed + chunkCount * Self.chunkRow + termCount * Self.termRow + Int(termFirst[t]) * Self.postingRow
            let postings = try Self.pread(fd, path: path, offset: off, count: df * Self.postingRow)
            try postings.withUnsafeBytes { b in
                var previous = -1
                for k in 0..<df {
                    let c: UInt32 = readLE(b, k * 8), tf: UInt16 = readLE(b, k * 8 + 4), length: UInt16 = readLE(b, k * 8 + 6)
                    guard Int(c) < chunkCount, Int(c) > previous, tf >= 1, length >= tf else {
                        throw CorpusError.invalid(path: path, field: "postings[\(Int(termFirst[t]) + k)]",
                                                  reason: "chunk \(c), tf \(tf), length \(length) (chunks ascending below \(chunkCount), 1 ≤ tf ≤ length)")
                    }
                    previous = Int(c)
                    let f = Double(tf)
                    let norm = Self.k1 * (1 - Self.b + Self.b * Double(length) / avg)
                    scores[Int(c), default: 0] += idf * f * (Self.k1 + 1) / (f + norm)
                }
            }
        }
        let best = scores.filter { $0.value > 0 }.sorted { ($0.value, -$0.key) > ($1.value, -$1.key) }.prefix(limit)
        return try best.map { Hit(id: $0.key, score: $0.value, chunk: try chunk($0.key)) }
    }

    private func termSlot(_ id: Int32) -> Int? {
        var lo = 0, hi = termIDs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if termIDs[mid] < id { lo = mid + 1 } else { hi = mid }
        }
        return lo < termIDs.count && termIDs[lo] == id ? lo : nil
    }

    /// One chunk's document tokens and where it is, for `build`.
    public struct Entry {
        public var chunk: Chunk
        public var tokens: [Int32]
        public init(chunk: Chunk, tokens: [Int32]) {
            self.chunk = chunk
            self.tokens = tokens
        }
    }

    /// The sealed index of `entries` (in order: their position is the global chunk number) over
    /// `segmentCount` segments of the manifest whose file CRC is `manifestCRC`. Entries without tokens are
    /// left out. Deterministic: the same entries give the same bytes.
    public static func build(entries: [Entry], segmentCount: Int, manifestCRC: UInt32) -> [UInt8] {
        var chunks = [UInt8]()
        var postings = [Int32: [(UInt32, UInt16, UInt16)]]()
        var total = 0
        var c: UInt32 = 0
        for e in entries where !e.tokens.isEmpty {
            precondition(e.tokens.count <= Int(UInt16.max))
            appendLE(&chunks, UInt32(e.chunk.segment))
            appendLE(&chunks, UInt32(e.chunk.chunk))
            appendLE(&chunks, UInt64(e.chunk.start))
            appendLE(&chunks, UInt64(e.chunk.end))
            var tf = [Int32: Int]()
            for t in e.tokens { tf[t, default: 0] += 1 }
            for (t, f) in tf { postings[t, default: []].append((c, UInt16(f), UInt16(e.tokens.count))) }
            total += e.tokens.count
            c += 1
        }
        var terms = [UInt8](), rows = [UInt8]()
        var first: UInt64 = 0
        var p = 0
        for t in postings.keys.sorted() {
            let list = postings[t]!  // appended in chunk order
            appendLE(&terms, t)
            appendLE(&terms, UInt32(list.count))
            appendLE(&terms, first)
            first += UInt64(list.count)
            for (chunk, f, length) in list {
                appendLE(&rows, chunk)
                appendLE(&rows, f)
                appendLE(&rows, length)
            }
            p += list.count
        }
        var payload = [UInt8]()
        appendLE(&payload, manifestCRC)
        appendLE(&payload, UInt32(segmentCount))
        appendLE(&payload, UInt64(c))
        appendLE(&payload, UInt64(postings.count))
        appendLE(&payload, UInt64(p))
        appendLE(&payload, UInt64(total))
        payload += chunks
        payload += terms
        payload += rows
        return SealedFile.seal(magic: Corpus.indexMagic, payload: payload)
    }
}

/// Continues a CRC32C over `b`.
func cs_crc32c_continue(_ crc: UInt32, _ b: UnsafeRawBufferPointer) -> UInt32 { cs_crc32c(crc, b.baseAddress, b.count) }
