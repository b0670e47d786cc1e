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
/// While ingesting, pages are decoded into a few reusable buffers instead of the cache: LongHeads reads
/// each selected chunk once per block and layer, so a cache would only hold pages that are not read again,
/// and memory would then grow with the document up to the budget.
public final class StoreArchive: ChunkArchive, @unchecked Sendable {
    /// The store read.
    public let reader: StoreReader
    /// The writer, when ingesting.
    public let writer: StoreWriter?
    /// Decoded pages, bounded (ask).
    public let cache: PageCache
    private let scratchLock = NSLock()
    private var freeScratch: [UnsafeMutablePointer<Float>] = []
    private var allScratch: [UnsafeMutablePointer<Float>] = []
    private let stored: Int
    private var sessionPages: [[[Float]]] = []
    private var sessionFeatures: [UnsafeMutablePointer<Float>] = []
    /// Read pages into reusable buffers instead of the cache. Ingest always streams; `ask` streams while it
    /// runs the tail and the question (every chunk read once per block and layer, so caching would only
    /// fill memory) and caches while decoding, where the same chunks are read at every step.
    public var streaming: Bool
    /// Token ids and source byte range of the chunk the next `append` archives (set by the ingest loop).
    public var nextChunk: (tokens: [Int32], byteRange: Range<UInt64>)?

    /// Ingest: chunks go through `writer`; pages are read back from what it has written.
    public init(writer: StoreWriter, budgetBytes: Int) throws {
        self.writer = writer
        reader = writer.reader
        cache = try PageCache(reader: reader, budgetBytes: budgetBytes)
        stored = Int.max
        streaming = true
    }

    /// Ask: a committed store, read-only.
    public init(reader: StoreReader, budgetBytes: Int) throws {
        writer = nil
        self.reader = reader
        cache = try PageCache(reader: reader, budgetBytes: budgetBytes)
        stored = reader.chunkCount
        streaming = false
    }

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

    public func append(pages: [UnsafeBufferPointer<Float>], features: UnsafeBufferPointer<Float>) throws {
        if let writer {
            let next = nextChunk ?? ([], 0..<0)
            try writer.append(ChunkRecord(tokens: next.tokens, byteRange: next.byteRange, pages: pages, features: features))
            nextChunk = nil
        } else {
            sessionPages.append(pages.map(Array.init))
            let f = UnsafeMutablePointer<Float>.allocate(capacity: features.count)
            f.initialize(from: features.baseAddress!, count: features.count)
            sessionFeatures.append(f)
        }
    }

    public func withPage<R>(chunk: Int, layer: Int, _ body: (UnsafePointer<Float>) throws -> R) throws -> R {
        if writer == nil && chunk >= stored {
            return try sessionPages[chunk - stored][layer].withUnsafeBufferPointer { try body($0.baseAddress!) }
        }
        if streaming {
            let floats = reader.geometry.floatsPerPage
            scratchLock.lock()
            let buffer: UnsafeMutablePointer<Float>
            if let b = freeScratch.popLast() { buffer = b } else {
                buffer = .allocate(capacity: floats)  // one per concurrent reader, kept for reuse
                allScratch.append(buffer)
            }
            scratchLock.unlock()
            defer { scratchLock.lock(); freeScratch.append(buffer); scratchLock.unlock() }
            try reader.readPage(chunk: chunk, layer: layer, into: UnsafeMutableBufferPointer(start: buffer, count: floats))
            return try body(buffer)
        }
        return try cache.withPage(chunk: chunk, layer: layer) { try body($0.baseAddress!) }
    }
}
