import Foundation
import Testing
@testable import KVStore

@Suite("Page cache")
struct PageCacheTests {
    /// A store of 4 chunks × 3 layers and every page decoded once, for comparison.
    func fixture(_ dir: String) throws -> (StoreReader, [[[Float]]]) {
        let g = smallGeometry()
        try buildStore(at: dir, geometry: g, full: 4)
        let r = try StoreReader.open(at: dir)
        let pages = try (0..<4).map { c in try (0..<g.layers).map { l in try readAll(r, chunk: c, layer: l) } }
        return (r, pages)
    }

    @Test func hitsMissesAndEvictions() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let (r, pages) = try fixture(dir)
        let cache = try PageCache(reader: r, budgetBytes: 2 * r.geometry.pageBytes + 100)
        #expect(cache.capacityPages == 2)
        try cache.withPage(chunk: 0, layer: 0) { #expect(Array($0) == pages[0][0]) }
        try cache.withPage(chunk: 0, layer: 0) { #expect(Array($0) == pages[0][0]) }
        try cache.withPage(chunk: 1, layer: 0) { #expect(Array($0) == pages[1][0]) }
        try cache.withPage(chunk: 2, layer: 0) { #expect(Array($0) == pages[2][0]) }
        let s = cache.statistics
        #expect(s.hits == 1 && s.misses == 3 && s.evictions == 1 && s.pinnedBytes == 0)
        #expect(s.residentBytes == 2 * r.geometry.pageBytes && s.residentBytes <= cache.budgetBytes)
    }

    @Test func budgetSmallerThanThePinnedSetThrows() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let (r, pages) = try fixture(dir)
        let cache = try PageCache(reader: r, budgetBytes: 2 * r.geometry.pageBytes)
        let a = try cache.page(chunk: 0, layer: 0)
        let b = try cache.page(chunk: 0, layer: 1)
        let e = errorText { _ = try cache.page(chunk: 0, layer: 2) }
        #expect(e?.contains("budget of \(2 * r.geometry.pageBytes) bytes exceeded") == true, "\(e ?? "")")
        // A pinned page may be pinned again (it is already in memory).
        let a2 = try cache.page(chunk: 0, layer: 0)
        #expect(a2 == a)
        cache.release(a2)
        cache.release(a)
        let c = try cache.page(chunk: 0, layer: 2)
        #expect(Array(UnsafeBufferPointer(start: c, count: r.geometry.floatsPerPage)) == pages[0][2])
        #expect(Array(UnsafeBufferPointer(start: b, count: r.geometry.floatsPerPage)) == pages[0][1])
        cache.release(b)
        cache.release(c)
        #expect(throws: StoreError.self) { _ = try PageCache(reader: r, budgetBytes: r.geometry.pageBytes - 1) }
    }

    /// Two threads ask for random pages, hold some pinned for a while and check their content; the
    /// cache never owns more than its budget and pinned pages never change under their holders.
    @Test func twoThreadsRandomAccessStayWithinBudget() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let (r, pages) = try fixture(dir)
        let g = r.geometry
        let cache = try PageCache(reader: r, budgetBytes: 5 * g.pageBytes)
        let failures = Locked(0)
        let maxResident = Locked(0)
        let requests = 3000
        DispatchQueue.concurrentPerform(iterations: 2) { t in
            var rng = TestRNG(seed: UInt64(t) + 100)
            var held: [(UnsafePointer<Float>, Int, Int)] = []
            for _ in 0..<requests {
                let c = Int(rng.next() % 4), l = Int(rng.next() % UInt64(g.layers))
                do {
                    let p = try cache.page(chunk: c, layer: l)
                    if p[0] != pages[c][l][0] || p[g.floatsPerPage - 1] != pages[c][l][g.floatsPerPage - 1] { failures.add(1) }
                    held.append((p, c, l))
                } catch {
                    // At most 2 pinned per thread while asking (one held, one loading): 4 < 5 pages.
                    failures.add(1)
                }
                if held.count > 1 || rng.next() % 2 == 0, !held.isEmpty {
                    let (p, c, l) = held.removeFirst()
                    // Still the same page while pinned, whatever the other thread did.
                    if !pages[c][l].withUnsafeBufferPointer({ $0.elementsEqual(UnsafeBufferPointer(start: p, count: g.floatsPerPage)) }) {
                        failures.add(1)
                    }
                    cache.release(p)
                }
                maxResident.max(cache.statistics.residentBytes)
            }
            for (p, _, _) in held { cache.release(p) }
        }
        let s = cache.statistics
        #expect(failures.value == 0)
        #expect(maxResident.value <= cache.budgetBytes)
        #expect(s.hits + s.misses == 2 * requests)
        #expect(s.pinnedBytes == 0)
        #expect(s.evictions > 0 && s.hits > 0)
    }

    @Test func invalidateAfterTruncate() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry()
        try buildStore(at: dir, geometry: g, full: 3)
        let w = try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP)
        let cache = try PageCache(reader: w.reader, budgetBytes: 8 * g.pageBytes)
        let pinned = try cache.page(chunk: 2, layer: 0)
        let before = Array(UnsafeBufferPointer(start: pinned, count: g.floatsPerPage))
        try w.truncate(toChunkCount: 2)
        cache.invalidate(fromChunk: 2)
        let replacement = ChunkData(geometry: g, chunk: 2, tokens: 16, seed: 1234)
        try replacement.append(to: w)
        // The pinned old page is untouched; a new request decodes the new chunk.
        #expect(Array(UnsafeBufferPointer(start: pinned, count: g.floatsPerPage)) == before)
        try cache.withPage(chunk: 2, layer: 0) { p in
            expectClose(replacement.pages[0], p, geometry: g)
        }
        cache.release(pinned)
        #expect(cache.statistics.pinnedBytes == 0)
        try w.close()
    }
}

