import Foundation
import Testing
@testable import KVStore

/// Issue 13 part 3: creation never clobbers, store files are never opened through a symbolic link.
@Suite("KV store: creation never clobbers")
struct CreationSafetyTests {
    func create(_ dir: String) throws -> StoreWriter {
        try StoreWriter.create(at: dir, geometry: smallGeometry(), modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP)
    }

    @Test func foreignFilesAreRefusedAndKept() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        writeBytes(dir + "/notes.txt", Array("mine".utf8))
        #expect(throws: StoreError.refusedDirectory(path: dir, reason: "the directory is not empty (it holds `notes.txt`); give a new or empty directory")) {
            _ = try create(dir)
        }
        unlink(dir + "/notes.txt")
        writeBytes(dir + "/features", Array("my features".utf8))
        let e = errorText { _ = try create(dir) }
        #expect(e?.contains("`features` is not a KV store file") == true, "\(e ?? "")")
        #expect(readBytes(dir + "/features") == Array("my features".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["features"])
    }

    @Test func symlinksAreNeverFollowed() throws {
        let dir = makeTempDir(), outside = makeTempDir()
        defer { cleanup(dir); cleanup(outside) }
        writeBytes(outside + "/target", Array("outside".utf8))
        symlink(outside + "/target", dir + "/pages")
        let e = errorText { _ = try create(dir) }
        #expect(e?.contains("`pages` is a symbolic link") == true, "\(e ?? "")")
        #expect(readBytes(outside + "/target") == Array("outside".utf8))
        // In an existing store, a data file replaced by a link is refused by readers and by resume.
        let store = makeTempDir()
        defer { cleanup(store) }
        try buildStore(at: store, geometry: smallGeometry(), full: 2)
        let pages = readBytes(store + "/pages")
        writeBytes(outside + "/pages", pages)
        unlink(store + "/pages")
        symlink(outside + "/pages", store + "/pages")
        #expect(errorText { _ = try StoreReader.open(at: store) }?.contains("symbolic link") == true)
        #expect(errorText { _ = try StoreWriter.resume(at: store, expectedModelFingerprint: modelFP) }?.contains("symbolic link") == true)
        #expect(readBytes(outside + "/pages") == pages)
    }

    @Test func leftoversOfAnInterruptedCreationAreReplaced() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        // A creation that stopped before its header: data files with their magic, one of them empty.
        let faults = FaultInjector()
        faults.fail = { file, op in file.hasPrefix("header") && op == "pwrite" ? EIO : nil }
        #expect(throws: StoreError.self) {
            _ = try StoreWriter.create(at: dir, geometry: smallGeometry(), modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                       flags: 0, blob: [], commitPolicy: .manual, faults: faults)
        }
        writeBytes(dir + "/tokens", [])
        #expect(!FileManager.default.fileExists(atPath: dir + "/header"))
        let w = try create(dir)
        try ChunkData(geometry: smallGeometry(), chunk: 0, tokens: 16).append(to: w)
        try w.close()
        #expect(try StoreReader.open(at: dir).verify().isEmpty)
    }
}

/// Issue 13 part 4: two header slots; a torn newest slot falls back to the previous commit.
@Suite("KV store: two header slots")
struct HeaderSlotTests {
    @Test func tornNewestSlotFallsBackToThePreviousCommit() throws {
        let dir = makeTempDir()
        defer { cleanup(dir) }
        let g = smallGeometry()
        let chunks = (0..<4).map { ChunkData(geometry: g, chunk: $0, tokens: 16) }
        let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                       commitPolicy: .manual)
        try chunks[0].append(to: w)
        try w.commit()
        try chunks[1].append(to: w)
        try w.close()
        let newest = try StoreReader.open(at: dir).header.commitSequence
        #expect(newest == 3)
        // Tear the newest slot: its second half never reached the disk.
        var h = readBytes(dir + "/header")
        let slot = Int(newest % 2) * headerSlotBytes
        for i in (slot + 100)..<(slot + 200) { h[i] = 0 }
        writeBytes(dir + "/header", h)
        let r = try StoreReader.open(at: dir)
        #expect(r.chunkCount == 1 && r.header.commitSequence == newest - 1)
        try expectStore(r, equals: [chunks[0]])
        let problems = r.verify()
        #expect(problems.count == 1)
        if case .headerSlotDamaged(_, 1, _, 2, 1)? = problems.first {} else { Issue.record("verify: \(problems)") }
        #expect(problems.first?.description.contains("header slot 1 is damaged") == true)
        // Resume continues from the previous commit and its next commit rewrites the damaged slot.
        let w2 = try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP)
        for c in chunks[1...] { try c.append(to: w2) }
        try w2.close()
        let healed = try StoreReader.open(at: dir)
        try expectStore(healed, equals: chunks)
        #expect(healed.verify().isEmpty)
        // Both slots damaged: nothing to fall back to.
        var both = readBytes(dir + "/header")
        both[20] ^= 1
        both[headerSlotBytes + 20] ^= 1
        writeBytes(dir + "/header", both)
        #expect(errorText { _ = try StoreReader.open(at: dir) }?.contains("header checksum mismatch") == true)
    }
}

/// Issue 13 part 1: ≥ 10,000 mutated small stores whose checksums are recomputed, through the fuzz target's
/// every entry point (open, reads, verify, refresh, resume): errors expected, never a trap.
@Suite("KV store: resealed mutations")
struct ResealedMutationTests {
    /// Values that break fields: zero, one, sign and width boundaries.
    static let extremes: [UInt64] = [0, 1, 2, 3, 15, 16, 17, 255, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 32, 1 << 56,
                                     (1 << 63) - 1, 1 << 63, .max]

    @Test func tenThousandResealedMutationsNeverTrap() throws {
        defer { fuzzKVStoreRemoveTemporaries() }
        var rng = TestRNG(seed: 13)
        for i in 0..<10_000 {
            // Byte 0: precision (bit 0), file (bits 1-3: header, pagetable, tokens, features, pages), mode 3
            // (overwrite, then re-seal every CRC). The header is mutated in its used part (slot 0, the newest).
            let file = Int(rng.next() % 5)
            let offset = file == 0 ? Int(rng.next() % 240) : Int(rng.next() % 600)
            var payload: [UInt8]
            switch rng.next() % 3 {
            case 0: payload = (0..<(1 + Int(rng.next() % 8))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 1: payload = withUnsafeBytes(of: UInt32(truncatingIfNeeded: Self.extremes[Int(rng.next() % UInt64(Self.extremes.count))])) { Array($0) }
            default: payload = withUnsafeBytes(of: Self.extremes[Int(rng.next() % UInt64(Self.extremes.count))]) { Array($0) }
            }
            let input = [UInt8(i & 1) | UInt8(file << 1) | 3 << 4, UInt8(offset & 0xFF), UInt8(offset >> 8)] + payload
            #expect(input.withUnsafeBufferPointer { fuzzKVStore($0.baseAddress, $0.count) } == 0)
        }
    }
}
