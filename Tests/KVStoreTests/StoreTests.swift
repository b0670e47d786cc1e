import Foundation
import Testing
@testable import KVStore

#if canImport(Glibc)
import Glibc
#endif

@Suite("KV store: round trips, API")
struct StoreRoundTripTests {
    @Test(arguments: KVPrecision.allCases)
    func roundTripWithinBounds(precision: KVPrecision) throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry(precision)
        let chunks = try buildStore(at: dir, geometry: g, full: 4, partialTokens: 5)
        let r = try StoreReader.open(at: dir, expectedModelFingerprint: modelFP, expectedGeometry: g)
        try expectStore(r, equals: chunks)
        let h = r.header
        #expect(h.geometry == g)
        #expect(h.flags == 7)
        #expect(h.blob == Array("{\"w\":16}".utf8))
        #expect(h.modelFingerprint == modelFP && h.tokenizerFingerprint == tokenizerFP)
        #expect(h.chunkCount == 5 && h.tokenCount == 4 * 16 + 5)
        #expect(h.sourceBytesConsumed == chunks.last!.byteRange.upperBound)
        var calls: [(Int, Int)] = []
        #expect(r.verify { calls.append(($0, $1)) }.isEmpty)
        #expect(calls.map(\.0) == [1, 2, 3, 4, 5] && calls.allSatisfy { $0.1 == 5 })

        // A second, independent reader decodes exactly the same floats.
        let r2 = try StoreReader.open(at: dir)
        for c in 0..<5 {
            for l in 0..<g.layers { #expect(try readAll(r, chunk: c, layer: l) == readAll(r2, chunk: c, layer: l)) }
        }
    }

