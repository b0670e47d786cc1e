import GGUF
import Foundation
import KVStore
import LongHeads
import Model
import Tokenization

/// Identity of the model a store was made with: architecture, hyperparameters, every tensor's name,
/// type and shape, and the first bytes of the embedding and output norm (fine-tunes share layouts).
public func modelFingerprint(_ file: GGUFFile) -> [UInt8] {
    var h = SHA256()
    h.update(file.metadata["general.architecture"]?.stringValue ?? "")
    for key in file.metadataKeys.sorted() where !key.hasPrefix("tokenizer.") && !key.hasPrefix("general.") {
        h.update(key)
        h.update("\(file.metadata[key]!)")
    }
    for name in file.tensorNames.sorted() {
        let t = file.tensors[name]!
        h.update(name)
        h.update(Int(t.type.rawValue))
        for d in t.dims { h.update(d) }
        if name == "token_embd.weight" || name == "output_norm.weight" {
            h.update(UnsafeRawBufferPointer(start: file.data(of: t), count: min(t.byteCount, 4096)))
        }
    }
    return h.finalize()
}

/// Identity of a tokenizer: its model, pre-tokenizer, tokens, types and merges.
public func tokenizerFingerprint(_ file: GGUFFile) -> [UInt8] {
    var h = SHA256()
    for key in ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"] {
        h.update(key)
        switch file.metadata[key] {
        case .some(.array(_, let items)): for v in items { h.update("\(v)") }
        case .some(let v): h.update("\(v)")
        case .none: h.update("-")
        }
    }
    return h.finalize()
}

/// LongHeads' archive over a KVStore: chunks a writer appends (ingest), or a committed store read back
/// through a page cache with a hard memory budget (ask). Chunks completed while answering a question are
/// kept in RAM for that session only: asking never modifies a store.
///
/// Memory does not grow with the document:
/// - Feature scans (`featureRows`) read one layer of many chunks from the store's layer-major copy, of
///   which only the latest scan's rows are resident.
/// - While streaming (ingest, and the tail and question of `ask`), LongHeads reads each selected chunk
///   once per block and layer, so a cache would only hold pages that are not read again; pages go through
///   a small cache of `streamPages` pages instead, which only lets the work items of one chunk (one per KV
///   head, and pieces of a long list of queries) share one decode.
/// - While decoding the answer, the cache holds at most the pages one decode step can read (`cache`,
///   `decodeWorkingSetPages`), within the caller's budget: a step reads chunk 0 and the chunks its heads
///   select, and pages of older steps are only worth keeping while they fit in that.
/// - Pages of q8/q4 stores stay encoded in both caches (`PageCache.Form.encoded`): LongHeads' chunk read
///   dequantizes them inside the attention kernel (`withStoredPage`, `lh_attn_update_kivi`), so a page
///   takes its encoded size (q4: 0.14 of the floats) and no decode pass runs.
public final class StoreArchive: ChunkArchive, @unchecked Sendable {
    /// The store read.
    public let reader: StoreReader
    /// The writer, when ingesting.
    public let writer: StoreWriter?
    /// Pages while decoding an answer: at most `min(budget, decodeWorkingSetPages)` pages.
    public let cache: PageCache
    /// Pages while streaming (a few pages, shared by the work items of one chunk).
    public let streamCache: PageCache
    /// How the caches hold pages: encoded for q8/q4 stores, floats for f16.
    public let cacheForm: PageCache.Form
    /// Hand q8/q4 pages to the attention encoded (true, the default) or decoded to floats first (false:
    /// the decode-then-attend path, for tests and measurements that compare the two).
    public var fusedReads = true
    /// Pages handed to the attention encoded so far (`withStoredPage`), for tests and reports.
    public var fusedPageReads: Int { countLock.withLock { fusedCount } }
    private let countLock = NSLock()
    private var fusedCount = 0
    /// Pages of `streamCache`.
    public static let streamPages = 8
    private let scratchLock = NSLock()
    private var freeScratch: [UnsafeMutablePointer<Float>] = []
    private var allScratch: [UnsafeMutablePointer<Float>] = []
    private let stored: Int
    private var sessionPages: [[[Float]]] = []
    private var sessionFeatures: [UnsafeMutablePointer<Float>] = []
    /// Read pages through `streamCache` instead of `cache`. Ingest always streams; `ask` streams while it
    /// runs the tail and the question (every chunk read once per block and layer, so caching would only
    /// fill memory) and caches while decoding, where the same chunks are read at every step.
    public var streaming: Bool

