import Foundation
import Testing
@testable import KVStore

/// What survives a crash under POSIX's promise and nothing more (issue 13 part 5): a file's contents as of
/// its last fsync/fdatasync, and the directory's names as of its last fsync; everything else — writes,
/// truncations, creations and renames not yet made durable — is lost. Kept by inode, so that a synced file
/// renamed later keeps its synced contents under whichever name the directory's last fsync recorded.
/// (The OS page cache keeps unsynced writes across kill -9; only a power loss or kernel crash drops them,
/// which is what this model simulates.)
final class DurabilityModel: FileSystemObserver {
    let dir: String
    /// inode → contents at its last sync.
    private var data: [UInt64: [UInt8]] = [:]
    /// name → inode at the directory's last fsync.
    private var names: [String: UInt64]
    /// Whether `dir`'s own entry in its parent is durable (a directory made by `create` becomes durable with
    /// the parent's fsync).
    private var dirIsDurable: Bool

    /// `dir`'s present entries are durable; a `dir` that does not exist yet is durable once its parent is synced.
    init(dir: String) {
        self.dir = dir
        names = [:]
        dirIsDurable = access(dir, F_OK) == 0
        for n in Self.entries(dir) {
            names[n] = Self.inode(dir + "/" + n)
            data[names[n]!] = readBytes(dir + "/" + n)
        }
    }

    static func entries(_ dir: String) -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] }
    static func inode(_ path: String) -> UInt64 {
        var st = stat()
        return lstat(path, &st) == 0 ? UInt64(st.st_ino) : 0
    }

    func created(_ path: String) {}
    func wrote(_ path: String, offset: Int, bytes: UnsafeRawBufferPointer) {}
    func truncated(_ path: String, to size: Int) {}
    func renamed(_ from: String, _ to: String) {}
    func synced(_ path: String) { data[Self.inode(path)] = readBytes(path) }
    func syncedDirectory(_ path: String) {
        if path == parentDirectory(of: dir) && access(dir, F_OK) == 0 { dirIsDurable = true }
        guard path == dir else { return }
        names = [:]
        for n in Self.entries(dir) { names[n] = Self.inode(dir + "/" + n) }
    }

    /// Replaces the directory's contents by what was durable: the power went out.
    func crash() {
        for n in Self.entries(dir) { unlink(dir + "/" + n) }
        guard dirIsDurable else {
            rmdir(dir)
            return
        }
        for (n, ino) in names { writeBytes(dir + "/" + n, data[ino] ?? []) }
    }
}

@Suite("KV store: crashes that drop unsynced writes")
struct DroppedWritesTests {
    static let geometry = smallGeometry(layers: 2)
    static let chunks = (0..<5).map { ChunkData(geometry: geometry, chunk: $0, tokens: $0 == 4 ? 9 : 16) }
    static let blob = Array("{\"doc\":1}".utf8)

    /// Appends `chunks[from...]` through `w`, committing every 2 chunks; `committed` follows the commits that returned.
    static func ingest(_ w: StoreWriter, from: Int, committed: inout Int) throws {
        for i in from..<chunks.count {
            try chunks[i].append(to: w)
            if w.committedChunkCount > committed { committed = w.committedChunkCount }
        }
        try w.updateBlob(blob)
        try w.close()
        committed = chunks.count
    }

    /// The store's contents that do not depend on its random id or its number of commits.
    static func contents(_ dir: String) throws -> [String] {
        let r = try StoreReader.open(at: dir, expectedModelFingerprint: modelFP)
        let h = r.header
        var out = ["\(h.chunkCount) \(h.tokenCount) \(h.sourceBytesConsumed) \(h.pagesBytes) \(h.flags) \(h.blob) \(h.geometry)"]
        for f in ["pages", "pagetable", "features", "tokens"] { out.append("\(f): \(readBytes(dir + "/" + f).dropFirst(dataFileHeaderBytes))") }
        return out
    }

    /// Crash (dropping everything not yet synced) at every write, truncate, sync, rename and directory sync of
    /// a small ingest (create, making the store's directory, 5 chunks committed 2 at a time, the description updated, close). After each:
    /// every commit that returned is still there, and reopen + resume (or a new creation, when the crash came
    /// before the store existed) + the rest of the ingest gives a store identical to an uninterrupted one.
    @Test func crashAtEveryCallThenResumeEqualsUninterrupted() throws {
        let root = makeTempDir()
        defer { cleanup(root) }
        let reference = root + "/reference"
        mkdir(reference, 0o755)
        var refCommitted = 0
        try Self.ingest(StoreWriter.create(at: reference, geometry: Self.geometry, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                           flags: 3, blob: [], commitPolicy: CommitPolicy(maxPendingChunks: 2, maxSeconds: 3600)),
                        from: 0, committed: &refCommitted)
        let expected = try Self.contents(reference)
        var n = 0
        var finished = false
        while !finished {
            // A directory `create` makes (so its entry in the parent must be made durable too).
            let dir = root + "/crash\(n)"
            defer { cleanup(dir) }
            let model = DurabilityModel(dir: dir)
            let faults = FaultInjector()
            faults.observer = model
            var calls = 0
            faults.fail = { _, _ in
                calls += 1
                return calls == n + 1 ? EIO : nil
            }
            var committed = -1  // -1: the store's creation did not return
            do {
                let w = try StoreWriter.create(at: dir, geometry: Self.geometry, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                               flags: 3, blob: [], commitPolicy: CommitPolicy(maxPendingChunks: 2, maxSeconds: 3600),
                                               faults: faults)
                committed = 0
                try Self.ingest(w, from: 0, committed: &committed)
                finished = true
            } catch {
                #expect("\(error)".contains("Input/output error"), "crash \(n): \(error)")
            }
            model.crash()
            // After the crash: every commit that returned is there.
            let visible: Int
            if FileManager.default.fileExists(atPath: dir + "/header") {
                let r = try StoreReader.open(at: dir, expectedModelFingerprint: modelFP)
                #expect(r.verify().isEmpty, "crash \(n)")
                visible = r.chunkCount
                try expectStore(r, equals: Array(Self.chunks[0..<visible]))
            } else {
                #expect(committed < 0, "crash \(n): the store's creation returned, but no header survived")
                visible = -1
            }
            #expect(visible >= committed, "crash \(n): \(committed) chunks were committed, \(visible) survived")
            // Reopen and finish the ingest.
            var again = 0
            let w = visible < 0
                ? try StoreWriter.create(at: dir, geometry: Self.geometry, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                         flags: 3, blob: [], commitPolicy: CommitPolicy(maxPendingChunks: 2, maxSeconds: 3600))
                : try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP, commitPolicy: CommitPolicy(maxPendingChunks: 2, maxSeconds: 3600))
            if w.lastChunkIsPartial { try w.truncate(toChunkCount: w.chunkCount - 1) }
            try Self.ingest(w, from: w.chunkCount, committed: &again)
            #expect(try Self.contents(dir) == expected, "crash \(n): the resumed store differs from an uninterrupted one")
            #expect(try StoreReader.open(at: dir).verify().isEmpty, "crash \(n)")
            n += 1
        }
        #expect(n > 30, "only \(n) crash points")
    }
}
