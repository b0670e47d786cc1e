// libFuzzer target: the store decoders. Compiled into the KVStore module itself (Scripts/fuzz.sh), so
// it can re-seal CRCs with the module's own crc32c and reach past them into the fields they protect.
//
// A small valid store is made once per precision (3 chunks, the last partial). Each input then damages
// one file of a copy: byte 0 picks the precision (bit 0), the file (bits 1-3) and the damage (bits 4-5):
// replace the whole file by the rest of the input, overwrite at an offset (bytes 1-2), cut the file at
// that offset, or overwrite and re-seal the header's / records' CRCs (so the fields they guard are
// decoded). The copy is then opened and read through every public entry point (tokens, byte ranges,
// pages, feature rows, verify, refresh) and resumed for writing. Errors are expected; traps are not.
#if canImport(Glibc)
import Glibc
#endif
#if !FUZZING
@testable import KVStore  // in the fuzz build this file is part of the KVStore module
#endif

// The quantized store uses q4, the default, with the smallest chunk its key groups allow (16 tokens).
private let fuzzGeometry = [(KVPrecision.f16, 4), (.q4, 16)].map {
    StoreGeometry(layers: 2, kvHeads: 1, queryHeads: 2, headDim: 8, chunkSize: $0.1, precision: $0.0)
}
private let fuzzFingerprint = [UInt8](repeating: 7, count: 32)
private let fuzzFiles = ["header", "pagetable", "tokens", "features", "pages"]

private func fuzzTempDir(_ tag: String) -> String {
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    return "\(base)/lh-fuzz-kv-\(getpid())-\(tag)"
}