    /// Pages one decode step can read from an archive: per layer chunk 0 and, for each query head, the
    /// chunks it selects besides chunk 0 and the two recent ones (those are in LongHeads' ring).
    public static func decodeWorkingSetPages(geometry g: StoreGeometry, chunksPerQuery: Int) -> Int {
        g.layers * (1 + g.queryHeads * max(0, chunksPerQuery - 3))
    }

    /// Ingest: chunks go through `writer`; pages are read back from what it has written.
    public init(writer: StoreWriter, budgetBytes: Int) throws {
        self.writer = writer
        reader = writer.reader
        cacheForm = Self.form(of: reader.geometry)
        let pageBytes = try PageCache.pageBytes(reader.geometry, form: cacheForm)
        cache = try PageCache(reader: reader, budgetBytes: budgetBytes, form: cacheForm)
        streamCache = try PageCache(reader: reader, budgetBytes: Self.streamPages * pageBytes, form: cacheForm)
        stored = Int.max
        streaming = true
    }

    /// Ask: a committed store, read-only. The decode cache is bounded by the budget and by the working
    /// set of one decode step (from the LongHeads parameters recorded in the store).
    public init(reader: StoreReader, budgetBytes: Int) throws {
        writer = nil
        self.reader = reader
        cacheForm = Self.form(of: reader.geometry)
        let pageBytes = try PageCache.pageBytes(reader.geometry, form: cacheForm)
        var budget = budgetBytes
        if let info = try? JSONDecoder().decode(StoreInfo.self, from: Data(reader.header.blob)) {
            let pages = Self.decodeWorkingSetPages(geometry: reader.geometry, chunksPerQuery: info.parameters.chunksPerQuery)
            budget = min(budget, max(Self.streamPages, pages) * pageBytes)
        }
        cache = try PageCache(reader: reader, budgetBytes: budget, form: cacheForm)
        streamCache = try PageCache(reader: reader, budgetBytes: Self.streamPages * pageBytes, form: cacheForm)
        stored = reader.chunkCount
        streaming = false
    }

    /// Encoded for quantized pages (the attention reads them as they are), floats for f16.
    private static func form(of g: StoreGeometry) -> PageCache.Form { g.quantizedBits != nil ? .encoded : .floats }

    deinit {
        sessionFeatures.forEach { $0.deallocate() }
        allScratch.forEach { $0.deallocate() }
    }

    public var chunkCount: Int { writer != nil ? reader.chunkCount : stored + sessionPages.count }

    public func features(ofChunk chunk: Int) throws -> UnsafePointer<Float> {
        if chunk < min(stored, reader.chunkCount) || writer != nil {
            return reader.features + chunk * reader.geometry.featureFloatsPerChunk
        }
        return UnsafePointer(sessionFeatures[chunk - stored])
    }

    /// Points `rows[x]` at the summary part of `layer` of chunk `chunks.lowerBound + x` (`rowFloats`
    /// floats): stored chunks in the store's layer-major copy (`StoreReader.featureRows`: only the latest
    /// scan's rows are resident), session chunks in RAM. Valid while the archive lives.
    public func featureRows(layer: Int, chunks: Range<Int>, rowFloats: Int, into rows: UnsafeMutablePointer<UnsafePointer<Float>>) throws {
        let g = reader.geometry
        let row = g.featureFloatsPerChunk / g.layers
        guard rowFloats == row, g.featureFloatsPerChunk == row * g.layers else {
            throw StoreError.invalidArgument("\(reader.path): the summary is \(g.layers) rows of \(row) floats, not of \(rowFloats)")
        }
        let storedEnd = writer != nil ? chunks.upperBound : max(chunks.lowerBound, min(chunks.upperBound, stored))
        if chunks.lowerBound < storedEnd {
            try reader.featureRows(layer: layer, chunks: chunks.lowerBound..<storedEnd, into: rows)
        }
        for c in storedEnd..<chunks.upperBound {
            rows[c - chunks.lowerBound] = UnsafePointer(sessionFeatures[c - stored] + layer * row)
        }
    }

    /// Forgets the chunks completed since the store was opened (a question's and its answer's), so that the
    /// next question starts from the committed document again. The reader, its checked page table, the
    /// layer-major feature copy and the decoded pages in `cache` are kept: they do not change (`DocumentSession`).
    public func discardSessionChunks() {
        precondition(writer == nil, "an ingest's archive has no session chunks")
        sessionFeatures.forEach { $0.deallocate() }
        sessionFeatures.removeAll()
        sessionPages.removeAll()
        streaming = false
    }

