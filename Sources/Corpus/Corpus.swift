#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CStoreSupport
import Foundation
import GGUF
import Generation
import KVStore
import LongHeads
import Pipeline

/// A corpus: a directory of segment stores, a manifest and a corpus-wide lexical index (Docs/CORPUS.md).
///
/// ```
/// DIR/segments/ID/       a finished KV store (Docs/STORE.md), one per segment
/// DIR/segments/ID.seg    its record (SegmentRecord): written after the store, the segment's commit point
/// DIR/tmp/ID/            a segment's store while it is ingested (resumed by the next add after a crash)
/// DIR/tmp/ID.lock        held (flock) by the one process adding segment ID
/// DIR/manifest           every record, merged (Manifest)
/// DIR/index              BM25 statistics of every chunk, merged (CorpusIndex)
/// ```
/// Adding a segment and indexing are idempotent and crash-safe: a segment's store is built under
/// `tmp/`, renamed into `segments/` when complete and only then recorded; the manifest and the index are
/// rebuilt from the records and replaced whole (temporary name, fsync, rename). The same segment added
/// twice, by a retried task or a speculative copy, has the same id: the second add finds the record (or
/// waits on the lock, then finds it) and changes nothing.
public struct Corpus: Sendable {
    /// The corpus directory.
    public let path: String

    static let segmentMagic = "LHCSEG", manifestMagic = "LHCMANI", indexMagic = "LHCINDX"

    /// The corpus at `path` (nothing is read or made yet).
    public init(path: String) { self.path = path }

    /// Segment stores and records.
    public var segmentsDirectory: String { path + "/segments" }
    /// Stores being ingested.
    public var temporaryDirectory: String { path + "/tmp" }
    /// The manifest file.
    public var manifestPath: String { path + "/manifest" }
    /// The index file.
    public var indexPath: String { path + "/index" }
    /// The store of segment `id`.
    public func storePath(_ id: String) -> String { segmentsDirectory + "/" + id }
    /// The record of segment `id`.
    public func recordPath(_ id: String) -> String { segmentsDirectory + "/" + id + ".seg" }

    /// Makes the directories (missing ones only).
    public func create() throws {
        for d in [path, segmentsDirectory, temporaryDirectory] {
            if mkdir(d, 0o755) != 0 && errno != EEXIST {
                throw CorpusError.cannotWrite(path: d, reason: String(cString: strerror(errno)))
            }
        }
    }

    // MARK: Segments

    /// Identity of a segment's bytes: SHA-256 over the length and the CRC32C of each 64 KiB block
    /// (CRC in C is fast; the SHA-256 over the short CRC list keeps ids well spread).
    public static func contentDigest(_ bytes: UnsafeRawBufferPointer) -> String {
        var h = SHA256()
        h.update(bytes.count)
        var at = 0
        while at < bytes.count {
            let n = min(1 << 16, bytes.count - at)
            h.update(Int(cs_crc32c(0, bytes.baseAddress! + at, n)))
            at += n
        }
        return hex(h.finalize())
    }

    /// The stable id of a segment: a hash of its content digest, byte range, the model's fingerprint and
    /// everything that shapes its store (LongHeads parameters, KV precision, chat or raw). The source's
    /// path is not part of it, so the same bytes give the same id wherever the file is mounted (a Spark
    /// worker, the driver); the record keeps the path of the add that committed it.
    public static func segmentID(content: String, range: Range<Int>, model: [UInt8], parameters: LongHeadsParameters,
                                 precision: KVPrecision, chat: Bool) -> String {
        var h = SHA256()
        h.update("longheads-segment-1")
        h.update(content)
        h.update(range.lowerBound)
        h.update(range.upperBound)
        h.update(model)
        h.update(parameters.description)
        h.update(precision.description)
        h.update(chat ? 1 : 0)
        return String(hex(h.finalize()).prefix(32))
    }

    /// Byte ranges of segments of about `segmentTokens` tokens each (`count` gives the tokens of a piece),
    /// cut after blank lines (paragraph ends); a paragraph longer than that is cut after line ends; a line
    /// longer still is a segment of its own. Whole lines only, so every cut is on a UTF-8 boundary.
    /// Without `segmentTokens`, one segment: the whole input.
    public static func plan(_ bytes: UnsafeRawBufferPointer, segmentTokens: Int?, count: ([UInt8]) -> Int) -> [Range<Int>] {
        guard bytes.count > 0 else { return [] }
        guard let limit = segmentTokens else { return [0..<bytes.count] }
        // Paragraphs: up to and including the run of newlines that ends them.
        var units = [Range<Int>]()
        var i = 0, start = 0
        while i < bytes.count {
            if bytes[i] == 0x0A, i + 1 < bytes.count, bytes[i + 1] == 0x0A {
                var j = i
                while j < bytes.count, bytes[j] == 0x0A { j += 1 }
                units.append(start..<j)
                start = j
                i = j
            } else { i += 1 }
        }
        if start < bytes.count { units.append(start..<bytes.count) }
        func tokens(_ r: Range<Int>) -> Int { count(Array(bytes[r])) }
        // Paragraphs over the limit become lines.
        var pieces = [(Range<Int>, Int)]()
        for u in units {
            let n = tokens(u)
            if n <= limit { pieces.append((u, n)); continue }
            var s = u.lowerBound
            for k in u where bytes[k] == 0x0A || k == u.upperBound - 1 {
                if k + 1 > s { pieces.append((s..<(k + 1), tokens(s..<(k + 1)))) }
                s = k + 1
            }
        }
        var out = [Range<Int>]()
        var cur: Range<Int>? = nil, curTokens = 0
        for (r, n) in pieces {
            if let c = cur, curTokens + n > limit {
                out.append(c)
                cur = r
                curTokens = n
            } else {
                cur = (cur?.lowerBound ?? r.lowerBound)..<r.upperBound
                curTokens += n
            }
        }
        if let cur { out.append(cur) }
        return out
    }