private func readWhole(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

private func writeWhole(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot write \(path)")
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

/// The files of a valid store of each precision.
nonisolated(unsafe) private var templates: [[[UInt8]]] = fuzzGeometry.enumerated().map { i, g in
    let dir = fuzzTempDir("template\(i)")
    for f in fuzzFiles + ["header.tmp", "header.new", "lock"] { unlink(dir + "/" + f) }
    rmdir(dir)
    let w = try! StoreWriter.create(at: dir, geometry: g, modelFingerprint: fuzzFingerprint, tokenizerFingerprint: fuzzFingerprint,
                                    blob: Array("{\"fuzz\":1}".utf8), commitPolicy: .manual)
    for c in 0..<3 {
        let n = c == 2 ? 2 : g.chunkSize
        let pages = (0..<g.layers).map { l in
            UnsafeBufferPointer<Float>((0..<g.floatsPerPage).map { Float(($0 * 7 + l * 3 + c) % 23) - 11 }.withUnsafeBufferPointer {
                let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.count)
                _ = b.initialize(from: $0)
                return b
            })
        }
        let features = (0..<g.featureFloatsPerChunk).map { Float($0 % 5) }
        features.withUnsafeBufferPointer { f in
            try! w.append(ChunkRecord(tokens: (0..<n).map { Int32(c * 10 + $0) }, byteRange: UInt64(c * 4 * g.chunkSize)..<UInt64(c * 4 * g.chunkSize + n * 4),
                                      pages: pages, features: f))
        }
        for p in pages { p.deallocate() }
    }
    try! w.close()
    return fuzzFiles.map { readWhole(dir + "/" + $0) }
}

/// Recomputes the CRC that ends the header and each fixed-size record of the page table and tokens.
private func reseal(_ bytes: inout [UInt8], file: String, geometry g: StoreGeometry) {
    bytes.withUnsafeMutableBytes { r in
        guard let p = r.baseAddress else { return }
        func seal(_ start: Int, _ n: Int) { if n >= 4 && start + n <= r.count { store32(p + start, n - 4, crc32c(p + start, n - 4)) } }
        switch file {
        case "header":
            // Format 2: two slots, each sealed over its own used length (when that length is plausible).
            for slot in [0, headerSlotBytes] where slot + 12 <= r.count {
                let used = Int(load32(p + slot, 8))
                if used <= headerSlotBytes { seal(slot, min(used, r.count - slot)) }
            }
        case "pagetable", "tokens":
            let n = file == "tokens" ? TokensRecord.bytes(chunkSize: g.chunkSize) : PageTableRecord.bytes(layers: g.layers)
            var o = dataFileHeaderBytes
            while o + n <= r.count { seal(o, n); o += n }
        default: break
        }
    }
}

#if FUZZING
/// libFuzzer's entry point (Scripts/fuzz.sh builds with -D FUZZING; the unit tests call `fuzzKVStore` directly).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEntry(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt { fuzzKVStore(data, size) }
#endif

/// One fuzz input; returns 0 (libFuzzer's convention) unless it traps.
@discardableResult
func fuzzKVStore(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size >= 3, let data else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let which = Int(input[0] & 1)
    let fileIndex = Int(input[0] >> 1 & 7) % fuzzFiles.count
    let mode = Int(input[0] >> 4 & 3)
    let at = Int(input[1]) | Int(input[2]) << 8
    let rest = Array(input[3...])
    let g = fuzzGeometry[which]

    let dir = fuzzTempDir("work")
    mkdir(dir, 0o755)
    for (i, name) in fuzzFiles.enumerated() {
        var bytes = templates[which][i]
        if i == fileIndex {
            switch mode {
            case 0: bytes = rest
            case 2: bytes = Array(bytes.prefix(at % (bytes.count + 1)))
            default:
                let o = at % (bytes.count + 1)
                if o + rest.count > bytes.count { bytes += [UInt8](repeating: 0, count: o + rest.count - bytes.count) }
                bytes.replaceSubrange(o..<(o + rest.count), with: rest)
                if mode == 3 { reseal(&bytes, file: name, geometry: g) }
            }
        }
        writeWhole(dir + "/" + name, bytes)
    }
    for stale in ["header.tmp", "header.new", "features.layers"] { unlink(dir + "/" + stale) }

    if let r = try? StoreReader.open(at: dir, expectedModelFingerprint: fuzzFingerprint) {
        let rg = r.geometry
        // Only a geometry this small is read page by page (the header decides the buffer size).
        if rg.floatsPerPage <= 1 << 16 && rg.layers <= 64 {
            var page = [Float](repeating: 0, count: rg.floatsPerPage)
            for c in 0..<min(r.chunkCount, 8) {
                _ = try? r.tokens(ofChunk: c)
                _ = try? r.byteRange(ofChunk: c)
                for l in 0..<rg.layers { _ = try? page.withUnsafeMutableBufferPointer { try r.readPage(chunk: c, layer: l, into: $0) } }
            }
            let n = min(r.chunkCount, 8)
            if n > 0 {
                let rows = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: n)
                if (try? r.featureRows(layer: 0, chunks: 0..<n, into: rows)) != nil, rg.featureFloatsPerChunk >= rg.layers {
                    var s: Float = 0
                    for x in 0..<n { s += rows[x][0] + rows[x][rg.featureFloatsPerChunk / rg.layers - 1] }
                    _ = s
                }
                rows.deallocate()
            }
        }
        _ = r.verify()
        _ = try? r.refresh()
    }
    if let w = try? StoreWriter.resume(at: dir, expectedModelFingerprint: fuzzFingerprint) {
        if w.lastChunkIsPartial { _ = try? w.truncate(toChunkCount: w.chunkCount - 1) }
        _ = try? w.close()
    }
    return 0
}

/// Removes the template and work stores this process made (the unit test calls it; a fuzz run leaves
/// them in /dev/shm for inspection).
func fuzzKVStoreRemoveTemporaries() {
    for tag in ["template0", "template1", "work"] {
        let dir = fuzzTempDir(tag)
        for f in fuzzFiles + ["header.tmp", "header.new", "lock", "features.layers"] { unlink(dir + "/" + f) }
        rmdir(dir)
    }
}
