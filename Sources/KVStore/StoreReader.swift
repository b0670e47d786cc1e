#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Read access to a store: the committed state of a store on disk (`open`), or everything a writer has
/// appended so far (`StoreWriter.reader`).
///
/// Nothing is read whole into RAM, and what a long session reads does not stay resident: `readPage`
/// reads one page with `pread` straight into the caller's buffer and decodes it there; `featureRows`
/// scans one layer of the features (see there); `features` is one zero-copy pointer into the mapped
/// `features` file (its pages stay resident once touched). A page's stored bytes are checked against
/// their CRC at the first read of that page by this reader (its header at every read). Thread-safe: any
/// number of threads may read at once.
///
/// A reader opened from disk sees the state committed when it was opened (call `refresh` to see later
/// commits). While another process writes the same store, only chunks are read that the writer never
/// rewrites; replacing a partial last chunk (`StoreWriter.truncate`) must not race with readers of it.
public final class StoreReader: @unchecked Sendable {
    let core: StoreCore
    private let live: Bool
    /// The directory of the store.
    public let path: String

    /// Set when the newest header slot was damaged (a torn commit) and the previous commit is read instead:
    /// what was wrong (`verify` reports it).
    public private(set) var headerFallback: StoreError?

    init(core: StoreCore, live: Bool) {
        self.core = core
        self.live = live
        path = core.dir
    }

    /// Opens the store at `path` for reading its committed state.
    ///
    /// Checks the header (magic, version, CRC), the model fingerprint (if given), the geometry (if
    /// given), every data file's prefix and length, and the CRCs of all page-table records and features
    /// (the features are read by every query anyway). Pages are checked when read, or all at once by
    /// `verify`.
    public static func open(at path: String, expectedModelFingerprint: [UInt8]? = nil,
                            expectedGeometry: StoreGeometry? = nil) throws -> StoreReader {
        let reading = try HeaderFile.readSlots(dir: path)
        let h = reading.header
        if let e = expectedModelFingerprint, e != h.modelFingerprint {
            throw StoreError.modelMismatch(path: joinPath(path, HeaderFile.name), expected: e, found: h.modelFingerprint)
        }
        if let g = expectedGeometry { try g.check(found: h.geometry, path: joinPath(path, HeaderFile.name)) }
        let core = try StoreCore(dir: path, header: h, writable: false, truncateToCommitted: false, faults: nil)
        let r = StoreReader(core: core, live: false)
        r.headerFallback = reading.fallback
        try r.checkIndex(from: 0, to: h.chunkCount, header: h)
        return r
    }

    /// Page-table records and features of chunks `from..<to`, and that the pages end where the
    /// header says. The records are the index every later read trusts, so they are validated here, once:
    /// each chunk's pages follow one another without gap or overlap from the previous chunk's end, every
    /// chunk but the last holds `chunkSize` tokens, and the last one's token count (page table and tokens
    /// record) is what the header's token count leaves for it.
    private func checkIndex(from: Int, to: Int, header h: StoreHeader) throws {
        let s = core.snapshot()
        let g = h.geometry
        var end = from == to ? (to == 0 ? dataFileHeaderBytes : -1) : -1
        var featureCRCs = [UInt32]()
        featureCRCs.reserveCapacity(to - from)
        var cursor: Int? = from == 0 ? dataFileHeaderBytes : nil
        for c in from..<to {
            let r = try core.tableRecord(s, c)
            featureCRCs.append(r.featuresCRC)
            for l in 0..<g.layers {
                if let at = cursor, r.offsets[l] != at {
                    throw StoreError.inconsistent(path: core.table.path, what: "page offset of chunk \(c) layer \(l)",
                                                  offset: core.tableOffset(c) + 16 * l, expected: "\(at)", found: "\(r.offsets[l])")
                }
                // Offsets are below 2^56 and stored sizes u32 (PageTableRecord): no overflow.
                cursor = r.offsets[l] + pageHeaderBytes + r.storedBytes[l]
            }
            let expectedTokens = c == h.chunkCount - 1 ? h.tokenCount - c * g.chunkSize : g.chunkSize
            guard r.tokens == expectedTokens else {
                throw StoreError.inconsistent(path: core.table.path, what: "token count of chunk \(c)", offset: core.tableOffset(c) + 16 * g.layers,
                                              expected: "\(expectedTokens) (header: \(h.tokenCount) tokens in \(h.chunkCount) chunks)",
                                              found: "\(r.tokens)")
            }
            if c == to - 1 {
                end = cursor ?? -1
                let t = try core.tokensRecord(s, c)
                guard t.tokens.count == expectedTokens else {
                    throw StoreError.inconsistent(path: core.tokens.path, what: "token count of chunk \(c)", offset: core.tokensOffset(c),
                                                  expected: "\(expectedTokens) (header)", found: "\(t.tokens.count)")
                }
                guard t.byteRange.upperBound == h.sourceBytesConsumed else {
                    throw StoreError.inconsistent(path: core.tokens.path, what: "source byte end of chunk \(c)", offset: core.tokensOffset(c),
                                                  expected: "\(h.sourceBytesConsumed) (header)", found: "\(t.byteRange.upperBound)")
                }
            }
        }
        try core.checkFeatures(from..<to) { featureCRCs[$0 - from] }
        if end >= 0 && end != h.pagesBytes {
            throw StoreError.inconsistent(path: core.pages.path, what: "end of the last committed page", offset: end,
                                          expected: "\(h.pagesBytes) (header)", found: "\(end) (page table)")
        }
    }

