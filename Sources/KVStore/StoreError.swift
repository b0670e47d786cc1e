#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything that can go wrong with a KV store; each case names the file and, where it applies, the
/// page (chunk, layer), the byte offset and the expected and found values.
public enum StoreError: Error, CustomStringConvertible, Equatable {
    /// The store directory or one of its files could not be created.
    case cannotCreate(path: String, reason: String)
    /// A new store was not created because the directory is not safe to write into: it holds files that
    /// are not a store's, or a store file name is a symbolic link (CLI exit 73). Nothing was written.
    case refusedDirectory(path: String, reason: String)
    /// The store directory or one of its files could not be opened.
    case cannotOpen(path: String, reason: String)
    /// Bad magic: the file is not (this kind of) store file.
    case notAStore(path: String, expectedMagic: UInt32, foundMagic: UInt32)
    /// The file was written by another format version.
    case unsupportedVersion(path: String, supported: UInt32, found: UInt32)
    /// One of the two header slots is damaged (a torn commit, bit rot): the store is read at the commit in
    /// the other slot (`usedSequence`, `usedChunks`); anything the damaged slot committed later is lost.
    case headerSlotDamaged(path: String, slot: Int, cause: String, usedSequence: UInt64, usedChunks: Int)
    /// The `header` file's CRC does not match its contents.
    case headerChecksumMismatch(path: String, expected: UInt32, found: UInt32)
    /// The store was built for another model (fingerprints differ).
    case modelMismatch(path: String, expected: [UInt8], found: [UInt8])
    /// A geometry number differs between the caller's expectation (or the header) and the file.
    case geometryMismatch(path: String, field: String, expected: Int, found: Int)
    /// A data file carries another store's id: files from different stores were mixed.
    case foreignFile(path: String, expectedStore: [UInt8], foundStore: [UInt8])
    /// A checksummed record other than a page (file header, page-table record, tokens, features) is damaged.
    case checksumMismatch(path: String, what: String, offset: Int, expected: UInt32, found: UInt32)
    /// A page's header or compressed bytes are damaged.
    case pageChecksumMismatch(path: String, chunk: Int, layer: Int, offset: Int, expected: UInt32, found: UInt32)
    /// A file is shorter than the committed state requires.
    case truncated(path: String, what: String, neededBytes: Int, fileBytes: Int)
    /// The LZ4 block of a page did not decode to the expected size.
    case decompressionFailed(path: String, chunk: Int, layer: Int, offset: Int, reason: String)
    /// Two records that must agree do not (e.g. a page header names another chunk than the page table).
    case inconsistent(path: String, what: String, offset: Int, expected: String, found: String)
    /// A system call failed; `errno` is kept (ENOSPC prints as "disk full").
    case io(path: String, operation: String, offset: Int?, errno: Int32)
    /// Another writer holds the store.
    case locked(path: String)
    /// The caller passed something the store cannot take (wrong sizes, chunk out of range, ...).
    case invalidArgument(String)
    /// The writer stopped after an earlier failure; reopen it with `StoreWriter.resume`.
    case writerFailed(path: String, cause: String)
    /// The page cache cannot hold one more page without evicting a pinned one.
    case cacheBudgetExceeded(budgetBytes: Int, pinnedBytes: Int, neededBytes: Int)

    public var description: String {
        switch self {
        case .cannotCreate(let p, let r): return "\(p): cannot create KV store: \(r)"
        case .refusedDirectory(let p, let r): return "\(p): refusing to create a KV store here: \(r); nothing was written"
        case .cannotOpen(let p, let r): return "\(p): cannot open KV store: \(r)"
        case .notAStore(let p, let e, let f):
            return "\(p): not a KV store file (magic \(hex32(f)) \(fourCC(f)), expected \(hex32(e)) \(fourCC(e)))"
        case .unsupportedVersion(let p, let s, let f):
            return "\(p): KV store format version \(f) is not supported (this build reads version \(s)): ingest the document again into a new store"
        case .headerSlotDamaged(let p, let slot, let cause, let seq, let chunks):
            return "\(p): header slot \(slot) is damaged (\(cause)); the store is read at the previous commit, sequence \(seq) "
                + "(\(chunks) chunks), from the other slot"
        case .headerChecksumMismatch(let p, let e, let f):
            return "\(p): header checksum mismatch (stored CRC32C \(hex32(e)), computed \(hex32(f))): the header is damaged"
        case .modelMismatch(let p, let e, let f):
            return "\(p): KV store was built for another model (fingerprint \(shortHex(f)), expected \(shortHex(e)))"
        case .geometryMismatch(let p, let field, let e, let f):
            return "\(p): geometry mismatch: \(field) is \(f), expected \(e)"
        case .foreignFile(let p, let e, let f):
            return "\(p): file belongs to another store (store id \(shortHex(f)), expected \(shortHex(e)))"
        case .checksumMismatch(let p, let what, let o, let e, let f):
            return "\(p): checksum mismatch in \(what) at offset \(o) (stored CRC32C \(hex32(e)), computed \(hex32(f)))"
        case .pageChecksumMismatch(let p, let c, let l, let o, let e, let f):
            return "\(p): page chunk \(c) layer \(l) at offset \(o) is damaged (stored CRC32C \(hex32(e)), computed \(hex32(f)))"
        case .truncated(let p, let what, let n, let s):
            return "\(p): truncated: \(what) needs \(n) bytes but the file has \(s)"
        case .decompressionFailed(let p, let c, let l, let o, let r):
            return "\(p): page chunk \(c) layer \(l) at offset \(o) does not decompress: \(r)"
        case .inconsistent(let p, let what, let o, let e, let f):
            return "\(p): inconsistent \(what) at offset \(o): expected \(e), found \(f)"
        case .io(let p, let op, let o, let e):
            let reason = e == ENOSPC ? "disk full (ENOSPC)" : "\(String(cString: strerror(e))) (errno \(e))"
            return "\(p): \(op)\(o.map { " at offset \($0)" } ?? "") failed: \(reason)"
        case .locked(let p): return "\(p): KV store is open for writing by another writer"
        case .invalidArgument(let m): return "KV store: \(m)"
        case .writerFailed(let p, let c):
            return "\(p): the writer stopped after an earlier error (\(c)); reopen with StoreWriter.resume to continue from the last commit"
        case .cacheBudgetExceeded(let b, let p, let n):
            return "page cache budget of \(b) bytes exceeded: \(p) bytes are pinned and \(n) more are needed; release pages or raise the budget"
        }
    }

    /// True when a new store was refused (the directory is not empty, or a name in it is a symbolic link).
    public var isRefusedCreation: Bool {
        if case .refusedDirectory = self { return true }
        return false
    }

    /// True for the ENOSPC case, so callers can tell "disk full" from damage.
    public var isDiskFull: Bool {
        if case .io(_, _, _, let e) = self { return e == ENOSPC }
        return false
    }
}

func hex32(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
}

/// The first 8 bytes as hex and an ellipsis: enough to tell fingerprints apart in a message.
func shortHex(_ bytes: [UInt8]) -> String {
    let head = bytes.prefix(8).map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
    return bytes.count > 8 ? head + "…" : head
}

func fourCC(_ v: UInt32) -> String {
    let bytes = (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xff) }
    guard bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else { return "" }
    return "\"" + String(decoding: bytes, as: UTF8.self) + "\""
}