    @Test func zeroPaddedPartialPagesCompressAway() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = StoreGeometry(layers: 2, kvHeads: 2, queryHeads: 2, headDim: 64, chunkSize: 256)
        try buildStore(at: dir, geometry: g, full: 0, partialTokens: 3)
        let r = try StoreReader.open(at: dir)
        let raw = g.layers * 2 * g.floatsPerPage
        #expect(r.header.pagesBytes - dataFileHeaderBytes < raw / 20, "\(r.header.pagesBytes) bytes for a 3-token chunk")
    }

    @Test func liveReaderSeesUncommittedChunksAndFeaturesGrow() throws {
        let dir = makeTempDir() + "/store"
        defer { cleanup(dir) }
        let g = smallGeometry()
        let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                       commitPolicy: .manual)
        let live = w.reader
        #expect(live.chunkCount == 0)
        var chunks: [ChunkData] = []
        for c in 0..<6 {
            let chunk = ChunkData(geometry: g, chunk: c, tokens: 16)
            try chunk.append(to: w)
            chunks.append(chunk)
            try expectStore(live, equals: chunks)
        }
        #expect(w.committedChunkCount == 0)
        // Nothing committed yet: a reader from disk sees an empty store.
        #expect(try StoreReader.open(at: dir).chunkCount == 0)
        try w.close()
        #expect(try StoreReader.open(at: dir).chunkCount == 6)
        try expectStore(live, equals: chunks)  // still usable after close
    }

    /// The layer-major copy behind `featureRows` (groups of 128 chunks) follows appends across group
    /// boundaries, a truncation and the chunks appended after it, and scans of many chunks at once.
    @Test func featureRowsFollowAppendsAndTruncation() throws {
        let dir = makeTempDir() + "/store"
        defer { cleanup(dir) }
        let g = smallGeometry(layers: 3)
        let rowFloats = g.featureFloatsPerChunk / g.layers
        let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                       commitPolicy: .manual)
        var chunks: [ChunkData] = []
        func expectRows(_ r: StoreReader, _ sourceLocation: SourceLocation = #_sourceLocation) throws {
            var rows = [UnsafePointer<Float>](repeating: UnsafePointer(bitPattern: 1)!, count: chunks.count)
            for l in 0..<g.layers {
                try r.featureRows(layer: l, chunks: 0..<chunks.count, into: &rows)
                for (c, chunk) in chunks.enumerated() {
                    let want = Array(chunk.features[(l * rowFloats)..<((l + 1) * rowFloats)])
                    #expect(Array(UnsafeBufferPointer(start: rows[c], count: rowFloats)) == want, "chunk \(c) layer \(l)",
                            sourceLocation: sourceLocation)
                }
            }
        }
        for c in 0..<300 {
            chunks.append(ChunkData(geometry: g, chunk: c, tokens: 16))
            try chunks[c].append(to: w)
            if [0, 1, 127, 128, 129, 299].contains(c) { try expectRows(w.reader) }
        }
        try w.commit()
        try w.truncate(toChunkCount: 200)
        chunks.removeLast(100)
        try expectRows(w.reader)
        for c in 200..<260 {
            chunks.append(ChunkData(geometry: g, chunk: c, tokens: 16, seed: 9))
            try chunks[c].append(to: w)
        }
        try expectRows(w.reader)
        try w.close()
        try expectRows(try StoreReader.open(at: dir))
    }

    @Test func refreshSeesLaterCommits() throws {
        let dir = makeTempDir() + "/store"
        defer { cleanup(dir) }
        let g = smallGeometry()
        let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                       commitPolicy: .everyChunk)
        let chunks = (0..<3).map { ChunkData(geometry: g, chunk: $0, tokens: 16) }
        try chunks[0].append(to: w)
        let r = try StoreReader.open(at: dir)
        #expect(r.chunkCount == 1)
        try chunks[1].append(to: w)
        try chunks[2].append(to: w)
        #expect(r.chunkCount == 1)
        #expect(try r.refresh() == 3)
        try expectStore(r, equals: chunks)
        try w.close()
    }

    @Test func commitPolicyBatches() throws {
        let dir = makeTempDir() + "/store"
        defer { cleanup(dir) }
        let g = smallGeometry()
        let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                       commitPolicy: CommitPolicy(maxPendingChunks: 3, maxSeconds: 3600))
        for c in 0..<7 {
            try ChunkData(geometry: g, chunk: c, tokens: 16).append(to: w)
            #expect(w.committedChunkCount == (c + 1) / 3 * 3)
        }
        try w.close()
        #expect(try StoreReader.open(at: dir).chunkCount == 7)
    }

    @Test func blobAndFlagsUpdate() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry()
        try buildStore(at: dir, geometry: g, full: 1)
        let w = try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP)
        try w.updateBlob(Array("{\"new\":true}".utf8))
        try w.updateFlags(0x8000_0001)
        try w.commit()
        let h = try StoreReader.open(at: dir).header
        #expect(h.blob == Array("{\"new\":true}".utf8) && h.flags == 0x8000_0001 && h.chunkCount == 1)
        #expect(errorText { try w.updateBlob([UInt8](repeating: 0, count: maxStoreBlobBytes + 1)) }?.contains("exceeds") == true)
        try w.close()
    }

    @Test func badArgumentsAreRefusedAndLeaveTheWriterUsable() throws {
        let dir = makeTempDir() + "/store"
        defer { cleanup(dir) }
        let g = smallGeometry()
        #expect(errorText {
            _ = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: [1, 2], tokenizerFingerprint: tokenizerFP)
        }?.contains("32 bytes") == true)
        let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP)
        var chunk = ChunkData(geometry: g, chunk: 0, tokens: 16)
        chunk.tokens.append(1)
        #expect(errorText { try chunk.append(to: w) }?.contains("1...16 tokens") == true)
        chunk.tokens.removeLast()
        chunk.pages.removeLast()
        #expect(errorText { try chunk.append(to: w) }?.contains("3 pages") == true)
        let good = ChunkData(geometry: g, chunk: 0, tokens: 16)
        try good.append(to: w)
        #expect(throws: StoreError.self) { _ = try w.reader.tokens(ofChunk: 1) }
        #expect(errorText { _ = try readAll(w.reader, chunk: 0, layer: 3) }?.contains("layer 3 out of range") == true)
        try w.close()
        try expectStore(try StoreReader.open(at: dir), equals: [good])
    }

    @Test func createRefusesAnExistingStoreAndSecondWriterIsLocked() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry()
        try buildStore(at: dir, geometry: g, full: 1)
        #expect(errorText {
            _ = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP)
        }?.contains("already exists") == true)
        let w = try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP)
        #expect(throws: StoreError.locked(path: dir)) { _ = try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP) }
        try w.close()
        try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP).close()
    }
}