    /// Re-reads the header to see chunks committed since `open` (a store being ingested by another
    /// process). Returns the new chunk count. A live reader of a writer is always current.
    @discardableResult
    public func refresh() throws -> Int {
        if live { return chunkCount }
        let old = core.header
        let h = try HeaderFile.read(dir: path)
        guard h.storeID == old.storeID else {
            throw StoreError.foreignFile(path: joinPath(path, HeaderFile.name), expectedStore: old.storeID, foundStore: h.storeID)
        }
        guard h.chunkCount >= old.chunkCount else {
            throw StoreError.invalidArgument("\(path): the store was cut back from \(old.chunkCount) to \(h.chunkCount) chunks; reopen it")
        }
        for (f, need) in [(core.pages, h.pagesBytes), (core.table, core.tableOffset(h.chunkCount)),
                          (core.features, core.featuresOffset(h.chunkCount)), (core.tokens, core.tokensOffset(h.chunkCount))] {
            let have = try f.size()
            if have < need { throw StoreError.truncated(path: f.path, what: "committed state", neededBytes: need, fileBytes: have) }
        }
        try core.publish(chunks: h.chunkCount, pagesEnd: h.pagesBytes)
        // From the old last chunk on: a partial last chunk may have been replaced by a complete one.
        try checkIndex(from: max(0, old.chunkCount - 1), to: h.chunkCount, header: h)
        core.invalidateDerived(fromChunk: max(0, old.chunkCount - 1))
        core.setCommitted(h)
        return h.chunkCount
    }

    /// The committed header (for a writer's reader: as of the writer's last commit).
    public var header: StoreHeader { core.header }
    /// Layout numbers.
    public var geometry: StoreGeometry { core.geometry }
    /// Chunks this reader can read.
    public var chunkCount: Int { core.snapshot().chunks }
    /// Tokens in those chunks.
    public var tokenCount: Int {
        if !live { return core.header.tokenCount }
        // A writer's view: every chunk but the last is complete.
        let s = core.snapshot()
        if s.chunks == 0 { return 0 }
        let last = (try? core.tokensRecord(s, s.chunks - 1).tokens.count) ?? geometry.chunkSize
        return (s.chunks - 1) * geometry.chunkSize + last
    }

    /// Feature floats of all readable chunks, `[chunkCount][featureFloatsPerChunk]`, mapped zero-copy
    /// (64-byte aligned). Valid while this reader (or the writer it came from) lives; fetch it again
    /// after the store grew, an older pointer may not cover the newer chunks.
    public var features: UnsafePointer<Float> {
        (core.snapshot().features + dataFileHeaderBytes).assumingMemoryBound(to: Float.self)
    }

