#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// One chunk handed to `StoreWriter.append`. The pointers need only be valid during the call.
public struct ChunkRecord {
    /// The chunk's token ids, 1...chunkSize (fewer only for the last chunk of a document).
    public var tokens: [Int32]
    /// Where the chunk's text is in the source, in bytes.
    public var byteRange: Range<UInt64>
    /// One page per layer, each `floatsPerPage` floats in the caller's layout. A partial chunk still
    /// gives full pages, zero-padded past its tokens (the zeros compress away).
    public var pages: [UnsafeBufferPointer<Float>]
    /// `featureFloatsPerChunk` floats.
    public var features: UnsafeBufferPointer<Float>

    public init(tokens: [Int32], byteRange: Range<UInt64>, pages: [UnsafeBufferPointer<Float>], features: UnsafeBufferPointer<Float>) {
        self.tokens = tokens
        self.byteRange = byteRange
        self.pages = pages
        self.features = features
    }
}

/// When `append` commits by itself. A commit costs a few fsyncs (milliseconds); a crash loses at most
/// what was appended since the last commit.
public struct CommitPolicy: Sendable, Equatable {
    /// Commit once this many chunks are pending.
    public var maxPendingChunks: Int
    /// Commit at the first append this many seconds after the last commit.
    public var maxSeconds: Double

    public init(maxPendingChunks: Int, maxSeconds: Double) {
        self.maxPendingChunks = maxPendingChunks
        self.maxSeconds = maxSeconds
    }

    /// Every 16 chunks or 2 seconds, whichever comes first.
    public static let `default` = CommitPolicy(maxPendingChunks: 16, maxSeconds: 2)
    /// Only explicit `commit()` / `close()`.
    public static let manual = CommitPolicy(maxPendingChunks: .max, maxSeconds: .infinity)
    /// After every chunk.
    public static let everyChunk = CommitPolicy(maxPendingChunks: 1, maxSeconds: 0)
}

/// Writes a store: creates it or resumes it, appends chunks, commits.
///
/// Commit protocol: `append` writes a chunk's pages, page-table record, features and tokens past the
/// committed end of each file; `commit` fsyncs the four files, then writes the new header (counts
/// included, commit sequence + 1) into the header slot of that sequence's parity and fdatasyncs it
/// (HeaderFile.swift: two slots, as LMDB's meta pages). A chunk counts only once that slot is durable; a
/// torn slot leaves the previous commit readable in the other one. Whatever is on disk beyond the committed lengths (a crash
/// mid-append, a kill -9 at any instant) is ignored by readers and cut off by `resume`.
///
/// After any I/O error (disk full included) the writer refuses further work (`writerFailed`): the
/// committed state on disk is intact, and `resume` continues from it.
///
/// One writer per store (an exclusive `flock` on the directory); not thread-safe, but `reader` may be
/// used from other threads while this writer appends.
public final class StoreWriter {
    /// The directory of the store.
    public let path: String
    /// Layout numbers.
    public let geometry: StoreGeometry
    /// When `append` commits by itself.
    public var commitPolicy: CommitPolicy
    let core: StoreCore
    let faults: FaultInjector
    private let dirFD: Int32
    private let encoder: PageEncoder
    private var committed: StoreHeader
    private var chunks: Int
    private var tokens: Int
    private var pagesEnd: Int
    private var sourceEnd: UInt64
    private var lastTokens: Int
    private var pending = 0
    private var headerDirty = false
    private var lastCommit = Date()
    private var flags: UInt32
    private var blob: [UInt8]
    private var failure: StoreError?
    private var closed = false

    private init(path: String, header h: StoreHeader, core: StoreCore, dirFD: Int32, faults: FaultInjector, policy: CommitPolicy) throws {
        self.path = path
        geometry = h.geometry
        commitPolicy = policy
        self.core = core
        self.faults = faults
        self.dirFD = dirFD
        encoder = try PageEncoder(geometry: h.geometry)
        committed = h
        chunks = h.chunkCount
        tokens = h.tokenCount
        pagesEnd = h.pagesBytes
        sourceEnd = h.sourceBytesConsumed
        flags = h.flags
        blob = h.blob
        lastTokens = 0
        if chunks > 0 {
            let s = core.snapshot()
            let t = try core.tokensRecord(s, chunks - 1)
            lastTokens = t.tokens.count
        }
    }

    deinit {
        // Without close() nothing pending is committed: exactly what a crash would leave.
        if !closed { closeFD(dirFD) }
    }

