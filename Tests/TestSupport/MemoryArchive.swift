import LongHeads

/// A test double for `ChunkArchive` that keeps pages in arrays (the product archives into a KVStore).
public final class MemoryArchive: ChunkArchive, @unchecked Sendable {
    public private(set) var pages: [[[Float]]] = []     // [chunk][layer][floats]
    public private(set) var featureRows: [UnsafeMutablePointer<Float>] = []
    public private(set) var reads = 0
    /// What came with each chunk (`CompletedChunk.source`).
    public private(set) var sources: [ChunkSource?] = []

    public init() {}

    public var chunkCount: Int { pages.count }

    deinit { featureRows.forEach { $0.deallocate() } }

    public func features(ofChunk chunk: Int) throws -> UnsafePointer<Float> { UnsafePointer(featureRows[chunk]) }

    public func featureRows(layer: Int, chunks: Range<Int>, rowFloats: Int, into rows: UnsafeMutablePointer<UnsafePointer<Float>>) throws {
        for (x, c) in chunks.enumerated() { rows[x] = UnsafePointer(featureRows[c] + layer * rowFloats) }
    }

    public func append(_ chunk: CompletedChunk) throws {
        precondition(chunk.index == pages.count, "chunk \(chunk.index) archived as chunk \(pages.count)")
        let (p, f) = (chunk.pages, chunk.features)
        sources.append(chunk.source)
        pages.append(p.map(Array.init))
        let row = UnsafeMutablePointer<Float>.allocate(capacity: f.count)
        row.initialize(from: f.baseAddress!, count: f.count)
        featureRows.append(row)
    }

    /// Forgets chunks `count...` (what `StoreArchive.discardSessionChunks` does to a question's chunks).
    public func truncate(to count: Int) {
        precondition(count <= pages.count)
        featureRows[count...].forEach { $0.deallocate() }
        featureRows.removeSubrange(count...)
        pages.removeSubrange(count...)
        sources.removeSubrange(count...)
    }

    public func withPage<R>(chunk: Int, layer: Int, _ body: (UnsafePointer<Float>) throws -> R) throws -> R {
        reads += 1
        return try pages[chunk][layer].withUnsafeBufferPointer { try body($0.baseAddress!) }
    }
}