/// A value behind a lock, for counters shared by test threads.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T {
        lock.lock()
        defer { lock.unlock() }
        return v
    }
    func update(_ f: (inout T) -> Void) {
        lock.lock()
        f(&v)
        lock.unlock()
    }
}

extension Locked where T == Int {
    func add(_ n: Int) { update { $0 += n } }
    func max(_ n: Int) { update { $0 = Swift.max($0, n) } }
}

/// The cache holding q8/q4 pages encoded (issue 13: the attention dequantizes them as it reads).
@Suite("Page cache, encoded pages")
struct EncodedPageCacheTests {
    @Test(arguments: [KVPrecision.q8, .q4])
    func encodedPagesDecodeToWhatReadPageGivesAndTakeTheirEncodedSize(precision: KVPrecision) throws {
        let dir = makeTempDir("encoded-cache-\(precision)")
        defer { cleanup(dir) }
        let g = smallGeometry(precision, layers: 3, chunkSize: 48)
        // Three full chunks and a partial one (its page zero-padded, mostly LZ4: both codecs are read).
        try buildStore(at: dir, geometry: g, full: 3, partialTokens: 21)
        let r = try StoreReader.open(at: dir)
        let encodedBytes = try #require(g.encodedPageBytes)
        #expect(try PageCache.pageBytes(g, form: .encoded) == encodedBytes)
        #expect(try PageCache.pageBytes(g, form: .floats) == g.pageBytes)
        // The same budget holds more encoded pages than decoded ones.
        let budget = 3 * g.pageBytes
        let floats = try PageCache(reader: r, budgetBytes: budget)
        let cache = try PageCache(reader: r, budgetBytes: budget, form: .encoded)
        #expect(floats.capacityPages == 3)
        #expect(cache.capacityPages == budget / encodedBytes)
        #expect(cache.capacityPages >= (precision == .q4 ? 5 : 3), "\(cache.capacityPages) pages of \(encodedBytes) bytes")
        var decoded = [Float](repeating: .nan, count: g.floatsPerPage)
        for round in 0..<2 {
            for c in 0..<4 {
                for l in 0..<g.layers {
                    let want = try readAll(r, chunk: c, layer: l)
                    try cache.withEncodedPage(chunk: c, layer: l) { bytes in
                        #expect(bytes.count == encodedBytes)
                        decoded.withUnsafeMutableBufferPointer { g.decode(encoded: bytes.baseAddress!, into: $0.baseAddress!) }
                    }
                    #expect(decoded.map(\.bitPattern) == want.map(\.bitPattern), "round \(round) chunk \(c) layer \(l)")
                }
            }
        }
        let s = cache.statistics
        #expect(s.misses + s.hits == 24 && s.pinnedBytes == 0)
        #expect(s.residentBytes == min(cache.capacityPages, 4 * g.layers) * encodedBytes && s.residentBytes <= budget)
    }

    @Test func damagedEncodedPageIsNamed() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry(.q4, layers: 2, chunkSize: 16)
        try buildStore(at: dir, geometry: g, full: 2)
        var bytes = readBytes(dir + "/pages")
        bytes[bytes.count - 5] ^= 0x40  // inside the stored bytes of the last page (chunk 1, layer 1)
        writeBytes(dir + "/pages", bytes)
        let r = try StoreReader.open(at: dir)
        let cache = try PageCache(reader: r, budgetBytes: 4 * g.pageBytes, form: .encoded)
        try cache.withEncodedPage(chunk: 0, layer: 0) { _ in }
        let e = errorText { try cache.withEncodedPage(chunk: 1, layer: 1) { _ in } }
        #expect(e?.contains("/pages") == true && e?.contains("chunk 1 layer 1") == true, "\(e ?? "no error")")
        // Nothing of the failed read stays pinned or cached.
        #expect(cache.statistics.pinnedBytes == 0)
        #expect(errorText { try cache.withEncodedPage(chunk: 1, layer: 1) { _ in } } != nil)
    }
}