@Suite("KV store: refusing wrong stores")
struct StoreRefusalTests {
    @Test func modelMismatchIsRefusedWithBothFingerprints() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        try buildStore(at: dir, geometry: smallGeometry(), full: 1)
        let other = fingerprint(99)
        let expected = StoreError.modelMismatch(path: dir + "/header", expected: other, found: modelFP)
        #expect(throws: expected) { _ = try StoreReader.open(at: dir, expectedModelFingerprint: other) }
        #expect(throws: expected) { _ = try StoreWriter.resume(at: dir, expectedModelFingerprint: other) }
        let text = expected.description
        #expect(text.contains("another model") && text.contains(shortHex(other)) && text.contains(shortHex(modelFP)))
        #expect(shortHex(modelFP).count == 17)  // 16 hex digits and an ellipsis
    }

    @Test func geometryMismatchNamesTheField() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        try buildStore(at: dir, geometry: smallGeometry(), full: 1)
        var g = smallGeometry()
        g.chunkSize = 32
        g.floatsPerPage = 1024
        #expect(throws: StoreError.geometryMismatch(path: dir + "/header", field: "chunkSize", expected: 32, found: 16)) {
            _ = try StoreReader.open(at: dir, expectedGeometry: g)
        }
    }

    @Test func notAStoreAndOtherVersions() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        #expect(errorText { _ = try StoreReader.open(at: dir) }?.contains("no `header` file") == true)
        writeBytes(dir + "/header", Array("GGUF and then some more bytes".utf8))
        #expect(errorText { _ = try StoreReader.open(at: dir) }?.contains("not a KV store file") == true)
        cleanup(dir)
        try buildStore(at: dir, geometry: smallGeometry(), full: 1)
        var h = readBytes(dir + "/header")
        h[4] = 1  // a format-1 store: refused, with what to do
        writeBytes(dir + "/header", h)
        let e = errorText { _ = try StoreReader.open(at: dir) }
        #expect(e?.contains("format version 1 is not supported") == true && e?.contains("ingest the document again") == true, "\(e ?? "")")
    }

    @Test func filesOfAnotherStoreAreRefused() throws {
        let a = makeTempDir(), b = makeTempDir()
        defer { cleanup(a); cleanup(b) }
        try buildStore(at: a, geometry: smallGeometry(), full: 2)
        try buildStore(at: b, geometry: smallGeometry(), full: 2)
        try FileManager.default.removeItem(atPath: a + "/tokens")
        try FileManager.default.copyItem(atPath: b + "/tokens", toPath: a + "/tokens")
        #expect(errorText { _ = try StoreReader.open(at: a) }?.contains("tokens: file belongs to another store") == true)
    }
}

/// Flips or cuts bytes of every file of a small store and checks that the damage is found and named.
@Suite("KV store: corruption")
struct StoreCorruptionTests {
    static let files = ["header", "pages", "pagetable", "features", "tokens"]

    /// Byte ranges of every page in `pages`: (start, end, chunk, layer).
    func pageRanges(_ r: StoreReader) throws -> [(Int, Int, Int, Int)] {
        let s = r.core.snapshot()
        var out: [(Int, Int, Int, Int)] = []
        for c in 0..<s.chunks {
            let rec = try r.core.tableRecord(s, c)
            for l in 0..<r.geometry.layers { out.append((rec.offsets[l], rec.offsets[l] + pageHeaderBytes + rec.storedBytes[l], c, l)) }
        }
        return out
    }

    func flip(_ path: String, _ offset: Int) {
        let fd = open(path, O_RDWR)
        precondition(fd >= 0)
        var b: UInt8 = 0
        _ = pread(fd, &b, 1, off_t(offset))
        b ^= 0xFF
        _ = pwrite(fd, &b, 1, off_t(offset))
        close(fd)
    }

