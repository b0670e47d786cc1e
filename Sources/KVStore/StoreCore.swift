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
        let sizes = [(pages, header.pagesBytes, "committed pages"),
                     (table, dataFileHeaderBytes + c * tableRecordBytes, "page table of \(c) committed chunks"),
                     (features, dataFileHeaderBytes + c * featureChunkBytes, "features of \(c) committed chunks"),
                     (tokens, dataFileHeaderBytes + c * tokensRecordBytes, "tokens of \(c) committed chunks")]
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
        tableMap = try Mapping(file: table, size: dataFileHeaderBytes + c * tableRecordBytes, minReserve: 256 << 20)
        featuresMap = try Mapping(file: features, size: dataFileHeaderBytes + c * featureChunkBytes, minReserve: 4 << 30)
        tokensMap = try Mapping(file: tokens, size: dataFileHeaderBytes + c * tokensRecordBytes, minReserve: 256 << 20)
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
        let o = featuresOffset(chunk)
        let crc = crc32c(s.features + o, featureChunkBytes)
        guard crc == expectedCRC else {
            throw StoreError.checksumMismatch(path: features.path, what: "features of chunk \(chunk)", offset: o,
                                              expected: expectedCRC, found: crc)
        }
    }

    /// Drops the resident pages of the `pages` mapping (see `Mapping.dropResident`).
    func dropResidentPages() { pagesMap.dropResident(snapshot().pagesEnd) }

    /// Page reads since the mapping's resident pages were last dropped (approximate under concurrency:
    /// it only paces the drops).
    private var readsSinceDrop = 0

    func readPage(_ s: Snapshot, chunk: Int, layer: Int, into dst: UnsafeMutablePointer<Float>) throws {
        let o = tableOffset(chunk)
        let e = try PageTableRecord.entry(s.table + o, layer: layer, layers: geometry.layers, path: table.path, chunk: chunk, offset: o)
        try PageDecoder.decode(base: s.pages, offset: e.offset, end: s.pagesEnd, path: pages.path, chunk: chunk, layer: layer,
                               expectedStored: e.stored, expectedCRC: e.crc, tokens: e.tokens, geometry: geometry, into: dst)
        // Drop the mapping's pages we just read: file-backed pages that stay mapped count towards the
        // process's RSS, which would then grow with the document. They remain in the OS page cache, so
        // a later read refaults them cheaply; the mapping is read-only, so nothing is lost.
        let pageSize = 4096
        let lo = e.offset / pageSize * pageSize
        let hi = min(s.pagesEnd, (e.offset + pageHeaderBytes + e.stored + pageSize - 1) / pageSize * pageSize)
        if hi > lo { _ = madvise(UnsafeMutableRawPointer(mutating: s.pages + lo), hi - lo, MADV_DONTNEED) }
        // The kernel's fault-around maps neighbouring pages too; drop everything now and then so that a
        // long session of reads keeps RSS bounded whatever the file size.
        readsSinceDrop += 1
        if readsSinceDrop >= 64 {
            readsSinceDrop = 0
            pagesMap.dropResident(s.pagesEnd)
        }
    }
}
