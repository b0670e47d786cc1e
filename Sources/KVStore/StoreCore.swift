#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The open files and mappings of a store, shared by a writer and the readers it hands out, and by
/// readers opened from disk. Holds the visible state (chunks readable, written end of `pages`) under a
/// lock: the writer publishes a chunk only after all of its bytes are written, so a reader that sees
/// the count sees the bytes (same page cache; the mapping is MAP_SHARED).
final class StoreCore: @unchecked Sendable {
    let dir: String
    let geometry: StoreGeometry
    let tableRecordBytes: Int
    let tokensRecordBytes: Int
    let featureChunkBytes: Int
    let pages, table, features, tokens: StoreFile
    private let pagesMap, tableMap, featuresMap, tokensMap: Mapping
    private let lock = NSLock()
    private var chunks: Int
    private var pagesEnd: Int
    private var committed: StoreHeader
    /// Layer-major copy of the features for scans (created on first use), its lock, and the first chunk
    /// whose copy is stale (a truncated or replaced chunk); guarded by `lock`.
    private var layerMajor: LayerMajorFeatures?
    private let layerMajorLock = NSLock()
    private var layerMajorStaleFrom = Int.max

    /// What a reader needs for one operation; the pointers stay valid as long as the core lives.
    struct Snapshot {
        var chunks: Int
        var pagesEnd: Int
        var pages: UnsafeRawPointer
        var table: UnsafeRawPointer
        var features: UnsafeRawPointer
        var tokens: UnsafeRawPointer
    }

    static let fileNames = (pages: "pages", table: "pagetable", features: "features", tokens: "tokens")

    /// Opens the four data files of the store described by `header` and checks their prefixes and
    /// lengths. A writer (`truncateToCommitted`) cuts every file back to the committed state; a reader
    /// only refuses files shorter than it.
    init(dir: String, header: StoreHeader, writable: Bool, truncateToCommitted: Bool, faults: FaultInjector?) throws {
        self.dir = dir
        geometry = header.geometry
        committed = header
        let g = header.geometry
        tableRecordBytes = PageTableRecord.bytes(layers: g.layers)
        tokensRecordBytes = TokensRecord.bytes(chunkSize: g.chunkSize)
        featureChunkBytes = 4 * g.featureFloatsPerChunk
        let flags = writable ? O_RDWR : O_RDONLY
        let n = StoreCore.fileNames
        pages = try StoreFile.openFile(joinPath(dir, n.pages), flags: flags, create: false, faults: faults)
        table = try StoreFile.openFile(joinPath(dir, n.table), flags: flags, create: false, faults: faults)
        features = try StoreFile.openFile(joinPath(dir, n.features), flags: flags, create: false, faults: faults)
        tokens = try StoreFile.openFile(joinPath(dir, n.tokens), flags: flags, create: false, faults: faults)
        try DataFileHeader.check(pages, magic: pagesMagic, header: header, recordBytes: 0)
        try DataFileHeader.check(table, magic: pageTableMagic, header: header, recordBytes: tableRecordBytes)
        try DataFileHeader.check(features, magic: featuresMagic, header: header, recordBytes: featureChunkBytes)
        try DataFileHeader.check(tokens, magic: tokensMagic, header: header, recordBytes: tokensRecordBytes)
        let c = header.chunkCount
        // The committed lengths follow from the header's chunk count; a count whose files could not
        // exist (a crafted header with a valid CRC) is an error before any arithmetic can overflow.
        func committedBytes(_ recordBytes: Int) throws -> Int {
            let (m, o1) = c.multipliedReportingOverflow(by: recordBytes)
            let (total, o2) = m.addingReportingOverflow(dataFileHeaderBytes)
            guard !o1, !o2, total <= 1 << 56 else {
                throw StoreError.inconsistent(path: joinPath(dir, HeaderFile.name), what: "committed chunks", offset: 128,
                                              expected: "a count whose records fit in a file", found: "\(c)")
            }
            return total
        }
        let tableBytes = try committedBytes(tableRecordBytes)
        let featureBytes = try committedBytes(featureChunkBytes)
        let tokenBytes = try committedBytes(tokensRecordBytes)
        let sizes = [(pages, header.pagesBytes, "committed pages"),
                     (table, tableBytes, "page table of \(c) committed chunks"),
                     (features, featureBytes, "features of \(c) committed chunks"),
                     (tokens, tokenBytes, "tokens of \(c) committed chunks")]
        for (f, need, what) in sizes {
            let have = try f.size()
            if have < need { throw StoreError.truncated(path: f.path, what: what, neededBytes: need, fileBytes: have) }
            if truncateToCommitted && have > need { try f.truncate(to: need) }
        }
        chunks = c
        pagesEnd = header.pagesBytes
        // Address space is reserved generously (it costs nothing until touched) so that the features
        // pointer handed to callers practically never changes during an ingest.
        pagesMap = try Mapping(file: pages, size: pagesEnd, minReserve: 4 << 30)
        tableMap = try Mapping(file: table, size: tableBytes, minReserve: 256 << 20)
        featuresMap = try Mapping(file: features, size: featureBytes, minReserve: 4 << 30)
        tokensMap = try Mapping(file: tokens, size: tokenBytes, minReserve: 256 << 20)
    }