    @Test(arguments: KVPrecision.allCases)
    func flippedByteAnywhereIsDetected(precision: KVPrecision) throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        // Pages of mixed compressibility: full chunks are stored raw, the partial one as LZ4.
        let g = StoreGeometry(layers: 2, kvHeads: 1, queryHeads: 2, headDim: 8, chunkSize: 16, precision: precision)
        try buildStore(at: dir, geometry: g, full: 2, partialTokens: 2)
        let ranges = try pageRanges(StoreReader.open(at: dir))
        var checked = 0
        for name in Self.files {
            let path = dir + "/" + name
            // The header's two slots: every byte of each used part, and some of their zero padding.
            var offsets = Array(0..<fileSize(path))
            if name == "header" {
                offsets = []
                for slot in [0, headerSlotBytes] {
                    offsets += Array(slot..<(slot + headerFixedBytes + 4 + 64))
                    offsets.append(slot + headerSlotBytes - 1)
                }
            }
            for i in offsets {
                flip(path, i)
                defer { flip(path, i) }
                checked += 1
                let r: StoreReader
                do { r = try StoreReader.open(at: dir, expectedModelFingerprint: modelFP) } catch {
                    #expect("\(error)".contains("/" + name), "flip of \(name)[\(i)]: open failed without naming the file: \(error)")
                    continue
                }
                let problems = r.verify()
                #expect(problems.contains { $0.description.contains("/" + name) }, "flip of \(name)[\(i)] not detected: \(problems)")
                if name == "pages", let (_, _, c, l) = ranges.first(where: { $0.0 <= i && i < $0.1 }) {
                    let e = errorText { _ = try readAll(r, chunk: c, layer: l) }
                    #expect(e?.contains("/pages") == true && e?.contains("chunk \(c) layer \(l)") == true,
                            "flip of pages[\(i)]: readPage(\(c), \(l)) gave \(e ?? "no error")")
                }
            }
        }
        #expect(checked > 2000)
        #expect(try StoreReader.open(at: dir).verify().isEmpty)
    }

    func patch(_ path: String, at offset: Int, _ bytes: [UInt8]) {
        let fd = open(path, O_RDWR)
        precondition(fd >= 0)
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, off_t(offset)) }
        close(fd)
    }

    /// Garbage in place of an LZ4 block, with every CRC recomputed to match: decompression itself
    /// must catch it.
    @Test func malformedLZ4BehindValidChecksumsIsReported() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        try buildStore(at: dir, geometry: smallGeometry(), full: 1, partialTokens: 2)
        let r0 = try StoreReader.open(at: dir)
        let s = r0.core.snapshot()
        var record = try r0.core.tableRecord(s, 1)
        let offset = record.offsets[0]
        var h = try #require(PageHeader.decode(s.pages + offset).header)
        #expect(h.codec == PageCodec.lz4.rawValue)
        let garbage = [UInt8](repeating: 0xF0, count: h.storedBytes)
        h.dataCRC = garbage.withUnsafeBytes { crc32c($0.baseAddress!, $0.count) }
        record.dataCRCs[0] = h.dataCRC
        var headerBytes = [UInt8](repeating: 0, count: pageHeaderBytes)
        headerBytes.withUnsafeMutableBytes { h.encode(into: $0.baseAddress!) }
        patch(dir + "/pages", at: offset, headerBytes + garbage)
        patch(dir + "/pagetable", at: r0.core.tableOffset(1), record.encode())

        let r = try StoreReader.open(at: dir)
        let e = errorText { _ = try readAll(r, chunk: 1, layer: 0) }
        #expect(e?.contains("/pages: page chunk 1 layer 0") == true && e?.contains("does not decompress") == true, "\(e ?? "")")
        let problems = r.verify()
        #expect(problems.count == 1)
        if case .decompressionFailed(_, 1, 0, offset, _)? = problems.first {} else { Issue.record("verify: \(problems)") }
    }

    @Test func truncatedFilesAreDetected() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        try buildStore(at: dir, geometry: smallGeometry(), full: 2, partialTokens: 3)
        for name in Self.files {
            let path = dir + "/" + name
            let original = readBytes(path)
            for cut in Set([0, 3, 11, 63, 64, 65, original.count / 2, original.count - 1]) where cut < original.count {
                #expect(truncate(path, off_t(cut)) == 0)
                defer { writeBytes(path, original) }
                do {
                    let r = try StoreReader.open(at: dir)
                    let problems = r.verify()
                    #expect(problems.contains { $0.description.contains("/" + name) }, "\(name) cut to \(cut): \(problems)")
                } catch {
                    #expect("\(error)".contains("/" + name), "\(name) cut to \(cut): \(error)")
                }
            }
        }
        #expect(try StoreReader.open(at: dir).verify().isEmpty)
    }
}

@Suite("KV store: crashes, resume, disk full")
struct StoreCrashTests {
    @Test func droppedWriterKeepsTheLastCommitAndResumeContinues() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry()
        let chunks = (0..<5).map { ChunkData(geometry: g, chunk: $0, tokens: 16) }
        do {
            let w = try StoreWriter.create(at: dir + "/s", geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                           commitPolicy: .manual)
            for c in chunks[0..<3] { try c.append(to: w) }
            try w.commit()
            for c in chunks[3..<5] { try c.append(to: w) }
            // The writer goes away without commit: a crash after the appends.
        }
        let s = dir + "/s"
        try expectStore(try StoreReader.open(at: s), equals: Array(chunks[0..<3]))
        #expect(fileSize(s + "/pagetable") > dataFileHeaderBytes + 3 * PageTableRecord.bytes(layers: g.layers))

