import Foundation
import Testing
@testable import KVStore

#if canImport(Glibc)
import Glibc
#endif

/// Throughput and latency at the real geometry (SmolLM2-135M: 30 layers, 3 KV heads, head dim 64,
/// chunks of 256 tokens: pages of 98,304 floats). Off by default (it writes ~200 MB); run with
/// `KVSTORE_BENCH=1`. With `KVSTORE_BENCH_KV=<file>` the pages are real K/V dumped from the model,
/// `[chunk][layer][K,V][kvHead][256][64]` float32; otherwise Gaussian floats with per-dimension scales.
@Suite("KV store benchmarks", .enabled(if: ProcessInfo.processInfo.environment["KVSTORE_BENCH"] != nil), .serialized)
struct StoreBenchmarks {
    static let g = StoreGeometry(layers: 30, kvHeads: 3, queryHeads: 9, headDim: 64, chunkSize: 256)

    /// `chunks` chunks of pages, from the dump if given.
    static func pages(chunks: Int) -> (source: String, pages: [[[Float]]]) {
        let n = g.floatsPerPage
        if let path = ProcessInfo.processInfo.environment["KVSTORE_BENCH_KV"], let data = FileManager.default.contents(atPath: path) {
            let have = data.count / (4 * n * g.layers)
            let floats = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let out = (0..<chunks).map { c in (0..<g.layers).map { l in
                let base = ((c % have) * g.layers + l) * n
                return Array(floats[base..<(base + n)])
            } }
            return ("real SmolLM2-135M K (pre-RoPE) and V from \(path), \(have) distinct chunks", out)
        }
        var rng = TestRNG(seed: 1)
        let out = (0..<chunks).map { _ in (0..<g.layers).map { _ in
            (0..<n).map { i -> Float in rng.gaussian() * (0.1 + Float(i % 64) / 8) }
        } }
        return ("Gaussian floats (per-dimension scales 0.1...8)", out)
    }

    func seconds(_ body: () throws -> Void) rethrows -> Double {
        let t = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
    }

