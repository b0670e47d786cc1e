#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CStoreSupport
import Foundation

/// Errors of a corpus, each naming the file (and field) it is about. The CLI maps `exitCode`.
public enum CorpusError: Error, CustomStringConvertible, Equatable {
    /// A corpus file is damaged or crafted: `field` is what failed its check (exit 65).
    case invalid(path: String, field: String, reason: String)
    /// DIR holds no corpus (no manifest): ingest into it first (exit 66).
    case notACorpus(path: String)
    /// A corpus file could not be written (exit 74).
    case cannotWrite(path: String, reason: String)
    /// A source could not be read, or a range is outside it (exit 66).
    case cannotRead(path: String, reason: String)
    /// The request does not fit the corpus: another model, a bad range (exit 65).
    case mismatch(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalid(let p, let f, let r): "\(p): field `\(f)`: \(r)"
        case .notACorpus(let p): "\(p): not a corpus (no manifest): build one with longheads ingest --corpus \(p) FILE…"
        case .cannotWrite(let p, let r): "\(p): cannot write: \(r)"
        case .cannotRead(let p, let r): "\(p): cannot read: \(r)"
        case .mismatch(let p, let r): "\(p): \(r)"
        }
    }

    /// The documented exit code (Docs/CLI.md).
    public var exitCode: Int32 {
        switch self {
        case .invalid, .mismatch: 65
        case .notACorpus, .cannotRead: 66
        case .cannotWrite: 74
        }
    }
}

/// The frame of every corpus file (`segments/ID.seg`, `manifest`, `index`): a fixed header, the payload and a
/// CRC32C (Castagnoli, as the KV store's files use) of everything before it. Little-endian:
///
/// ```
/// offset  size  field
///      0     8  magic: "LHCSEG\0\0" (segment record), "LHCMANI\0" (manifest), "LHCINDX\0" (index)
///      8     4  u32 format version (1)
///     12     4  u32 reserved, 0
///     16     8  u64 payload length L (≤ 2^40)
///     24     L  payload (JSON for records and the manifest; the index's tables, CorpusIndex.swift)
///   24+L     4  u32 CRC32C of bytes 0 ..< 24+L
/// ```
/// The file is exactly 28 + L bytes: anything else is damage (a torn write cannot pass, the files are
/// only ever replaced whole by rename).
public enum SealedFile {
    /// Current version of every corpus file.
    public static let version: UInt32 = 1
    static let headerBytes = 24

    /// The framed bytes of `payload`.
    public static func seal(magic: String, payload: [UInt8]) -> [UInt8] {
        var out = [UInt8](magic.utf8)
        precondition(out.count <= 8)
        out += [UInt8](repeating: 0, count: 8 - out.count)
        appendLE(&out, version)
        appendLE(&out, UInt32(0))
        appendLE(&out, UInt64(payload.count))
        out += payload
        let crc = out.withUnsafeBytes { cs_crc32c(0, $0.baseAddress, $0.count) }
        appendLE(&out, crc)
        return out
    }

    /// The payload of `bytes` (read from `path`), after checking magic, version, length and CRC.
    public static func open(_ bytes: UnsafeRawBufferPointer, magic: String, path: String) throws -> UnsafeRawBufferPointer {
        func bad(_ field: String, _ reason: String) -> CorpusError { .invalid(path: path, field: field, reason: reason) }
        guard bytes.count >= headerBytes + 4 else { throw bad("length", "truncated: \(bytes.count) bytes, a corpus file has at least 28") }
        var m = [UInt8](magic.utf8)
        m += [UInt8](repeating: 0, count: 8 - m.count)
        guard Array(bytes[0..<8]) == m else { throw bad("magic", "not a longheads corpus file of this kind (expected \(magic))") }
        let v: UInt32 = readLE(bytes, 8)
        guard v == version else { throw bad("version", "format version \(v); this build reads version \(version)") }
        let length: UInt64 = readLE(bytes, 16)
        guard length <= 1 << 40, Int(length) == bytes.count - headerBytes - 4 else {
            throw bad("length", "payload length \(length), but the file holds \(bytes.count) bytes (truncated or damaged)")
        }
        let stored: UInt32 = readLE(bytes, bytes.count - 4)
        let crc = cs_crc32c(0, bytes.baseAddress, bytes.count - 4)
        guard crc == stored else { throw bad("crc32c", String(format: "checksum %08x, the file records %08x (damaged)", crc, stored)) }
        return UnsafeRawBufferPointer(rebasing: bytes[headerBytes..<(bytes.count - 4)])
    }

    /// Reads the payload of the file at `path` (a copy).
    public static func read(path: String, magic: String) throws -> [UInt8] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw CorpusError.cannotRead(path: path, reason: ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError)?.localizedDescription
                                            ?? error.localizedDescription)
        }
        return try data.withUnsafeBytes { Array(try open($0, magic: magic, path: path)) }
    }

    /// Writes `bytes` to `path` crash-safely: a private temporary name in the same directory, fsync, rename
    /// over `path`, fsync of the directory. Readers see the old file or the new one, never a part; two
    /// writers of the same bytes (a retried or speculative task) both succeed with the same result.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let tmp = path + ".tmp-\(hostName())-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CorpusError.cannotWrite(path: tmp, reason: String(cString: strerror(errno))) }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        do {
            defer { close(fd) }
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + off, bytes.count - off, off_t(off)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw CorpusError.cannotWrite(path: tmp, reason: String(cString: strerror(errno))) }
                off += n
            }
            guard fsync(fd) == 0 else { throw CorpusError.cannotWrite(path: tmp, reason: "fsync: " + String(cString: strerror(errno))) }
        }
        guard rename(tmp, path) == 0 else { throw CorpusError.cannotWrite(path: path, reason: "rename: " + String(cString: strerror(errno))) }
        ok = true
        try syncDirectory(dir)
    }

    /// fsync of a directory, so that a rename or creation in it survives a power loss.
    public static func syncDirectory(_ dir: String) throws {
        let d = Glibc.open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard d >= 0 else { throw CorpusError.cannotWrite(path: dir, reason: String(cString: strerror(errno))) }
        defer { close(d) }
        guard fsync(d) == 0 else { throw CorpusError.cannotWrite(path: dir, reason: "fsync: " + String(cString: strerror(errno))) }
    }

    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, 255)
        let s = String(cString: buf).filter { $0.isLetter || $0.isNumber || $0 == "-" }
        return s.isEmpty ? "host" : String(s.prefix(64))
    }
}

func appendLE<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
    withUnsafeBytes(of: v.littleEndian) { out += $0 }
}

func readLE<T: FixedWidthInteger>(_ b: UnsafeRawBufferPointer, _ offset: Int) -> T {
    var v = T.zero
    withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: b[offset..<(offset + MemoryLayout<T>.size)])) }
    return T(littleEndian: v)
}

/// CRC32C of `b`.
func crc32c(_ b: UnsafeRawBufferPointer) -> UInt32 { cs_crc32c(0, b.baseAddress, b.count) }
