import Foundation
import Testing
@testable import KVStore

/// A fresh directory under the system temp dir, removed by `cleanup`.
func makeTempDir(_ name: String = #function) -> String {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let dir = NSTemporaryDirectory() + "kvstore-\(safe)-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func cleanup(_ dir: String) { try? FileManager.default.removeItem(atPath: dir) }

/// Deterministic pseudo-random numbers (SplitMix64), so failures reproduce.
struct TestRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Standard normal (Box-Muller).
    mutating func gaussian() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

func fingerprint(_ seed: UInt8) -> [UInt8] { (0..<32).map { UInt8(truncatingIfNeeded: Int($0) &* 31 &+ Int(seed)) } }

let modelFP = fingerprint(1)
let tokenizerFP = fingerprint(2)

/// A small geometry: pages of 2 × 16 tokens × 2 heads × 8 dims = 512 floats.
func smallGeometry(_ precision: KVPrecision = .f16, layers: Int = 3, chunkSize: Int = 16) -> StoreGeometry {
    StoreGeometry(layers: layers, kvHeads: 2, queryHeads: 4, headDim: 8, chunkSize: chunkSize, precision: precision)
}

/// Synthetic content of one chunk: KV-like Gaussian floats (per-dimension scales from 0.1 to 8, an
/// outlier dimension), zero past `tokens` in the [K|V][head][token][dim] layout the tests use.
struct ChunkData {
    var tokens: [Int32]
    var byteRange: Range<UInt64>
    var pages: [[Float]]
    var features: [Float]

    init(geometry g: StoreGeometry, chunk: Int, tokens count: Int, seed: UInt64 = 0) {
        var rng = TestRNG(seed: UInt64(chunk) &* 1_000_003 &+ seed)
        tokens = (0..<count).map { Int32(truncatingIfNeeded: chunk * 1000 + $0) }
        let start = UInt64(chunk * g.chunkSize * 4)
        byteRange = start..<(start + UInt64(count * 4))
        pages = (0..<g.layers).map { _ in
            var p = [Float](repeating: 0, count: g.floatsPerPage)
            let d = max(1, g.headDim)
            for i in 0..<g.floatsPerPage {
                // Token index within the page's [kv][head][token][dim] layout.
                let token = (i / d) % g.chunkSize
                if token >= count { continue }
                let dim = i % d
                let scale: Float = dim == 3 ? 20 : 0.1 + Float(dim % 8)
                p[i] = rng.gaussian() * scale
            }
            return p
        }
        features = (0..<g.featureFloatsPerChunk).map { _ in rng.gaussian() }
    }

    /// Appends this chunk through `writer`.
    func append(to writer: StoreWriter) throws {
        try withRecord { try writer.append($0) }
    }

    func withRecord<R>(_ body: (ChunkRecord) throws -> R) rethrows -> R {
        var ptrs: [UnsafeBufferPointer<Float>] = []
        var copies: [UnsafeMutableBufferPointer<Float>] = []
        for p in pages {
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: p.count)
            _ = b.initialize(from: p)
            copies.append(b)
            ptrs.append(UnsafeBufferPointer(b))
        }
        defer { for b in copies { b.deallocate() } }
        return try features.withUnsafeBufferPointer { f in
            try body(ChunkRecord(tokens: tokens, byteRange: byteRange, pages: ptrs, features: f))
        }
    }
}

/// The KIVI group of every float of a page (cstoresupport.h), computed independently of the codec:
/// keys [G][w/16][D][16] grouped per (head, channel, 4 tiles), values [G][w][D] per (head, token).
func kiviGroups(_ g: StoreGeometry) -> [Int] {
    let (G, w, D) = (g.kvHeads, g.chunkSize, g.headDim)
    let tiles = w / 16, kg = (tiles + 3) / 4
    var out = [Int](repeating: -1, count: g.floatsPerPage)
    for h in 0..<G {
        for t in 0..<tiles {
            for d in 0..<D {
                for j in 0..<16 { out[h * w * D + t * 16 * D + d * 16 + j] = (h * kg + t / 4) * D + d }
            }
        }
    }
    let keyGroups = G * kg * D
    for h in 0..<G {
        for t in 0..<w {
            for d in 0..<D { out[(G + h) * w * D + t * D + d] = keyGroups + h * w + t }
        }
    }
    return out
}

/// The largest error the KIVI codec may make on a group whose values span [lo, hi] with `bits`-bit codes:
/// half a step, where the stored min is rounded down and the step up to halves (one half ulp each,
/// ≤ 2⁻¹⁰ relative or 2⁻²⁴ absolute), plus float rounding of min + code × scale.
func kiviBound(lo: Float, hi: Float, bits: Int) -> Float {
    let levels = Float((1 << bits) - 1)
    let minSlack = abs(lo) * 0x1p-10 + 0x1p-24
    let step = ((hi - lo + minSlack) / levels) * (1 + 0x1p-9) + 0x1p-24
    return step / 2 + max(abs(lo), abs(hi)) * 0x1p-22 + 1e-12
}

