#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CStoreSupport

// Common prefix of the four data files (`pages`, `pagetable`, `features`, `tokens`), 64 bytes,
// little-endian like everything in a store:
//
//   off size
//     0  u32  magic          file-specific four-character code (see each file's Swift file)
//     4  u32  version        format version (2)
//     8  u8[16] store id     the random id in `header`: files of different stores cannot be mixed
//    24  u32  layers
//    28  u32  chunkSize
//    32  u32  floatsPerPage
//    36  u32  featureFloatsPerChunk
//    40  u32  precision      0 = f16, 1 = q8, 2 = q4
//    44  u32  record bytes   bytes per chunk record (pagetable, tokens), per chunk (features), 0 (pages)
//    48  u8[12] reserved     zero
//    60  u32  CRC32C of bytes [0, 60)
//
// The geometry is repeated so that each file can be read alone, and cross-checked against `header`.

#if _endian(big)
#error("the KV store format is little-endian; big-endian hosts are not supported")
#endif

let formatVersion: UInt32 = 2
let dataFileHeaderBytes = 64

/// Four ASCII characters as a little-endian u32 (how they appear in the file).
func magic(_ s: String) -> UInt32 {
    let b = Array(s.utf8)
    precondition(b.count == 4)
    return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
}

@inline(__always) func crc32c(_ p: UnsafeRawPointer, _ n: Int, seed: UInt32 = 0) -> UInt32 {
    cs_crc32c(seed, p, n)
}

@inline(__always) func load32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 { p.loadUnaligned(fromByteOffset: o, as: UInt32.self) }
@inline(__always) func load64(_ p: UnsafeRawPointer, _ o: Int) -> UInt64 { p.loadUnaligned(fromByteOffset: o, as: UInt64.self) }
@inline(__always) func store32(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt32) { p.storeBytes(of: v, toByteOffset: o, as: UInt32.self) }
@inline(__always) func store64(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt64) { p.storeBytes(of: v, toByteOffset: o, as: UInt64.self) }

/// Test hook told of every change a writer makes to the file system, after it succeeded, so that a test
/// can model what survives a crash (only what fsync / fdatasync / the directory fsync made durable).
protocol FileSystemObserver: AnyObject {
    func created(_ path: String)
    func wrote(_ path: String, offset: Int, bytes: UnsafeRawBufferPointer)
    func truncated(_ path: String, to size: Int)
    func synced(_ path: String)
    func renamed(_ from: String, _ to: String)
    func syncedDirectory(_ path: String)
}

/// Test hook: returns an errno to make the named operation on the named file fail as if the system
/// had refused it ("pages", "pwrite") → ENOSPC. Shared by all files of one writer.
final class FaultInjector: @unchecked Sendable {
    var fail: ((_ file: String, _ operation: String) -> Int32?)?
    /// Told of every successful change (see `FileSystemObserver`).
    weak var observer: FileSystemObserver?
    func check(_ path: String, _ op: String, offset: Int? = nil) throws {
        guard let fail else { return }
        let name = path.split(separator: "/").last.map(String.init) ?? path
        if let e = fail(name, op) { throw StoreError.io(path: path, operation: op, offset: offset, errno: e) }
    }
}

/// An open file descriptor with error-reporting wrappers; every error names the file.
final class StoreFile {
    let path: String
    let fd: Int32
    let faults: FaultInjector?

    init(path: String, fd: Int32, faults: FaultInjector?) {
        self.path = path
        self.fd = fd
        self.faults = faults
    }

    deinit { close(fd) }

    /// Opens a store file. Never through a symbolic link (O_NOFOLLOW: a link named `pages` must not make a
    /// writer write, or a reader read, a file outside the store); `create` makes a new file and fails if
    /// the name exists (O_EXCL), so creation never truncates anything.
    static func openFile(_ path: String, flags: Int32, create: Bool, faults: FaultInjector?) throws -> StoreFile {
        let fd = create ? open(path, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644) : open(path, flags | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            let reason = e == ELOOP ? "it is a symbolic link (store files are never followed)" : String(cString: strerror(e))
            if create { throw StoreError.cannotCreate(path: path, reason: reason) }
            throw StoreError.cannotOpen(path: path, reason: reason)
        }
        if create { faults?.observer?.created(path) }
        return StoreFile(path: path, fd: fd, faults: faults)
    }

    /// Writes all `count` bytes at `offset`, retrying short writes; a short write that cannot
    /// continue reports the errno of the failing call (ENOSPC on a full disk).
    func write(_ p: UnsafeRawPointer, _ count: Int, at offset: Int) throws {
        try faults?.check(path, "pwrite", offset: offset)
        var done = 0
        while done < count {
            let n = pwrite(fd, p + done, count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(path: path, operation: "write of \(count) bytes", offset: offset + done, errno: errno)
            }
            if n == 0 { throw StoreError.io(path: path, operation: "write of \(count) bytes", offset: offset + done, errno: ENOSPC) }
            done += n
        }
        faults?.observer?.wrote(path, offset: offset, bytes: UnsafeRawBufferPointer(start: p, count: count))
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { try write($0.baseAddress!, $0.count, at: offset) }
    }