    /// Takes the writer lock: an exclusive flock on the directory, released on close or process death.
    ///
    /// A busy lock is retried for half a second before giving up: a child process spawned by another
    /// thread briefly holds a copy of every descriptor (until its exec closes the O_CLOEXEC ones), and
    /// with it the lock of a writer that was just closed.
    private static func lockDirectory(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.cannotOpen(path: path, reason: errnoText(errno)) }
        var waited = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            if e == EINTR { continue }
            if e == EWOULDBLOCK && waited < 50 {
                usleep(10_000)
                waited += 1
                continue
            }
            closeFD(fd)
            if e == EWOULDBLOCK { throw StoreError.locked(path: path) }
            throw StoreError.io(path: path, operation: "flock", offset: nil, errno: e)
        }
        return fd
    }

    /// Creates a new, empty store in directory `path` (created if missing; it must not hold a store).
    ///
    /// - Parameters:
    ///   - modelFingerprint: 32 bytes identifying the model; readers and `resume` refuse other models.
    ///   - tokenizerFingerprint: 32 bytes identifying the tokenizer.
    ///   - flags: caller-defined bits, kept in the header.
    ///   - blob: caller-defined bytes (≤ 64 KiB), kept in the header.
    public static func create(at path: String, geometry: StoreGeometry, modelFingerprint: [UInt8], tokenizerFingerprint: [UInt8],
                              flags: UInt32 = 0, blob: [UInt8] = [], commitPolicy: CommitPolicy = .default) throws -> StoreWriter {
        try create(at: path, geometry: geometry, modelFingerprint: modelFingerprint, tokenizerFingerprint: tokenizerFingerprint,
                   flags: flags, blob: blob, commitPolicy: commitPolicy, faults: FaultInjector())
    }

    static func create(at path: String, geometry g: StoreGeometry, modelFingerprint: [UInt8], tokenizerFingerprint: [UInt8],
                       flags: UInt32, blob: [UInt8], commitPolicy: CommitPolicy, faults: FaultInjector) throws -> StoreWriter {
        try g.validate()
        guard modelFingerprint.count == 32, tokenizerFingerprint.count == 32 else {
            throw StoreError.invalidArgument("fingerprints must be 32 bytes (model: \(modelFingerprint.count), tokenizer: \(tokenizerFingerprint.count))")
        }
        guard blob.count <= maxStoreBlobBytes else { throw StoreError.invalidArgument("blob of \(blob.count) bytes exceeds \(maxStoreBlobBytes)") }
        var createdDir = false
        if mkdir(path, 0o755) == 0 {
            createdDir = true
        } else if errno != EEXIST {
            throw StoreError.cannotCreate(path: path, reason: errnoText(errno))
        }
        let dirFD = try lockDirectory(path)
        do {
            if !createdDir { try checkNewStoreDirectory(path) }
            var id = [UInt8](repeating: 0, count: 16)
            var rng = SystemRandomNumberGenerator()
            for i in 0..<16 { id[i] = UInt8.random(in: 0...255, using: &rng) }
            let h0 = StoreHeader(formatVersion: formatVersion, storeID: id, modelFingerprint: modelFingerprint,
                                tokenizerFingerprint: tokenizerFingerprint, geometry: g, flags: flags, chunkCount: 0, tokenCount: 0,
                                sourceBytesConsumed: 0, pagesBytes: dataFileHeaderBytes, commitSequence: 0, blob: blob)
            let n = StoreCore.fileNames
            for (name, m, rb) in [(n.pages, pagesMagic, 0), (n.table, pageTableMagic, PageTableRecord.bytes(layers: g.layers)),
                                  (n.features, featuresMagic, 4 * g.featureFloatsPerChunk),
                                  (n.tokens, tokensMagic, TokensRecord.bytes(chunkSize: g.chunkSize))] {
                let f = try StoreFile.openFile(joinPath(path, name), flags: O_RDWR, create: true, faults: faults)
                try f.write(DataFileHeader(magic: m, storeID: id, geometry: g, recordBytes: rb).encode(), at: 0)
                try f.sync()
            }
            // The header comes last: until it exists the directory is not a store, so a crash
            // during creation leaves nothing that could be mistaken for one.
            let h = try HeaderFile.create(h0, dir: path, faults: faults)
            if createdDir {
                try syncDirectory(parentDirectory(of: path), faults: faults)
            }
            let core = try StoreCore(dir: path, header: h, writable: true, truncateToCommitted: false, faults: faults)
            return try StoreWriter(path: path, header: h, core: core, dirFD: dirFD, faults: faults, policy: commitPolicy)
        } catch {
            closeFD(dirFD)
            throw error
        }
    }

    /// The files an interrupted creation can leave behind (before the header made the directory a store),
    /// with the magic their first bytes must carry to count as such a leftover.
    private static var creationLeftovers: [String: UInt32] {
        let n = StoreCore.fileNames
        return [n.pages: pagesMagic, n.table: pageTableMagic, n.features: featuresMagic, n.tokens: tokensMagic, HeaderFile.newName: headerMagic]
    }

    /// Checks that the existing directory `path` (locked by the caller) may receive a new store, so that
    /// creation never clobbers anything: it must be empty, or hold only the leftovers of an interrupted
    /// creation of a store (regular files with a store file's name that are empty or start with that file's
    /// magic), which are removed. Anything else, a symbolic link among the store's names included, is
    /// refused (`refusedDirectory`) before a byte is written; an existing store is `cannotCreate`.
    private static func checkNewStoreDirectory(_ path: String) throws {
        guard let d = opendir(path) else { throw StoreError.cannotOpen(path: path, reason: errnoText(errno)) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(d)
        var leftovers: [String] = []
        for name in names.sorted() {
            let file = joinPath(path, name)
            var st = stat()
            guard lstat(file, &st) == 0 else { throw StoreError.cannotOpen(path: file, reason: errnoText(errno)) }
            let kind = st.st_mode & S_IFMT
            if kind == S_IFLNK {
                throw StoreError.refusedDirectory(path: path, reason: "`\(name)` is a symbolic link")
            }
            if name == HeaderFile.name {
                throw StoreError.cannotCreate(path: path, reason: "a store already exists there (resume it, or delete the directory)")
            }
            guard let expected = creationLeftovers[name], kind == S_IFREG else {
                throw StoreError.refusedDirectory(path: path, reason: "the directory is not empty (it holds `\(name)`); "
                                                  + "give a new or empty directory")
            }
            if st.st_size > 0 {
                var m: UInt32 = 0
                let fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                let n = fd >= 0 ? pread(fd, &m, 4, 0) : -1
                if fd >= 0 { closeFD(fd) }
                guard n == 4 || (n >= 0 && Int(st.st_size) < 4), n < 4 || m == expected else {
                    throw StoreError.refusedDirectory(path: path, reason: "`\(name)` is not a KV store file; give a new or empty directory")
                }
            }
            leftovers.append(name)
        }
        for name in leftovers { unlink(joinPath(path, name)) }
    }

    /// Reopens a store to append to it, discarding anything written after its last commit.
    ///
    /// Checks the header, the model fingerprint, the geometry (if given), every data file's prefix and
    /// length, and the last committed chunk's records; then cuts every file back to the committed length.
    /// If the last chunk is partial (`lastChunkIsPartial`), `truncate(toChunkCount: chunkCount - 1)`
    /// drops it so that it can be appended again complete.
    public static func resume(at path: String, expectedModelFingerprint: [UInt8], expectedGeometry: StoreGeometry? = nil,
                              commitPolicy: CommitPolicy = .default) throws -> StoreWriter {
        try resume(at: path, expectedModelFingerprint: expectedModelFingerprint, expectedGeometry: expectedGeometry,
                   commitPolicy: commitPolicy, faults: FaultInjector())
    }

    static func resume(at path: String, expectedModelFingerprint: [UInt8], expectedGeometry: StoreGeometry?,
                       commitPolicy: CommitPolicy, faults: FaultInjector) throws -> StoreWriter {
        let dirFD = try lockDirectory(path)
        do {
            let h = try HeaderFile.read(dir: path)
            if expectedModelFingerprint != h.modelFingerprint {
                throw StoreError.modelMismatch(path: joinPath(path, HeaderFile.name), expected: expectedModelFingerprint, found: h.modelFingerprint)
            }
            if let g = expectedGeometry { try g.check(found: h.geometry, path: joinPath(path, HeaderFile.name)) }
            let core = try StoreCore(dir: path, header: h, writable: true, truncateToCommitted: true, faults: faults)
            if h.chunkCount > 0 {
                // The last committed chunk must be intact: appending continues right after it.
                let s = core.snapshot()
                let c = h.chunkCount - 1
                let r = try core.tableRecord(s, c)
                _ = try core.tokensRecord(s, c)
                try core.checkFeatures(s, c, expectedCRC: r.featuresCRC)
                let l = h.geometry.layers - 1
                let end = r.offsets[l] + pageHeaderBytes + r.storedBytes[l]
                guard end == h.pagesBytes else {
                    throw StoreError.inconsistent(path: core.pages.path, what: "end of the last committed page", offset: end,
                                                  expected: "\(h.pagesBytes) (header)", found: "\(end) (page table)")
                }
            }
            return try StoreWriter(path: path, header: h, core: core, dirFD: dirFD, faults: faults, policy: commitPolicy)
        } catch {
            closeFD(dirFD)
            throw error
        }
    }

    /// The last committed header.
    public var header: StoreHeader { committed }
    /// Chunks appended, committed or not.
    public var chunkCount: Int { chunks }
    /// Chunks committed.
    public var committedChunkCount: Int { committed.chunkCount }
    /// Tokens appended, committed or not.
    public var tokenCount: Int { tokens }
    /// End of the last appended chunk in the source text.
    public var sourceBytesConsumed: UInt64 { sourceEnd }
    /// True if the last appended chunk has fewer than `chunkSize` tokens; nothing can follow it until
    /// it is dropped with `truncate(toChunkCount: chunkCount - 1)`.
    public var lastChunkIsPartial: Bool { chunks > 0 && lastTokens < geometry.chunkSize }

    /// A reader of everything appended so far (committed or not), sharing this writer's mappings;
    /// it stays usable from other threads while this writer appends.
    public private(set) lazy var reader = StoreReader(core: core, live: true)

    private func checkUsable() throws {
        if closed { throw StoreError.invalidArgument("\(path): the writer is closed") }
        if let failure { throw StoreError.writerFailed(path: path, cause: failure.description) }
    }

    /// Runs `body`; an I/O error stops the writer for good.
    private func guarded<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as StoreError {
            if case .invalidArgument = e { throw e }
            failure = e
            throw e
        }
    }

    /// Appends one chunk after the last: its pages (converted, LZ4-compressed), page-table record,
    /// features and tokens. Visible to `reader` at once; durable after the next commit, which this
    /// call makes itself when `commitPolicy` says so.
    public func append(_ chunk: ChunkRecord) throws {
        try checkUsable()
        let g = geometry
        guard !chunk.tokens.isEmpty, chunk.tokens.count <= g.chunkSize else {
            throw StoreError.invalidArgument("a chunk holds 1...\(g.chunkSize) tokens, got \(chunk.tokens.count)")
        }
        guard chunk.pages.count == g.layers else {
            throw StoreError.invalidArgument("a chunk needs \(g.layers) pages (one per layer), got \(chunk.pages.count)")
        }
        for (l, p) in chunk.pages.enumerated() where p.count != g.floatsPerPage || p.baseAddress == nil {
            throw StoreError.invalidArgument("page of layer \(l) has \(p.count) floats, expected \(g.floatsPerPage)")
        }
        guard chunk.features.count == g.featureFloatsPerChunk, g.featureFloatsPerChunk == 0 || chunk.features.baseAddress != nil else {
            throw StoreError.invalidArgument("features have \(chunk.features.count) floats, expected \(g.featureFloatsPerChunk)")
        }
        if lastChunkIsPartial {
            throw StoreError.invalidArgument("chunk \(chunks - 1) is partial (\(lastTokens) of \(g.chunkSize) tokens) and must stay last; "
                                             + "drop it with truncate(toChunkCount: \(chunks - 1)) and append it complete")
        }
        guard chunk.byteRange.lowerBound >= sourceEnd || chunks == 0 else {
            throw StoreError.invalidArgument("chunk byte range \(chunk.byteRange) starts before the end of the previous chunk (\(sourceEnd))")
        }
        let c = chunks
        try guarded {
            var record = PageTableRecord(offsets: [], storedBytes: [], dataCRCs: [], tokens: chunk.tokens.count, featuresCRC: 0)
            var end = pagesEnd
            for l in 0..<g.layers {
                let (bytes, stored, crc) = encoder.encode(chunk.pages[l].baseAddress!, chunk: c, layer: l, tokens: chunk.tokens.count)
                try core.pages.write(bytes.baseAddress!, bytes.count, at: end)
                record.offsets.append(end)
                record.storedBytes.append(stored)
                record.dataCRCs.append(crc)
                end += bytes.count
            }
            let fBytes = 4 * g.featureFloatsPerChunk
            if fBytes > 0 {
                let fp = UnsafeRawPointer(chunk.features.baseAddress!)
                record.featuresCRC = crc32c(fp, fBytes)
                try core.features.write(fp, fBytes, at: core.featuresOffset(c))
            }
            try core.table.write(record.encode(), at: core.tableOffset(c))
            try core.tokens.write(TokensRecord(tokens: chunk.tokens, byteRange: chunk.byteRange).encode(chunkSize: g.chunkSize),
                                  at: core.tokensOffset(c))
            try core.publish(chunks: c + 1, pagesEnd: end)
            pagesEnd = end
        }
        chunks = c + 1
        tokens += chunk.tokens.count
        lastTokens = chunk.tokens.count
        sourceEnd = chunk.byteRange.upperBound
        pending += 1
        if pending >= commitPolicy.maxPendingChunks || Date().timeIntervalSince(lastCommit) >= commitPolicy.maxSeconds {
            try commit()
        }
    }

    /// Makes everything appended (and a changed blob or flags) durable: fsync of the data files, then
    /// the header into its slot + fdatasync. Does nothing if nothing changed.
    public func commit() throws {
        try checkUsable()
        guard pending > 0 || headerDirty || chunks != committed.chunkCount else { return }
        try guarded {
            if pending > 0 {
                for f in [core.pages, core.table, core.features, core.tokens] { try f.sync() }
                core.dropResidentPages()
                core.dropResidentFeatures()
            }
            try writeHeader()
        }
        pending = 0
        headerDirty = false
        lastCommit = Date()
    }

    private func writeHeader() throws {
        var h = committed
        h.chunkCount = chunks
        h.tokenCount = tokens
        h.sourceBytesConsumed = sourceEnd
        h.pagesBytes = pagesEnd
        h.flags = flags
        h.blob = blob
        h.commitSequence += 1
        try HeaderFile.write(h, dir: path, faults: faults)
        committed = h
        core.setCommitted(h)
    }

    /// Drops chunks `count..<chunkCount`, e.g. a partial last chunk before appending it complete.
    ///
    /// If committed chunks are dropped, the smaller count is committed at once (before any of their
    /// bytes can be overwritten); their bytes are overwritten by later appends and cut off by `resume`.
    /// Readers must not be reading the dropped chunks meanwhile; a `PageCache` holding them must be
    /// told (`PageCache.invalidate(fromChunk:)`).
    public func truncate(toChunkCount count: Int) throws {
        try checkUsable()
        guard count >= 0 && count <= chunks else {
            throw StoreError.invalidArgument("cannot truncate \(chunks) chunks to \(count)")
        }
        if count == chunks { return }
        let s = core.snapshot()
        let newEnd: Int
        var newTokens = 0, newLast = 0
        var newSource: UInt64 = 0
        if count == 0 {
            newEnd = dataFileHeaderBytes
        } else {
            let r = try guarded { try core.tableRecord(s, count - 1) }
            let l = geometry.layers - 1
            newEnd = r.offsets[l] + pageHeaderBytes + r.storedBytes[l]
            // Cutting chunks off never lengthens `pages`: a record that says so is damaged.
            guard newEnd <= pagesEnd else {
                throw StoreError.inconsistent(path: core.pages.path, what: "end of the last page of chunk \(count - 1)", offset: r.offsets[l],
                                              expected: "at most \(pagesEnd)", found: "\(newEnd)")
            }
            let t = try guarded { try core.tokensRecord(s, count - 1) }
            newLast = t.tokens.count
            newSource = t.byteRange.upperBound
            newTokens = (count - 1) * geometry.chunkSize + newLast
        }
        try guarded { try core.publish(chunks: count, pagesEnd: newEnd) }
        chunks = count
        tokens = newTokens
        lastTokens = newLast
        pagesEnd = newEnd
        sourceEnd = newSource
        if count < committed.chunkCount {
            pending = 0
            // Into both header slots, before any byte of the dropped chunks can be overwritten: a fallback
            // to the other slot must never find chunks whose bytes were reused.
            try guarded {
                try writeHeader()
                try writeHeader()
            }
            lastCommit = Date()
        } else {
            pending = count - committed.chunkCount
        }
    }

    /// Replaces the caller's blob (≤ 64 KiB); written at the next commit.
    public func updateBlob(_ newBlob: [UInt8]) throws {
        try checkUsable()
        guard newBlob.count <= maxStoreBlobBytes else {
            throw StoreError.invalidArgument("blob of \(newBlob.count) bytes exceeds \(maxStoreBlobBytes)")
        }
        if newBlob != blob {
            blob = newBlob
            headerDirty = true
        }
    }

    /// Replaces the caller's flags; written at the next commit.
    public func updateFlags(_ newFlags: UInt32) throws {
        try checkUsable()
        if newFlags != flags {
            flags = newFlags
            headerDirty = true
        }
    }

    /// Commits what is pending and releases the writer lock. `reader` stays usable. Dropping a writer
    /// without `close` commits nothing (like a crash).
    public func close() throws {
        if closed { return }
        defer {
            closed = true
            closeFD(dirFD)
        }
        if failure == nil { try commit() }
    }
}