    func snapshot() -> Snapshot {
        lock.lock()
        defer { lock.unlock() }
        return Snapshot(chunks: chunks, pagesEnd: pagesEnd, pages: pagesMap.base, table: tableMap.base,
                        features: featuresMap.base, tokens: tokensMap.base)
    }

    var header: StoreHeader {
        lock.lock()
        defer { lock.unlock() }
        return committed
    }

    /// Makes `chunks` chunks (ending at `pagesEnd` in `pages`) visible to readers.
    func publish(chunks c: Int, pagesEnd end: Int) throws {
        lock.lock()
        defer { lock.unlock() }
        try pagesMap.cover(end)
        try tableMap.cover(dataFileHeaderBytes + c * tableRecordBytes)
        try featuresMap.cover(dataFileHeaderBytes + c * featureChunkBytes)
        try tokensMap.cover(dataFileHeaderBytes + c * tokensRecordBytes)
        if c < chunks {
            layerMajorStaleFrom = min(layerMajorStaleFrom, c)
            uncheckPages(fromChunk: c)
        }
        chunks = c
        pagesEnd = end
    }

    func setCommitted(_ h: StoreHeader) {
        lock.lock()
        committed = h
        lock.unlock()
    }

    // MARK: - record access (callers check `chunk < snapshot.chunks`)

    func tableOffset(_ chunk: Int) -> Int { dataFileHeaderBytes + chunk * tableRecordBytes }
    func tokensOffset(_ chunk: Int) -> Int { dataFileHeaderBytes + chunk * tokensRecordBytes }
    func featuresOffset(_ chunk: Int) -> Int { dataFileHeaderBytes + chunk * featureChunkBytes }

    func tableRecord(_ s: Snapshot, _ chunk: Int) throws -> PageTableRecord {
        let o = tableOffset(chunk)
        return try PageTableRecord.decode(s.table + o, layers: geometry.layers, path: table.path, chunk: chunk, offset: o)
    }

    func tokensRecord(_ s: Snapshot, _ chunk: Int) throws -> TokensRecord {
        let o = tokensOffset(chunk)
        return try TokensRecord.decode(s.tokens + o, chunkSize: geometry.chunkSize, path: tokens.path, chunk: chunk, offset: o)
    }

    func checkFeatures(_ s: Snapshot, _ chunk: Int, expectedCRC: UInt32) throws {
        try checkFeatures(chunk..<(chunk + 1)) { _ in expectedCRC }
    }