    /// Reads exactly `count` bytes at `offset`.
    func read(into p: UnsafeMutableRawPointer, _ count: Int, at offset: Int, what: String) throws {
        var done = 0
        while done < count {
            let n = pread(fd, p + done, count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(path: path, operation: "read of \(what)", offset: offset + done, errno: errno)
            }
            if n == 0 { throw StoreError.truncated(path: path, what: what, neededBytes: offset + count, fileBytes: offset + done) }
            done += n
        }
    }

    func size() throws -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StoreError.io(path: path, operation: "fstat", offset: nil, errno: errno) }
        return Int(st.st_size)
    }

    func truncate(to size: Int) throws {
        try faults?.check(path, "ftruncate")
        while ftruncate(fd, off_t(size)) != 0 {
            if errno == EINTR { continue }
            throw StoreError.io(path: path, operation: "truncate to \(size) bytes", offset: nil, errno: errno)
        }
        faults?.observer?.truncated(path, to: size)
    }

    /// Makes the data durable (fdatasync also flushes the size of an appended file).
    func sync() throws {
        try faults?.check(path, "fsync")
        #if canImport(Glibc)
        let r = fdatasync(fd)
        #else
        let r = fsync(fd)
        #endif
        guard r == 0 else { throw StoreError.io(path: path, operation: "fsync", offset: nil, errno: errno) }
        faults?.observer?.synced(path)
    }
}

/// A read-only shared mapping of a growing file whose base pointer never moves for what it covers.
///
/// The mapping reserves address space beyond the end of the file (Linux maps file pages that are
/// appended later into an existing MAP_SHARED range), so appends need no remap until the reservation is
/// exhausted. Then a larger mapping is made and the old ones are kept until deinit, so pointers handed
/// out earlier stay valid for what they covered. Not thread-safe: callers serialize `cover`.
final class Mapping {
    let file: StoreFile
    private(set) var base: UnsafeRawPointer
    private(set) var capacity: Int
    private var all: [(UnsafeMutableRawPointer, Int)] = []
    private let minReserve: Int

    init(file: StoreFile, size: Int, minReserve: Int) throws {
        self.file = file
        self.minReserve = minReserve
        let cap = Mapping.reservation(for: size, minReserve: minReserve)
        let p = try Mapping.map(file, cap)
        base = UnsafeRawPointer(p)
        capacity = cap
        all.append((p, cap))
    }

    deinit { for (p, n) in all { munmap(p, n) } }

    private static func reservation(for size: Int, minReserve: Int) -> Int {
        let page = 1 << 16
        return (max(minReserve, 2 * size) + page - 1) / page * page
    }

    private static func map(_ file: StoreFile, _ n: Int) throws -> UnsafeMutableRawPointer {
        guard let p = mmap(nil, n, PROT_READ, MAP_SHARED, file.fd, 0), p != MAP_FAILED else {
            throw StoreError.io(path: file.path, operation: "mmap of \(n) bytes", offset: nil, errno: errno)
        }
        // Random access: no readahead, and no fault-around that would map neighbouring (just written)
        // pages into the process and make its RSS grow with the file.
        _ = madvise(p, n, MADV_RANDOM)
        return p
    }

    /// Unmaps the process's resident pages of `[0, size)` (they stay in the OS page cache; the next read
    /// refaults them). Keeps RSS from growing with the file however pages got mapped (reads, fault-around).
    func dropResident(_ size: Int) {
        let n = min(size, capacity) / 4096 * 4096
        if n > 0 { _ = madvise(UnsafeMutableRawPointer(mutating: base), n, MADV_DONTNEED) }
    }

    /// Makes `[0, size)` addressable from `base` (the file itself must already be that long to read it).
    func cover(_ size: Int) throws {
        guard size > capacity else { return }
        let cap = Mapping.reservation(for: size, minReserve: minReserve)
        let p = try Mapping.map(file, cap)
        all.append((p, cap))
        base = UnsafeRawPointer(p)
        capacity = cap
    }
}

/// The 64-byte prefix of a data file.
struct DataFileHeader: Equatable {
    var magic: UInt32
    var storeID: [UInt8]
    var geometry: StoreGeometry
    var recordBytes: Int