    @Test func throughputAndLatency() throws {
        let chunks = 16
        let (source, arrays) = Self.pages(chunks: chunks)
        let pages: [[UnsafeBufferPointer<Float>]] = arrays.map { $0.map { a in
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: a.count)
            _ = b.initialize(from: a)
            return UnsafeBufferPointer(b)
        } }
        defer { for c in pages { for p in c { p.deallocate() } } }
        print("KV store benchmark: \(Self.g)\ndata: \(source)")
        let features = [Float](repeating: 0.5, count: Self.g.featureFloatsPerChunk)
        let payload = Double(chunks * Self.g.layers * Self.g.pageBytes)
        for precision in KVPrecision.allCases {
            var g = Self.g
            g.precision = precision
            let dir = makeTempDir("bench")
            defer { cleanup(dir) }
            let w = try StoreWriter.create(at: dir + "/s", geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                           commitPolicy: .manual)
            func append(_ c: Int, into w: StoreWriter) throws {
                let ptrs = pages[c % chunks]
                try features.withUnsafeBufferPointer { f in
                    try w.append(ChunkRecord(tokens: [Int32](repeating: 1, count: 256), byteRange: UInt64(c * 1024)..<UInt64(c * 1024 + 1024),
                                             pages: ptrs, features: f))
                }
            }
            let tAppend = try seconds { for c in 0..<chunks { try append(c, into: w) } }
            let tCommit = try seconds { try w.commit() }
            var commitTimes: [Double] = []
            for c in chunks..<(chunks + 5) {
                try append(c, into: w)
                commitTimes.append(try seconds { try w.commit() })
            }
            try w.close()
            let r = try StoreReader.open(at: dir + "/s")
            let stored = Double(r.header.pagesBytes - dataFileHeaderBytes - r.chunkCount * g.layers * pageHeaderBytes)
            let raw = Double(r.chunkCount * g.layers * g.encodedPageBytes!)
            print(String(format: "[%@] append: %.0f MB/s of float payload (%.2f ms per page); commit after 16 chunks: %.1f ms; "
                         + "commit of 1 chunk: median %.1f ms",
                         precision.description, payload / tAppend / 1e6, tAppend / Double(chunks * g.layers) * 1e3, tCommit * 1e3,
                         commitTimes.sorted()[2] * 1e3))
            print(String(format: "[%@] stored %.3f of the %@ bytes after LZ4 (%.3f of float32)",
                         precision.description, stored / raw, precision.description, stored / Double(r.chunkCount * g.layers * g.pageBytes)))

            var buf = [Float](repeating: 0, count: g.floatsPerPage)
            let n = r.chunkCount * g.layers
            // Cold: drop the file from the OS cache (its pages are clean after the commit; pages mapped
            // by a live reader would not be dropped, so each cold pass uses a fresh reader).
            func cold(_ order: [Int]) throws -> Double {
                let fd = open(dir + "/s/pages", O_RDONLY)
                _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
                close(fd)
                let fresh = try StoreReader.open(at: dir + "/s")
                return try seconds {
                    try buf.withUnsafeMutableBufferPointer { b in
                        for i in order { try fresh.readPage(chunk: i / g.layers, layer: i % g.layers, into: b) }
                    }
                } / Double(order.count)
            }
            var order = (0..<n).map { $0 }
            let tCold = try cold(order)
            var rng = TestRNG(seed: 3)
            order.shuffle(using: &rng)
            let tRandom = try cold(order)
            print(String(format: "[%@] cold readPage: file order %.0f µs/page, random order %.0f µs/page",
                         precision.description, tCold * 1e6, tRandom * 1e6))
            let tHot = try seconds {
                try buf.withUnsafeMutableBufferPointer { b in
                    for _ in 0..<3 { for c in 0..<r.chunkCount { for l in 0..<g.layers { try r.readPage(chunk: c, layer: l, into: b) } } }
                }
            } / 3
            let cache = try PageCache(reader: r, budgetBytes: 64 * g.pageBytes)
            for l in 0..<32 { _ = try cache.withPage(chunk: 0, layer: l % g.layers) { $0[0] } }
            let hits = 100_000
            let tHit = try seconds { for i in 0..<hits { _ = try cache.withPage(chunk: 0, layer: i % 30) { $0[1] } } }
            print(String(format: "[%@] readPage OS-cached: %.0f µs/page (%.0f MB/s of floats); PageCache hit %.2f µs",
                         precision.description, tHot / Double(n) * 1e6, Double(n * g.pageBytes) / tHot / 1e6, tHit / Double(hits) * 1e6))
            #expect(r.verify().isEmpty)
        }
    }

    /// Resident anonymous memory (heap, not file pages), from /proc/self/status, in MB.
    static func rssAnonMB() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("RssAnon:") }) else { return -1 }
        return Double(line.split(separator: " ")[1])! / 1024
    }

    /// A long ingest (`KVSTORE_BENCH_CHUNKS` chunks of the real geometry, default 0 = skipped): the
    /// process's anonymous memory must not grow with the number of chunks.
    @Test func memoryStaysFlat() throws {
        let chunks = Int(ProcessInfo.processInfo.environment["KVSTORE_BENCH_CHUNKS"] ?? "0") ?? 0
        guard chunks > 0 else { return }
        let (_, arrays) = Self.pages(chunks: 16)
        let pages: [[UnsafeBufferPointer<Float>]] = arrays.map { $0.map { a in
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: a.count)
            _ = b.initialize(from: a)
            return UnsafeBufferPointer(b)
        } }
        defer { for c in pages { for p in c { p.deallocate() } } }
        let features = [Float](repeating: 0.5, count: Self.g.featureFloatsPerChunk)
        let dir = makeTempDir("flat")
        defer { cleanup(dir) }
        let w = try StoreWriter.create(at: dir + "/s", geometry: Self.g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP)
        let start = DispatchTime.now().uptimeNanoseconds
        var report: [String] = ["start: RssAnon \(Self.rssAnonMB()) MB"]
        for c in 0..<chunks {
            try features.withUnsafeBufferPointer { f in
                try w.append(ChunkRecord(tokens: [Int32](repeating: 1, count: 256), byteRange: UInt64(c * 1024)..<UInt64(c * 1024 + 1024),
                                         pages: pages[c % 16], features: f))
            }
            if (c + 1) % max(1, chunks / 4) == 0 { report.append("\(c + 1) chunks: RssAnon \(Self.rssAnonMB()) MB") }
        }
        try w.close()
        let secs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        report.append(String(format: "ingest incl. commits: %.1f s, %.0f MB/s of float payload", secs,
                             Double(chunks * Self.g.layers * Self.g.pageBytes) / secs / 1e6))
        var r: StoreReader! = nil
        let tOpen = try seconds { r = try StoreReader.open(at: dir + "/s") }
        var problems: [StoreError] = []
        let tVerify = seconds { problems = r.verify() }
        #expect(problems.isEmpty)
        report.append(String(format: "open (checks all page-table records and features): %.1f ms; verify: %.1f s (%.0f MB/s of pages)",
                             tOpen * 1e3, tVerify, Double(r.header.pagesBytes) / tVerify / 1e6))
        let cache = try PageCache(reader: r, budgetBytes: 64 * Self.g.pageBytes)
        var rng = TestRNG(seed: 5)
        let t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<5000 {
            _ = try cache.withPage(chunk: Int(rng.next() % UInt64(chunks)), layer: Int(rng.next() % 30)) { $0[0] }
        }
        let perPage = Double(DispatchTime.now().uptimeNanoseconds - t0) / 5000 / 1000
        report.append(String(format: "reader + 64-page cache, 5000 random pages (%.0f µs each): RssAnon %.0f MB, cache %d MB",
                             perPage, Self.rssAnonMB(), cache.statistics.residentBytes >> 20))
        print("memory over \(chunks) chunks (\(chunks * 256) tokens, store \(r.header.pagesBytes >> 20) MB of pages):\n  "
              + report.joined(separator: "\n  "))
    }
}