    /// Ingest: the chunk and its source go to the store (a chunk without a source is refused: a store
    /// records every chunk's tokens). Ask: the chunk stays in RAM for the session.
    public func append(_ chunk: CompletedChunk) throws {
        if let writer {
            let source = chunk.source ?? ChunkSource(tokens: [], byteRange: 0..<0)
            try writer.append(ChunkRecord(tokens: source.tokens, byteRange: source.byteRange, pages: chunk.pages, features: chunk.features))
        } else {
            sessionPages.append(chunk.pages.map(Array.init))
            let f = UnsafeMutablePointer<Float>.allocate(capacity: chunk.features.count)
            f.initialize(from: chunk.features.baseAddress!, count: chunk.features.count)
            sessionFeatures.append(f)
        }
    }

    public func withPage<R>(chunk: Int, layer: Int, _ body: (UnsafePointer<Float>) throws -> R) throws -> R {
        if writer == nil && chunk >= stored {
            return try sessionPages[chunk - stored][layer].withUnsafeBufferPointer { try body($0.baseAddress!) }
        }
        let pageCache = streaming ? streamCache : cache
        if cacheForm == .encoded {
            // Floats wanted from an encoded page (the recent-window ring, quest-exact's rescoring, the
            // decode-then-attend path): decode the cached encoding into a scratch page.
            let encoded: UnsafeRawPointer
            do { encoded = try pageCache.encodedPage(chunk: chunk, layer: layer) } catch StoreError.cacheBudgetExceeded {
                return try withScratchPage(chunk: chunk, layer: layer, body)
            }
            defer { pageCache.release(encoded: encoded) }
            return try withScratch { buffer in
                reader.geometry.decode(encoded: encoded, into: buffer)
                return try body(buffer)
            }
        }
        let page: UnsafePointer<Float>
        do { page = try pageCache.page(chunk: chunk, layer: layer) } catch StoreError.cacheBudgetExceeded {
            return try withScratchPage(chunk: chunk, layer: layer, body)  // more concurrent readers than pages
        }
        defer { pageCache.release(page) }
        return try body(page)
    }

    /// The attention's chunk read: a q8/q4 page as its KIVI planes straight from the cache (no decode),
    /// an f16 page or a session chunk as floats.
    public func withStoredPage<R>(chunk: Int, layer: Int, _ body: (ArchivedPage) throws -> R) throws -> R {
        guard cacheForm == .encoded, fusedReads, writer != nil || chunk < stored,
              let bits = reader.geometry.quantizedBits, let paramBytes = reader.geometry.encodedParamBytes else {
            return try withPage(chunk: chunk, layer: layer) { try body(.floats($0)) }
        }
        let pageCache = streaming ? streamCache : cache
        let encoded: UnsafeRawPointer
        do { encoded = try pageCache.encodedPage(chunk: chunk, layer: layer) } catch StoreError.cacheBudgetExceeded {
            return try withScratchPage(chunk: chunk, layer: layer) { try body(.floats($0)) }
        }
        defer { pageCache.release(encoded: encoded) }
        let g = reader.geometry
        countLock.withLock { fusedCount += 1 }
        return try body(.kivi(encoded: encoded, paramBytes: paramBytes, bits: bits, kvHeads: g.kvHeads, chunkSize: g.chunkSize))
    }

    /// Decodes the page into a buffer of its own (kept for reuse, one per concurrent reader).
    private func withScratchPage<R>(chunk: Int, layer: Int, _ body: (UnsafePointer<Float>) throws -> R) throws -> R {
        try withScratch { buffer in
            try reader.readPage(chunk: chunk, layer: layer, into: UnsafeMutableBufferPointer(start: buffer, count: reader.geometry.floatsPerPage))
            return try body(buffer)
        }
    }

    /// Runs `body` with a page-sized float buffer of its own (kept for reuse, one per concurrent reader).
    private func withScratch<R>(_ body: (UnsafeMutablePointer<Float>) throws -> R) throws -> R {
        let floats = reader.geometry.floatsPerPage
        scratchLock.lock()
        let buffer: UnsafeMutablePointer<Float>
        if let b = freeScratch.popLast() { buffer = b } else {
            buffer = .allocate(capacity: floats)
            allScratch.append(buffer)
        }
        scratchLock.unlock()
        defer { scratchLock.lock(); freeScratch.append(buffer); scratchLock.unlock() }
        return try body(buffer)
    }
}