    /// Points `rows[x]` at the features of `layer` of chunk `chunks.lowerBound + x`: a row of
    /// `featureFloatsPerChunk / layers` floats. The features of a chunk are `layers` rows of equal size,
    /// row l belonging to layer l (`featureFloatsPerChunk` must be a multiple of `layers`).
    ///
    /// For scans of one layer over many chunks (LongHeads selection). The rows point into a layer-major
    /// copy of the features (a private temporary file, made on first use and extended as chunks are added,
    /// mapped read-only), so a scan touches only that layer's bytes; and each call first unmaps the pages
    /// the previous call's rows made resident, so however long the document, at most one scan's rows are
    /// resident. (Reading the same rows through `features` keeps every feature page resident.) The pointers
    /// stay valid while this reader (or its writer) lives: a dropped page is read again on access.
    /// Thread-safe.
    public func featureRows(layer: Int, chunks: Range<Int>, into rows: UnsafeMutablePointer<UnsafePointer<Float>>) throws {
        try core.featureRows(layer: layer, range: chunks, into: rows)
    }

    private func checkChunk(_ chunk: Int, _ s: StoreCore.Snapshot) throws {
        guard chunk >= 0 && chunk < s.chunks else {
            throw StoreError.invalidArgument("\(path): chunk \(chunk) out of range (the store has \(s.chunks) chunks)")
        }
    }

    /// The token ids of a chunk (its actual tokens, fewer than `chunkSize` for a partial last chunk).
    public func tokens(ofChunk chunk: Int) throws -> [Int32] {
        let s = core.snapshot()
        try checkChunk(chunk, s)
        return try core.tokensRecord(s, chunk).tokens
    }

    /// The bytes `[start, end)` of the source text the chunk was made from.
    public func byteRange(ofChunk chunk: Int) throws -> Range<UInt64> {
        let s = core.snapshot()
        try checkChunk(chunk, s)
        return try core.tokensRecord(s, chunk).byteRange
    }

    /// Decodes page (chunk, layer) into `buffer` (at least `floatsPerPage` floats) after checking the
    /// page table entry, the page header and (at this reader's first read of the page) the CRC of the
    /// stored bytes. Allocates nothing.
    public func readPage(chunk: Int, layer: Int, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        let s = core.snapshot()
        try checkChunk(chunk, s)
        guard layer >= 0 && layer < geometry.layers else {
            throw StoreError.invalidArgument("\(path): layer \(layer) out of range (the store has \(geometry.layers) layers)")
        }
        guard buffer.count >= geometry.floatsPerPage, let dst = buffer.baseAddress else {
            throw StoreError.invalidArgument("readPage needs a buffer of \(geometry.floatsPerPage) floats, got \(buffer.count)")
        }
        try core.readPage(s, chunk: chunk, layer: layer, into: dst)
    }

    /// Reads page (chunk, layer) into `buffer` in its encoding, after LZ4 (`StoreGeometry.encodedPageBytes`
    /// bytes: for q8/q4 stores the KIVI parameter and code planes, read by `lh_attn_update_kivi`; for f16
    /// the halves), with the checks of `readPage`. Allocates nothing for a page stored raw; an LZ4 page
    /// is read into temporary memory of its stored size first.
    public func readEncodedPage(chunk: Int, layer: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        let s = core.snapshot()
        try checkChunk(chunk, s)
        guard layer >= 0 && layer < geometry.layers else {
            throw StoreError.invalidArgument("\(path): layer \(layer) out of range (the store has \(geometry.layers) layers)")
        }
        guard let bytes = geometry.encodedPageBytes, buffer.count >= bytes, let dst = buffer.baseAddress else {
            throw StoreError.invalidArgument("readEncodedPage needs a buffer of \(geometry.encodedPageBytes ?? 0) bytes, got \(buffer.count)")
        }
        try core.readEncodedPage(s, chunk: chunk, layer: layer, into: dst)
    }