    /// What `add` did.
    public enum AddOutcome: String, Sendable {
        /// The segment was ingested and recorded now.
        case added
        /// Its store was complete (a crash between rename and record): only the record was written.
        case recorded
        /// It was already there: nothing changed.
        case present
    }

    /// Adds `range` of the source file at `source` as one segment: ingests it (or resumes the ingest a
    /// crash left in `tmp/`) into `tmp/ID`, renames it to `segments/ID`, writes `segments/ID.seg`.
    /// Returns the record and what was done. Holding `tmp/ID.lock` makes a concurrent add of the same
    /// segment wait, then find it present.
    public func add(source: String, range: Range<Int>, pipeline: DocumentPipeline, parameters: LongHeadsParameters,
                    precision: KVPrecision, chat: Bool, progress: (IngestProgress) -> Void = { _ in }) throws -> (SegmentRecord, AddOutcome) {
        try create()
        let absolute = Self.absolutePath(source)
        let bytes = try Self.readRange(path: source, range: range)
        let content = bytes.withUnsafeBytes { Self.contentDigest($0) }
        let modelFP = modelFingerprint(pipeline.model.file)
        let id = Self.segmentID(content: content, range: range, model: modelFP, parameters: parameters, precision: precision, chat: chat)
        if let r = try existingRecord(id) { return (r, .present) }
        // One adder per segment id at a time (other ids run in parallel).
        let lockPath = temporaryDirectory + "/" + id + ".lock"
        let lock = Glibc.open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard lock >= 0 else { throw CorpusError.cannotWrite(path: lockPath, reason: String(cString: strerror(errno))) }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 {
            guard errno == EINTR else { throw CorpusError.cannotWrite(path: lockPath, reason: "flock: " + String(cString: strerror(errno))) }
        }
        if let r = try existingRecord(id) { return (r, .present) }
        let final = storePath(id)
        var outcome = AddOutcome.recorded
        if access(final + "/header", F_OK) != 0 {
            let tmp = temporaryDirectory + "/" + id
            let name = "\(source) bytes \(range.lowerBound)..<\(range.upperBound)"
            let doc = DocumentSource(bytes: bytes, name: name)
            if access(tmp + "/header", F_OK) == 0 {
                try pipeline.resume(source: doc, store: tmp, modelFile: pipeline.model.file, progress: progress)
            } else {
                try pipeline.ingest(source: doc, to: tmp, modelFile: pipeline.model.file, parameters: parameters, precision: precision,
                                    chat: chat, progress: progress)
            }
            guard rename(tmp, final) == 0 else { throw CorpusError.cannotWrite(path: final, reason: "rename: " + String(cString: strerror(errno))) }
            try SealedFile.syncDirectory(segmentsDirectory)
            try SealedFile.syncDirectory(temporaryDirectory)
            outcome = .added
        }
        let reader = try StoreReader.open(at: final, expectedModelFingerprint: modelFP)
        let info = try StoreInfo.decode(reader.header.blob, path: final, header: reader.header, vocabularySize: pipeline.model.config.vocabSize)
        guard info.complete != false else { throw PipelineError.incompleteStore(path: final, chunks: reader.chunkCount) }
        let record = SegmentRecord(id: id, source: absolute, start: range.lowerBound, end: range.upperBound, content: content,
                                   model: Self.hex(modelFP), storeFormat: Int(reader.header.formatVersion),
                                   kv: reader.geometry.precision.description, chunkSize: info.chunkSize,
                                   attentionLength: info.attentionLength, policy: (info.policy ?? .paper).rawValue, chat: info.chat,
                                   tokens: info.tokens, chunks: reader.chunkCount)
        try record.validate(path: recordPath(id))
        try SealedFile.writeAtomically(try record.sealed(), to: recordPath(id))
        unlink(lockPath)
        return (record, outcome)
    }

    /// The record of segment `id` if it is committed; a damaged one is an error naming it.
    func existingRecord(_ id: String) throws -> SegmentRecord? {
        guard access(recordPath(id), F_OK) == 0 else { return nil }
        return try SegmentRecord.read(path: recordPath(id))
    }

