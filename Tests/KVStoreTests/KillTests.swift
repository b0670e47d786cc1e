import Foundation
import Testing
@testable import KVStore

#if canImport(Glibc)
import Glibc
#endif

/// A real `kill -9` during an ingest: the test binary runs itself as a child that ingests until killed
/// (the `ingestUntilKilled` test, enabled only in the child), the parent kills it at a random moment,
/// then checks that the store holds exactly a committed prefix and that an ingest can resume.
@Suite("KV store: kill -9")
struct KillTests {
    static let childDirVariable = "KVSTORE_KILL9_DIR"
    static let geometry = smallGeometry(layers: 2)

    static func chunk(_ c: Int) -> ChunkData { ChunkData(geometry: geometry, chunk: c, tokens: 16, seed: 9) }

    /// The child's work: create the store and append chunks, committing every 3, until killed.
    @Test(.enabled(if: ProcessInfo.processInfo.environment[childDirVariable] != nil))
    func ingestUntilKilled() throws {
        let dir = ProcessInfo.processInfo.environment[Self.childDirVariable]!
        let w = try StoreWriter.create(at: dir, geometry: Self.geometry, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                       commitPolicy: CommitPolicy(maxPendingChunks: 3, maxSeconds: 3600))
        let deadline = Date().addingTimeInterval(30)  // never outlive a parent that died
        var c = 0
        while Date() < deadline {
            try Self.chunk(c).append(to: w)
            c += 1
        }
    }

    @Test(.disabled(if: ProcessInfo.processInfo.environment[childDirVariable] != nil))
    func killNineDuringIngestLeavesACommittedPrefix() throws {
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var rng = TestRNG(seed: UInt64(getpid()))
        for round in 0..<3 {
            let base = makeTempDir()
            defer { cleanup(base) }
            let dir = base + "/store"
            let child = Process()
            child.executableURL = URL(fileURLWithPath: exe)
            child.arguments = ["--testing-library", "swift-testing", "--filter", "ingestUntilKilled"]
            var env = ProcessInfo.processInfo.environment
            env[Self.childDirVariable] = dir
            child.environment = env
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try child.run()
            // Wait for a few commits, then kill at a random instant.
            let start = Date()
            while (try? HeaderFile.read(dir: dir).chunkCount) ?? 0 < 6 && Date().timeIntervalSince(start) < 20 {
                usleep(2000)
            }
            usleep(UInt32(rng.next() % 60_000))
            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()
            #expect(child.terminationReason == .uncaughtSignal, "round \(round): the child ended before the kill")

            let r = try StoreReader.open(at: dir, expectedModelFingerprint: modelFP)
            let k = r.chunkCount
            #expect(k >= 6 && k % 3 == 0, "round \(round): \(k) chunks committed")
            try expectStore(r, equals: (0..<k).map(Self.chunk))
            #expect(r.verify().isEmpty, "round \(round)")
            let w = try StoreWriter.resume(at: dir, expectedModelFingerprint: modelFP)
            for c in k..<(k + 4) { try Self.chunk(c).append(to: w) }
            try w.close()
            let after = try StoreReader.open(at: dir)
            try expectStore(after, equals: (0..<(k + 4)).map(Self.chunk))
            #expect(after.verify().isEmpty)
        }
    }
}