    /// Checks everything readable: every data file's prefix, every page-table record, tokens record,
    /// chunk of features and page (header, CRC, decompression, placement), and that the files are at
    /// least as long as the committed state. Returns the problems found, each naming the file and the
    /// place (empty: the store is sound). `progress` is called with (chunks checked, chunks).
    public func verify(progress: ((Int, Int) -> Void)? = nil) -> [StoreError] {
        var problems: [StoreError] = headerFallback.map { [$0] } ?? []
        let h = core.header
        let s = core.snapshot()
        let g = geometry
        for (f, m, rb) in [(core.pages, pagesMagic, 0), (core.table, pageTableMagic, core.tableRecordBytes),
                           (core.features, featuresMagic, core.featureChunkBytes), (core.tokens, tokensMagic, core.tokensRecordBytes)] {
            do { try DataFileHeader.check(f, magic: m, header: h, recordBytes: rb) } catch let e as StoreError { problems.append(e) } catch {}
        }
        for (f, need) in [(core.pages, s.pagesEnd), (core.table, core.tableOffset(s.chunks)),
                          (core.features, core.featuresOffset(s.chunks)), (core.tokens, core.tokensOffset(s.chunks))] {
            if let have = try? f.size(), have < need {
                problems.append(.truncated(path: f.path, what: "committed state", neededBytes: need, fileBytes: have))
            }
        }
        if problems.count > (headerFallback == nil ? 0 : 1) { return problems }  // reading past a short file through the mapping would fault
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: g.floatsPerPage)
        defer { buffer.deallocate() }
        // Pages are walked in file order from the start, so a gap, an overlap or a bad header is found
        // even where the page table is damaged; the page table must agree with what the walk finds.
        var cursor = dataFileHeaderBytes
        var walkable = true
        for c in 0..<s.chunks {
            var record: PageTableRecord? = nil
            do { record = try core.tableRecord(s, c) } catch let e as StoreError { problems.append(e) } catch {}
            var tokenCount: Int? = nil
            do {
                let t = try core.tokensRecord(s, c)
                tokenCount = t.tokens.count
                if t.tokens.count < g.chunkSize && c != s.chunks - 1 {
                    problems.append(.inconsistent(path: core.tokens.path, what: "token count of chunk \(c)", offset: core.tokensOffset(c),
                                                  expected: "\(g.chunkSize) (only the last chunk may be partial)", found: "\(t.tokens.count)"))
                }
            } catch let e as StoreError { problems.append(e) } catch {}
            if let r = record {
                do { try core.checkFeatures(s, c, expectedCRC: r.featuresCRC) } catch let e as StoreError { problems.append(e) } catch {}
                if let t = tokenCount, t != r.tokens {
                    problems.append(.inconsistent(path: core.table.path, what: "token count of chunk \(c)", offset: core.tableOffset(c),
                                                  expected: "\(t) (tokens file)", found: "\(r.tokens)"))
                }
            }
            for l in 0..<g.layers {
                var offset = cursor
                if let r = record {
                    if walkable && r.offsets[l] != cursor {
                        problems.append(.inconsistent(path: core.table.path, what: "page offset of chunk \(c) layer \(l)",
                                                      offset: core.tableOffset(c) + 16 * l, expected: "\(cursor)", found: "\(r.offsets[l])"))
                    }
                    if !walkable { offset = r.offsets[l] }
                } else if !walkable {
                    continue  // neither the walk nor the table can locate this page
                }
                guard offset + pageHeaderBytes <= s.pagesEnd else {
                    problems.append(.truncated(path: core.pages.path, what: "page chunk \(c) layer \(l)",
                                               neededBytes: offset + pageHeaderBytes, fileBytes: s.pagesEnd))
                    walkable = false
                    continue
                }
                let (ph, _, _, _) = PageHeader.decode(s.pages + offset)
                let stored = record?.storedBytes[l] ?? ph?.storedBytes ?? 0
                let crc = record?.dataCRCs[l] ?? ph?.dataCRC ?? 0
                do {
                    try PageDecoder.decode(base: s.pages, offset: offset, end: s.pagesEnd, path: core.pages.path, chunk: c, layer: l,
                                           expectedStored: stored, expectedCRC: crc, tokens: tokenCount ?? record?.tokens,
                                           geometry: g, into: buffer)
                } catch let e as StoreError { problems.append(e) } catch {}
                if walkable {
                    if let ph { cursor = offset + pageHeaderBytes + ph.storedBytes } else if record != nil {
                        cursor = offset + pageHeaderBytes + stored
                    } else { walkable = false }
                }
            }
            progress?(c + 1, s.chunks)
        }
        if walkable && cursor != s.pagesEnd {
            problems.append(.inconsistent(path: core.pages.path, what: "end of the last page", offset: cursor,
                                          expected: "\(s.pagesEnd) (header)", found: "\(cursor)"))
        }
        return problems
    }
}

extension StoreReader {
    /// Whether `path` holds a store, complete or not: its header file exists (nothing is checked; `open`
    /// checks). An interrupted ingest leaves one, which `ingest --resume` continues.
    public static func storeExists(at path: String) -> Bool {
        access(joinPath(path, HeaderFile.name), F_OK) == 0
    }
}