    /// Checks the features of `chunks` against their CRCs (`expectedCRC(chunk)`), read with `pread` a few
    /// MiB at a time: through the mapping, a check of every chunk (`StoreReader.open`) would make the
    /// whole file resident at once.
    func checkFeatures(_ chunks: Range<Int>, expectedCRC: (Int) throws -> UInt32) throws {
        guard !chunks.isEmpty, featureChunkBytes > 0 else { return }
        let batch = min(chunks.count, max(1, (2 << 20) / featureChunkBytes))
        try LargeAllocation.withBuffer(batch * featureChunkBytes) { buffer in
            var c0 = chunks.lowerBound
            while c0 < chunks.upperBound {
                let n = min(batch, chunks.upperBound - c0)
                try features.read(into: buffer, n * featureChunkBytes, at: featuresOffset(c0), what: "features of chunks \(c0)..<\(c0 + n)")
                for x in 0..<n {
                    let c = c0 + x, expected = try expectedCRC(c)
                    let crc = crc32c(buffer + x * featureChunkBytes, featureChunkBytes)
                    guard crc == expected else {
                        throw StoreError.checksumMismatch(path: features.path, what: "features of chunk \(c)", offset: featuresOffset(c),
                                                          expected: expected, found: crc)
                    }
                }
                c0 += n
            }
        }
    }

    /// Marks the layer-major copy and the checked pages of chunks `chunk...` stale (a partial last chunk
    /// was replaced by another process: `StoreReader.refresh`).
    func invalidateDerived(fromChunk chunk: Int) {
        lock.lock()
        layerMajorStaleFrom = min(layerMajorStaleFrom, chunk)
        uncheckPages(fromChunk: chunk)
        lock.unlock()
    }

    /// Points `rows[x]` at row `layer` of the features of chunk `range.lowerBound + x` (readable chunks),
    /// in the layer-major copy, bringing the copy up to date first. The pointers stay valid while the core
    /// lives; the pages the previous call handed out are dropped first (see `LayerMajorFeatures`).
    func featureRows(layer: Int, range: Range<Int>, into rows: UnsafeMutablePointer<UnsafePointer<Float>>) throws {
        let g = geometry
        guard g.layers > 0, g.featureFloatsPerChunk % g.layers == 0 else {
            throw StoreError.invalidArgument("\(dir): features of \(g.featureFloatsPerChunk) floats are not \(g.layers) rows of one size")
        }
        guard layer >= 0 && layer < g.layers else {
            throw StoreError.invalidArgument("\(dir): layer \(layer) out of range (the store has \(g.layers) layers)")
        }
        // Lock order: layerMajorLock, then lock (publish and invalidate take only lock).
        layerMajorLock.lock()
        defer { layerMajorLock.unlock() }
        lock.lock()
        let available = chunks
        let staleFrom = layerMajorStaleFrom
        layerMajorStaleFrom = .max
        lock.unlock()
        if let copy = layerMajor { copy.chunks = min(copy.chunks, staleFrom) }
        guard range.lowerBound >= 0 && range.upperBound <= available else {
            throw StoreError.invalidArgument("\(dir): chunks \(range) out of range (the store has \(available) chunks)")
        }
        if range.isEmpty || featureChunkBytes == 0 { return }
        if layerMajor == nil {
            layerMajor = try LayerMajorFeatures.create(storeDir: dir, layers: g.layers, rowBytes: featureChunkBytes / g.layers)
        }
        let copy = layerMajor!
        try copy.fill(upTo: range.upperBound, from: features, chunkBytes: featureChunkBytes)
        if let last = copy.lastScan { dropResident(last.base, last.range) }
        let base = copy.map.base
        let lo = copy.offset(layer: layer, chunk: range.lowerBound)
        var hi = lo
        for (x, c) in range.enumerated() {
            let o = copy.offset(layer: layer, chunk: c)
            rows[x] = (base + o).assumingMemoryBound(to: Float.self)
            hi = max(hi, o + copy.rowBytes)
        }
        copy.lastScan = (base, lo..<hi)
    }

    /// Unmaps the resident pages of `range` of a read-only mapping at `base`, rounded out to whole pages
    /// (they stay in the OS page cache, and any access refaults them: nothing is lost).
    private func dropResident(_ base: UnsafeRawPointer, _ range: Range<Int>) {
        let lo = range.lowerBound / 4096 * 4096, hi = (range.upperBound + 4095) / 4096 * 4096
        if hi > lo { _ = madvise(UnsafeMutableRawPointer(mutating: base + lo), hi - lo, MADV_DONTNEED) }
    }

