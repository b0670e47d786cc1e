#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// `features` file: the 64-byte data-file prefix (FileSupport.swift; magic "LHFT", record bytes
// 4 × featureFloatsPerChunk), then [chunks][featureFloatsPerChunk] float32, uncompressed, chunk c at
// 64 + c × 4 × featureFloatsPerChunk. Readers map it and hand out one contiguous pointer (the data starts
// 64 bytes into a page-aligned mapping, so it is 64-byte aligned). Each chunk's CRC32C is in its
// page-table record (PageTableFile.swift).

let featuresMagic = magic("LHFT")

enum FeaturesFile {
    static func offset(chunk: Int, floats: Int) -> Int { dataFileHeaderBytes + chunk * 4 * floats }
}

/// A layer-major copy of the features, for scans that read one layer of every chunk (LongHeads selection
/// reads layer l of all chunks at each block of tokens and layer). Not part of the store: an unlinked
/// temporary file private to one open store, filled from `features` on demand, mapped read-only.
///
/// Why: in `features` a chunk's rows of all layers are contiguous, so a scan of one layer touches a page or
/// two of every chunk's record; through the mapping, every page touched by any layer's scan stays resident
/// and the process's RSS grows with the document (by the size of `features`), while reading the rows one
/// `pread` per chunk costs a system call per row. Here the rows of one layer are contiguous for `group`
/// chunks at a time: a scan faults in just the bytes it reads (a few large runs, which the kernel maps
/// 64 KiB at a time), and `StoreCore.featureRows` drops them again at the next scan, so at most one scan's
/// rows are resident. The file's pages live in the OS page cache, like the store's own files.
///
/// Layout: groups of `group` chunks, group g at g × layers × group × rowBytes; inside a group, layer l at
/// l × group × rowBytes, chunk (c mod group) at (c mod group) × rowBytes. Rows past the copied chunks are
/// holes or stale.
final class LayerMajorFeatures {
    let file: StoreFile
    let map: Mapping
    let layers: Int
    let rowBytes: Int
    let group: Int
    /// Chunks copied so far (their rows are current).
    var chunks = 0
    /// Bytes written (the end of the last written row).
    private(set) var end = 0
    /// What the last scan handed out (and may have made resident): mapping base and byte range.
    var lastScan: (base: UnsafeRawPointer, range: Range<Int>)?

    private init(file: StoreFile, layers: Int, rowBytes: Int, group: Int) throws {
        self.file = file
        self.layers = layers
        self.rowBytes = rowBytes
        self.group = group
        // Address space for 16 groups before the first remap (it costs nothing until touched).
        map = try Mapping(file: file, size: 0, minReserve: 16 * layers * group * rowBytes)
    }

    func offset(layer: Int, chunk: Int) -> Int {
        (chunk / group) * layers * group * rowBytes + layer * group * rowBytes + (chunk % group) * rowBytes
    }

    /// An unlinked temporary file in `dir` (the store's directory, so the copy lives on the same device),
    /// or in the system's temporary directory when `dir` is not writable.
    static func create(storeDir dir: String, layers: Int, rowBytes: Int, group: Int = 128) throws -> LayerMajorFeatures {
        #if os(Linux)
        // O_TMPFILE (not imported into Swift): __O_TMPFILE | O_DIRECTORY.
        let oTmpfile: Int32 = 0o20000000 | O_DIRECTORY
        for d in [dir, NSTemporaryDirectory()] {
            let fd = open(d, O_RDWR | O_CLOEXEC | oTmpfile, 0o600)
            if fd >= 0 {
                return try LayerMajorFeatures(file: StoreFile(path: joinPath(d, "(layer-major features)"), fd: fd, faults: nil),
                                              layers: layers, rowBytes: rowBytes, group: group)
            }
        }
        #endif
        var lastError: Int32 = 0
        for d in [dir, NSTemporaryDirectory()] {
            var template = Array(joinPath(d, ".layer-major-features.XXXXXX").utf8CString)
            let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            if fd >= 0 {
                let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                unlink(path)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                return try LayerMajorFeatures(file: StoreFile(path: path, fd: fd, faults: nil), layers: layers, rowBytes: rowBytes, group: group)
            }
            lastError = errno
        }
        throw StoreError.cannotCreate(path: joinPath(dir, "(layer-major features)"), reason: errnoText(lastError))
    }

    /// Copies the features of chunks `chunks..<upTo` from `source` (the `features` file), a batch of
    /// chunks of one group at a time: one read, then one write per layer.
    func fill(upTo newEnd: Int, from source: StoreFile, chunkBytes: Int) throws {
        guard chunks < newEnd else { return }
        let batchMax = min(group, newEnd - chunks, max(1, (1 << 21) / chunkBytes))  // ≤ 2 MiB read at once
        try LargeAllocation.withBuffer(batchMax * chunkBytes) { records in
            try LargeAllocation.withBuffer(batchMax * rowBytes) { rows in
                while chunks < newEnd {
                    let c0 = chunks
                    let n = min(batchMax, newEnd - c0, group - c0 % group)
                    try source.read(into: records, n * chunkBytes, at: FeaturesFile.offset(chunk: c0, floats: chunkBytes / 4),
                                    what: "features of chunks \(c0)..<\(c0 + n)")
                    for l in 0..<layers {
                        for x in 0..<n { (rows + x * rowBytes).copyMemory(from: records + x * chunkBytes + l * rowBytes, byteCount: rowBytes) }
                        try file.write(rows, n * rowBytes, at: offset(layer: l, chunk: c0))
                    }
                    end = max(end, offset(layer: layers - 1, chunk: c0 + n - 1) + rowBytes)
                    chunks = c0 + n
                }
            }
        }
        try map.cover(end)
    }
}