    /// Every committed segment record (`segments/*.seg`), in manifest order.
    public func records() throws -> [SegmentRecord] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: segmentsDirectory) } catch {
            throw CorpusError.notACorpus(path: path)
        }
        var out = [SegmentRecord]()
        for n in names where n.hasSuffix(".seg") {
            let r = try SegmentRecord.read(path: segmentsDirectory + "/" + n)
            guard n == r.id + ".seg" else {
                throw CorpusError.invalid(path: segmentsDirectory + "/" + n, field: "id", reason: "\(r.id), but the file is named \(n)")
            }
            out.append(r)
        }
        return out.sorted(by: Manifest.ordered)
    }

    // MARK: Index

    /// Merges every record into `manifest` and every segment's chunk tokens into `index` (both replaced
    /// whole). `opening` is the number of chat-template tokens that open a chat segment (left out of the
    /// index). Idempotent: the same records give the same bytes.
    @discardableResult
    public func index(opening: Int, vocabularySize: Int) throws -> Manifest {
        let segments = try records()
        guard let first = segments.first else {
            throw CorpusError.mismatch(path: path, reason: "the corpus has no segments: add documents with longheads ingest --corpus \(path) FILE…")
        }
        if let other = segments.first(where: { $0.model != first.model }) {
            throw CorpusError.mismatch(path: recordPath(other.id), reason: "segment of another model than \(recordPath(first.id)); a corpus holds one model's segments")
        }
        let manifest = Manifest(model: first.model, segments: segments)
        let manifestBytes = try manifest.sealed()
        var entries = [CorpusIndex.Entry]()
        for (s, r) in segments.enumerated() {
            let store = storePath(r.id)
            let reader = try StoreReader.open(at: store)
            guard Self.hex(reader.header.modelFingerprint) == r.model, reader.chunkCount == r.chunks else {
                throw CorpusError.mismatch(path: store, reason: "the store does not match its record \(recordPath(r.id)) (model or chunk count)")
            }
            let info = try StoreInfo.decode(reader.header.blob, path: store, header: reader.header, vocabularySize: vocabularySize)
            let skip = info.chat ? opening : 0
            var previousEnd = 0
            for j in 0..<reader.chunkCount {
                let ids = Array(try reader.tokens(ofChunk: j).dropFirst(max(0, skip - j * info.chunkSize)))
                let b = try reader.byteRange(ofChunk: j)
                previousEnd = Int(b.upperBound)
                entries.append(.init(chunk: .init(segment: s, chunk: j, start: r.start + Int(b.lowerBound), end: r.start + Int(b.upperBound)),
                                     tokens: ids))
            }
            // The tail: tokens after the last full chunk, up to the segment's end.
            let tail = Array(info.tailTokens.dropFirst(max(0, skip - reader.chunkCount * info.chunkSize)))
            entries.append(.init(chunk: .init(segment: s, chunk: reader.chunkCount, start: r.start + previousEnd, end: r.end), tokens: tail))
        }
        let crc = manifestBytes.withUnsafeBytes { crc32c($0) }
        let index = CorpusIndex.build(entries: entries, segmentCount: segments.count, manifestCRC: crc)
        // The manifest first: an index is only read with the manifest whose CRC it records.
        try SealedFile.writeAtomically(manifestBytes, to: manifestPath)
        try SealedFile.writeAtomically(index, to: indexPath)
        return manifest
    }

    /// Opens the manifest and the index, checking that they belong together.
    public func open() throws -> (Manifest, CorpusIndex) {
        guard access(manifestPath, F_OK) == 0 else { throw CorpusError.notACorpus(path: path) }
        let (manifest, crc) = try Manifest.read(path: manifestPath)
        let index = try CorpusIndex(path: indexPath)
        guard index.manifestCRC == crc, index.segmentCount == manifest.segments.count else {
            throw CorpusError.invalid(path: indexPath, field: "manifestCRC",
                                      reason: "built from another manifest than \(manifestPath): run longheads corpus index \(path)")
        }
        return (manifest, index)
    }

    // MARK: Helpers

    /// Lowercase hex of `bytes`.
    public static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// `path` made absolute against the working directory.
    public static func absolutePath(_ path: String) -> String {
        let p = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        return URL(fileURLWithPath: p).standardizedFileURL.path
    }

    /// The bytes `range` of the file at `path` (a range past the end is refused, naming the size).
    public static func readRange(path: String, range: Range<Int>) throws -> [UInt8] {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CorpusError.cannotRead(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw CorpusError.cannotRead(path: path, reason: "not a regular file")
        }
        guard range.upperBound <= Int(st.st_size), !range.isEmpty else {
            throw CorpusError.mismatch(path: path, reason: "byte range \(range.lowerBound):\(range.upperBound) is empty or outside the file (\(st.st_size) bytes)")
        }
        return try CorpusIndex.pread(fd, path: path, offset: range.lowerBound, count: range.count)
    }

    /// Size of the regular file at `path`.
    public static func fileSize(_ path: String) throws -> Int {
        var st = stat()
        guard stat(path, &st) == 0 else { throw CorpusError.cannotRead(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw CorpusError.cannotRead(path: path, reason: "not a regular file") }
        return Int(st.st_size)
    }
}