    /// Drops the resident pages of the `features` mapping: a check of all features (`StoreReader.open`)
    /// or callers reading through `StoreReader.features` would otherwise keep them resident.
    func dropResidentFeatures() { featuresMap.dropResident(featuresOffset(snapshot().chunks)) }

    /// Drops the resident pages of the `pages` mapping (see `Mapping.dropResident`).
    func dropResidentPages() { pagesMap.dropResident(snapshot().pagesEnd) }

    /// Pages whose stored bytes passed their CRC since this core was opened, one bit per (chunk, layer);
    /// guarded by `lock`. LongHeads reads the same pages again and again (every block of an ingest, every
    /// step of an answer); committed pages are never rewritten, so their CRC is checked at the first read
    /// only (the header of a page is checked at every read). Bits of chunks that are cut off or replaced
    /// are cleared (`publish`, `invalidateDerived`).
    private var checkedPages: [UInt64] = []

    private func isChecked(_ bit: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return bit / 64 < checkedPages.count && checkedPages[bit / 64] & (1 << UInt64(bit % 64)) != 0
    }

    private func setChecked(_ bit: Int) {
        lock.lock()
        defer { lock.unlock() }
        // A page of a chunk that was cut off meanwhile must not be marked: only chunks still published.
        guard bit / geometry.layers < chunks else { return }
        if bit / 64 >= checkedPages.count { checkedPages += [UInt64](repeating: 0, count: bit / 64 + 1 - checkedPages.count + 16) }
        checkedPages[bit / 64] |= 1 << UInt64(bit % 64)
    }

    /// Clears the checked bits of chunks `chunk...`. Lock held.
    private func uncheckPages(fromChunk chunk: Int) {
        let first = chunk * geometry.layers
        var b = first
        while b / 64 < checkedPages.count {
            if b % 64 == 0 {
                checkedPages[b / 64] = 0
                b += 64
            } else {
                checkedPages[b / 64] &= ~(1 << UInt64(b % 64))
                b += 1
            }
        }
    }

    func readPage(_ s: Snapshot, chunk: Int, layer: Int, into dst: UnsafeMutablePointer<Float>) throws {
        let o = tableOffset(chunk)
        let e = try PageTableRecord.entry(s.table + o, layer: layer, layers: geometry.layers, path: table.path, chunk: chunk, offset: o)
        let bit = chunk * geometry.layers + layer
        let checked = isChecked(bit)
        // With `pread`, not through the mapping: file pages that stay mapped count towards the process's
        // RSS (which would then grow with the document), and dropping them after every read cost a
        // system call and a TLB shootdown on every core running this process.
        try PageDecoder.read(file: pages, offset: e.offset, end: s.pagesEnd, chunk: chunk, layer: layer, expectedStored: e.stored,
                             expectedCRC: e.crc, tokens: e.tokens, geometry: geometry, checkData: !checked, into: dst)
        if !checked { setChecked(bit) }
    }

    /// `readPage`, leaving the page in its encoding (`PageDecoder.readEncoded`): `encodedPageBytes` at `dst`.
    func readEncodedPage(_ s: Snapshot, chunk: Int, layer: Int, into dst: UnsafeMutableRawPointer) throws {
        let o = tableOffset(chunk)
        let e = try PageTableRecord.entry(s.table + o, layer: layer, layers: geometry.layers, path: table.path, chunk: chunk, offset: o)
        let bit = chunk * geometry.layers + layer
        let checked = isChecked(bit)
        try PageDecoder.readEncoded(file: pages, offset: e.offset, end: s.pagesEnd, chunk: chunk, layer: layer, expectedStored: e.stored,
                                    expectedCRC: e.crc, tokens: e.tokens, geometry: geometry, checkData: !checked, into: dst)
        if !checked { setChecked(bit) }
    }
}