        let w = try StoreWriter.resume(at: s, expectedModelFingerprint: modelFP, expectedGeometry: g)
        #expect(w.chunkCount == 3 && w.tokenCount == 48 && w.sourceBytesConsumed == chunks[2].byteRange.upperBound)
        // Every file was cut back to the committed state.
        #expect(fileSize(s + "/pages") == w.header.pagesBytes)
        #expect(fileSize(s + "/pagetable") == dataFileHeaderBytes + 3 * PageTableRecord.bytes(layers: g.layers))
        #expect(fileSize(s + "/features") == dataFileHeaderBytes + 3 * 4 * g.featureFloatsPerChunk)
        #expect(fileSize(s + "/tokens") == dataFileHeaderBytes + 3 * TokensRecord.bytes(chunkSize: 16))
        let redo = (3..<5).map { ChunkData(geometry: g, chunk: $0, tokens: 16, seed: 77) }
        for c in redo { try c.append(to: w) }
        try w.close()
        let r = try StoreReader.open(at: s)
        try expectStore(r, equals: Array(chunks[0..<3]) + redo)
        #expect(r.verify().isEmpty)
    }

    @Test func tornWritesAreCutOffOnResume() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry()
        let chunks = (0..<4).map { ChunkData(geometry: g, chunk: $0, tokens: 16) }
        do {
            let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                           commitPolicy: .manual)
            for c in chunks[0..<2] { try c.append(to: w) }
            try w.commit()
            for c in chunks[2..<4] { try c.append(to: w) }
        }
        // The crash tore the files at different points: mid-page, mid-record, mid-features.
        let committedPages = try StoreReader.open(at: dir).header.pagesBytes
        #expect(truncate(dir + "/pages", off_t(committedPages + 700)) == 0)
        #expect(truncate(dir + "/pagetable", off_t(fileSize(dir + "/pagetable") - 9)) == 0)
        #expect(truncate(dir + "/features", off_t(fileSize(dir + "/features") - 100)) == 0)
        try expectStore(try StoreReader.open(at: dir), equals: Array(chunks[0..<2]))
        let w = try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP)
        for c in chunks[2..<4] { try c.append(to: w) }
        try w.close()
        let r = try StoreReader.open(at: dir)
        try expectStore(r, equals: chunks)
        #expect(r.verify().isEmpty)
    }

    /// A crash before each system call of a whole ingest (create, appends, commits) in turn: the store
    /// then always holds exactly a committed prefix, and resume completes it.
    @Test func crashBeforeEverySystemCall() throws {
        let g = smallGeometry(layers: 2)
        let chunks = (0..<5).map { ChunkData(geometry: g, chunk: $0, tokens: $0 == 4 ? 9 : 16) }
        var n = 0
        var sawComplete = false
        while !sawComplete {
            let dir = makeTempDir() + "/store"
            defer { cleanup((dir as NSString).deletingLastPathComponent) }
            let faults = FaultInjector()
            var calls = 0
            faults.fail = { _, _ in
                calls += 1
                return calls == n + 1 ? EIO : nil
            }
            var committed = 0  // chunks whose commit returned
            var crashed = false
            do {
                let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                               flags: 0, blob: [], commitPolicy: CommitPolicy(maxPendingChunks: 2, maxSeconds: 3600),
                                               faults: faults)
                for (i, c) in chunks.enumerated() {
                    try c.append(to: w)
                    if (i + 1) % 2 == 0 { committed = i + 1 }
                }
                try w.close()
                committed = chunks.count
            } catch {
                crashed = true
                #expect("\(error)".contains("Input/output error"), "crash \(n): \(error)")
            }
            sawComplete = !crashed
            // After the crash: either no store (crash during create) or a committed prefix.
            if !FileManager.default.fileExists(atPath: dir + "/header") {
                #expect(n < 20, "crash \(n): header missing after creation completed")
                let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP)
                try w.close()
            }
            let r = try StoreReader.open(at: dir, expectedModelFingerprint: modelFP)
            let k = r.chunkCount
            // The commit in flight may have passed its rename before failing on the directory fsync.
            #expect(k == committed || (k == committed + 2 && k <= chunks.count) || (k == chunks.count && committed == 4),
                    "crash \(n): \(k) chunks visible, \(committed) committed")
            try expectStore(r, equals: Array(chunks[0..<k]))
            #expect(r.verify().isEmpty, "crash \(n)")
            let w = try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP)
            for c in chunks[k...] { try c.append(to: w) }
            try w.close()
            try expectStore(try StoreReader.open(at: dir), equals: chunks)
            n += 1
            #expect(n < 200)
            if n >= 200 { break }
        }
        #expect(n > 40)
    }

    @Test func partialLastChunkIsReplacedOnResume() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry()
        let chunks = try buildStore(at: dir, geometry: g, full: 2, partialTokens: 6)
        let w = try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP)
        #expect(w.lastChunkIsPartial && w.chunkCount == 3 && w.tokenCount == 38)
        let next = ChunkData(geometry: g, chunk: 3, tokens: 16)
        #expect(errorText { try next.append(to: w) }?.contains("partial") == true)
        // Continue the ingest from where the last complete chunk ended.
        try w.truncate(toChunkCount: 2)
        #expect(w.chunkCount == 2 && w.tokenCount == 32 && w.sourceBytesConsumed == chunks[1].byteRange.upperBound)
        // Dropping committed chunks is committed at once: a crash now shows 2 chunks.
        #expect(try StoreReader.open(at: dir).chunkCount == 2)
        let complete = ChunkData(geometry: g, chunk: 2, tokens: 16, seed: 5)
        let last = ChunkData(geometry: g, chunk: 3, tokens: 4, seed: 5)
        try complete.append(to: w)
        try last.append(to: w)
        try w.close()
        let r = try StoreReader.open(at: dir)
        try expectStore(r, equals: Array(chunks[0..<2]) + [complete, last])
        #expect(r.verify().isEmpty)
    }

    @Test func truncatingUncommittedChunksNeedsNoCommit() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry()
        let chunks = (0..<4).map { ChunkData(geometry: g, chunk: $0, tokens: 16) }
        let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                       commitPolicy: .manual)
        for c in chunks[0..<2] { try c.append(to: w) }
        try w.commit()
        for c in chunks[2..<4] { try c.append(to: w) }
        try w.truncate(toChunkCount: 3)
        #expect(w.committedChunkCount == 2 && w.chunkCount == 3)
        try w.close()
        try expectStore(try StoreReader.open(at: dir), equals: Array(chunks[0..<3]))
    }

    @Test func diskFullDuringAppendNamesTheFileAndKeepsTheCommit() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry()
        let chunks = (0..<4).map { ChunkData(geometry: g, chunk: $0, tokens: 16) }
        let faults = FaultInjector()
        do {
            let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                           flags: 0, blob: [], commitPolicy: .manual, faults: faults)
            for c in chunks[0..<2] { try c.append(to: w) }
            try w.commit()
            try chunks[2].append(to: w)
            faults.fail = { file, op in file == "features" && op == "pwrite" ? ENOSPC : nil }
            var caught: StoreError?
            do { try chunks[3].append(to: w) } catch let e as StoreError { caught = e }
            #expect(caught?.isDiskFull == true)
            #expect(caught?.description.contains("/features") == true && caught?.description.contains("disk full") == true)
            faults.fail = nil
            #expect(errorText { try w.commit() }?.contains("stopped after an earlier error") == true)
            #expect(errorText { try w.close() } == nil)
        }
        try expectStore(try StoreReader.open(at: dir), equals: Array(chunks[0..<2]))
        let w = try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP)
        for c in chunks[2..<4] { try c.append(to: w) }
        try w.close()
        try expectStore(try StoreReader.open(at: dir), equals: chunks)
    }

    @Test func diskFullDuringCommitLeavesTheOldHeader() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry()
        let chunks = (0..<3).map { ChunkData(geometry: g, chunk: $0, tokens: 16) }
        let faults = FaultInjector()
        let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                       flags: 0, blob: [], commitPolicy: .manual, faults: faults)
        try chunks[0].append(to: w)
        try w.commit()
        let before = readBytes(dir + "/header")
        for c in chunks[1..<3] { try c.append(to: w) }
        faults.fail = { file, op in file == "header" && op == "pwrite" ? ENOSPC : nil }
        let e = errorText { try w.commit() }
        #expect(e?.contains("header") == true && e?.contains("disk full") == true, "\(e ?? "")")
        #expect(readBytes(dir + "/header") == before)
        try expectStore(try StoreReader.open(at: dir), equals: [chunks[0]])
    }
}