    func encode() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: dataFileHeaderBytes)
        b.withUnsafeMutableBytes { r in
            let p = r.baseAddress!
            store32(p, 0, magic)
            store32(p, 4, formatVersion)
            for i in 0..<16 { p.storeBytes(of: storeID[i], toByteOffset: 8 + i, as: UInt8.self) }
            store32(p, 24, UInt32(geometry.layers))
            store32(p, 28, UInt32(geometry.chunkSize))
            store32(p, 32, UInt32(geometry.floatsPerPage))
            store32(p, 36, UInt32(geometry.featureFloatsPerChunk))
            store32(p, 40, geometry.precision.rawValue)
            store32(p, 44, UInt32(recordBytes))
            store32(p, 60, crc32c(p, 60))
        }
        return b
    }

    /// Reads and checks the prefix of `file` against what `header` says it must be.
    static func check(_ file: StoreFile, magic expectedMagic: UInt32, header: StoreHeader, recordBytes: Int) throws {
        var b = [UInt8](repeating: 0, count: dataFileHeaderBytes)
        try b.withUnsafeMutableBytes { try file.read(into: $0.baseAddress!, dataFileHeaderBytes, at: 0, what: "file header") }
        try b.withUnsafeBytes { r in
            let p = r.baseAddress!
            let m = load32(p, 0)
            guard m == expectedMagic else { throw StoreError.notAStore(path: file.path, expectedMagic: expectedMagic, foundMagic: m) }
            let stored = load32(p, 60), computed = crc32c(p, 60)
            guard stored == computed else {
                throw StoreError.checksumMismatch(path: file.path, what: "file header", offset: 0, expected: stored, found: computed)
            }
            let v = load32(p, 4)
            guard v == formatVersion else { throw StoreError.unsupportedVersion(path: file.path, supported: formatVersion, found: v) }
            let id = Array(r[8..<24])
            guard id == header.storeID else { throw StoreError.foreignFile(path: file.path, expectedStore: header.storeID, foundStore: id) }
            let g = header.geometry
            let pairs: [(String, Int, Int)] = [
                ("layers", g.layers, Int(load32(p, 24))), ("chunkSize", g.chunkSize, Int(load32(p, 28))),
                ("floatsPerPage", g.floatsPerPage, Int(load32(p, 32))),
                ("featureFloatsPerChunk", g.featureFloatsPerChunk, Int(load32(p, 36))),
                ("precision", Int(g.precision.rawValue), Int(load32(p, 40))), ("record bytes", recordBytes, Int(load32(p, 44))),
            ]
            for (name, e, f) in pairs where e != f {
                throw StoreError.geometryMismatch(path: file.path, field: name, expected: e, found: f)
            }
        }
    }
}

/// Memory for large buffers taken straight from the kernel (anonymous mmap) instead of malloc.
///
/// Freeing a block malloc got from mmap raises glibc's mmap threshold to its size, after which blocks up to
/// that size come from the heaps, where freed ones stay resident: the process's RSS would then ratchet up
/// with each session that allocates and frees page-sized buffers. Mapped memory is returned exactly.
enum LargeAllocation {
    /// `bytes` zero-filled bytes, page-aligned.
    static func allocate(_ bytes: Int) -> UnsafeMutableRawPointer {
        guard let p = mmap(nil, max(bytes, 1), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            fatalError("out of memory: mmap of \(bytes) bytes failed (errno \(errno))")
        }
        return p
    }

    static func deallocate(_ p: UnsafeMutableRawPointer, _ bytes: Int) { munmap(p, max(bytes, 1)) }

    /// Runs `body` with a temporary buffer of `bytes` (from malloc when small).
    static func withBuffer<R>(_ bytes: Int, _ body: (UnsafeMutableRawPointer) throws -> R) rethrows -> R {
        if bytes <= 64 << 10 {
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
            defer { p.deallocate() }
            return try body(p)
        }
        let p = allocate(bytes)
        defer { deallocate(p, bytes) }
        return try body(p)
    }
}

func closeFD(_ fd: Int32) { _ = close(fd) }

func errnoText(_ e: Int32) -> String { String(cString: strerror(e)) }

func joinPath(_ dir: String, _ name: String) -> String { dir.hasSuffix("/") ? dir + name : dir + "/" + name }

/// The directory that holds `path` ("." for a bare relative name, "/" for a name at the root), computed
/// on the path's bytes as POSIX dirname(3) does. Not `NSString.deletingLastPathComponent`: on Linux
/// Foundation it traps on one-character relative paths such as "x" (issue 14).
func parentDirectory(of path: String) -> String {
    var bytes = Array(path.utf8)
    while bytes.count > 1, bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
    guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return "." }
    var end = slash
    while end > 0, bytes[end - 1] == UInt8(ascii: "/") { end -= 1 }
    return end == 0 ? "/" : String(decoding: bytes[..<end], as: UTF8.self)
}

/// fsync of a directory: makes a rename or a file creation in it durable.
func syncDirectory(_ path: String, faults: FaultInjector?) throws {
    try faults?.check(path, "fsync directory")
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw StoreError.io(path: path, operation: "open directory", offset: nil, errno: errno) }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw StoreError.io(path: path, operation: "fsync directory", offset: nil, errno: errno) }
    faults?.observer?.syncedDirectory(path)
}