/// Checks a decoded page against the original within the precision's bound.
func expectClose(_ original: [Float], _ decoded: UnsafeBufferPointer<Float>, geometry g: StoreGeometry,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    var bad = 0
    var firstBad = -1
    if let bits = g.precision.bits {
        let groups = kiviGroups(g)
        let count = groups.max()! + 1
        var lo = [Float](repeating: .infinity, count: count), hi = [Float](repeating: -.infinity, count: count)
        for (i, x) in original.enumerated() { lo[groups[i]] = min(lo[groups[i]], x); hi[groups[i]] = max(hi[groups[i]], x) }
        for (i, x) in original.enumerated() where abs(x - decoded[i]) > kiviBound(lo: lo[groups[i]], hi: hi[groups[i]], bits: Int(bits)) {
            bad += 1
            if firstBad < 0 { firstBad = i }
        }
    } else {
        for (i, x) in original.enumerated() where abs(x - decoded[i]) > max(abs(x) * 0.000_488_3, 3e-8) {  // 2^-11 relative, 2^-25 absolute
            bad += 1
            if firstBad < 0 { firstBad = i }
        }
    }
    #expect(bad == 0, "\(bad) values outside the \(g.precision) bound, first at \(firstBad): \(firstBad >= 0 ? "\(original[firstBad]) → \(decoded[firstBad])" : "")",
            sourceLocation: sourceLocation)
}

func readAll(_ reader: StoreReader, chunk: Int, layer: Int) throws -> [Float] {
    var out = [Float](repeating: .nan, count: reader.geometry.floatsPerPage)
    try out.withUnsafeMutableBufferPointer { try reader.readPage(chunk: chunk, layer: layer, into: $0) }
    return out
}

func fileSize(_ path: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? -1 }

func readBytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }

func writeBytes(_ path: String, _ bytes: [UInt8]) { _ = FileManager.default.createFile(atPath: path, contents: Data(bytes)) }

/// Error text of a thrown error, or nil.
func errorText(_ body: () throws -> Void) -> String? {
    do { try body() } catch { return "\(error)" }
    return nil
}

/// Writes `full` complete chunks (and a partial one of `partialTokens` if > 0), commits, closes.
@discardableResult
func buildStore(at dir: String, geometry g: StoreGeometry, full: Int, partialTokens: Int = 0, seed: UInt64 = 0) throws -> [ChunkData] {
    let w = try StoreWriter.create(at: dir, geometry: g, modelFingerprint: modelFP, tokenizerFingerprint: tokenizerFP,
                                   flags: 7, blob: Array("{\"w\":16}".utf8), commitPolicy: .manual)
    var chunks: [ChunkData] = []
    for c in 0..<full { chunks.append(ChunkData(geometry: g, chunk: c, tokens: g.chunkSize, seed: seed)) }
    if partialTokens > 0 { chunks.append(ChunkData(geometry: g, chunk: full, tokens: partialTokens, seed: seed)) }
    for c in chunks { try c.append(to: w) }
    try w.close()
    return chunks
}

/// Checks that `reader` holds exactly `chunks` (tokens, ranges, features exact; pages within bounds).
func expectStore(_ reader: StoreReader, equals chunks: [ChunkData], sourceLocation: SourceLocation = #_sourceLocation) throws {
    let g = reader.geometry
    #expect(reader.chunkCount == chunks.count, sourceLocation: sourceLocation)
    guard reader.chunkCount == chunks.count else { return }
    #expect(reader.tokenCount == chunks.reduce(0) { $0 + $1.tokens.count }, sourceLocation: sourceLocation)
    let f = UnsafeBufferPointer(start: reader.features, count: chunks.count * g.featureFloatsPerChunk)
    for (c, chunk) in chunks.enumerated() {
        #expect(try reader.tokens(ofChunk: c) == chunk.tokens, sourceLocation: sourceLocation)
        #expect(try reader.byteRange(ofChunk: c) == chunk.byteRange, sourceLocation: sourceLocation)
        #expect(Array(f[(c * g.featureFloatsPerChunk)..<((c + 1) * g.featureFloatsPerChunk)]) == chunk.features, sourceLocation: sourceLocation)
        for l in 0..<g.layers {
            var row = [UnsafePointer<Float>](repeating: UnsafePointer(bitPattern: 1)!, count: 1)
            try reader.featureRows(layer: l, chunks: c..<(c + 1), into: &row)
            let rowFloats = g.featureFloatsPerChunk / g.layers
            #expect(Array(UnsafeBufferPointer(start: row[0], count: rowFloats)) == Array(chunk.features[(l * rowFloats)..<((l + 1) * rowFloats)]),
                    "feature row of chunk \(c) layer \(l)", sourceLocation: sourceLocation)
            let page = try readAll(reader, chunk: c, layer: l)
            page.withUnsafeBufferPointer { expectClose(chunk.pages[l], $0, geometry: g, sourceLocation: sourceLocation) }
        }
    }
}
