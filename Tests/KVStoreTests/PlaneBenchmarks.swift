import CStoreSupport
import Foundation
import Testing
@testable import KVStore

/// What each page format costs on real K/V, and what LZ4 gains on each plane of a quantized page
/// (issue 13): `KVSTORE_BENCH_STORE=<dir of an f16 store>` (e.g. made by `longheads bench ingest
/// --tokens 8192 --kv f16 --store DIR`). The f16 pages are decoded, re-encoded as q8 and q4, and the
/// parameter plane, the code plane and the whole page are LZ4-compressed separately. Off by default.
/// `KVSTORE_BENCH_CHUNKS=N` (default 64, `all` for every chunk) reads N chunks spread evenly over the
/// store, so a long document is sampled through its whole length, not only its opening.
@Suite("KV store: page formats on real K/V", .enabled(if: ProcessInfo.processInfo.environment["KVSTORE_BENCH_STORE"] != nil))
struct PlaneBenchmarks {
    @Test func formatsAndLZ4PerPlane() throws {
        let path = ProcessInfo.processInfo.environment["KVSTORE_BENCH_STORE"]!
        let r = try StoreReader.open(at: path)
        let g0 = r.geometry
        #expect(g0.precision == .f16)
        let (G, w, D) = (Int32(g0.kvHeads), Int32(g0.chunkSize), Int32(g0.headDim))
        let wanted = ProcessInfo.processInfo.environment["KVSTORE_BENCH_CHUNKS"].map { $0 == "all" ? Int.max : Int($0) ?? 64 } ?? 64
        let chunks = max(1, min(r.chunkCount, wanted))
        // Chunk i of the sample is store chunk i·count/chunks: evenly spread, the first always included.
        let sample = (0..<chunks).map { $0 * r.chunkCount / chunks }
        let tokens = chunks * g0.chunkSize
        var f16Whole = 0
        var raw: [Int32: Int] = [:], whole: [Int32: Int] = [:], params: [Int32: Int] = [:], codes: [Int32: Int] = [:]
        var errK: [Int32: Double] = [:], errV: [Int32: Double] = [:], normK = 0.0, normV = 0.0
        var page = [Float](repeating: 0, count: g0.floatsPerPage)
        var half = [UInt16](repeating: 0, count: g0.floatsPerPage)
        let half_ = g0.floatsPerPage / 2
        for c in sample {
            for l in 0..<g0.layers {
                try page.withUnsafeMutableBufferPointer { try r.readPage(chunk: c, layer: l, into: $0) }
                cs_f32_to_f16(&half, page, page.count)
                f16Whole += half.withUnsafeBytes { lz4StoredSize($0.baseAddress!, $0.count) }
                for i in 0..<half_ { normK += Double(page[i] * page[i]); normV += Double(page[half_ + i] * page[half_ + i]) }
                for bits in [Int32(8), 4] {
                    let pb = cs_kivi_param_bytes(G, w, D), n = cs_kivi_bytes(bits, G, w, D)
                    var enc = [UInt8](repeating: 0, count: n)
                    cs_kivi_encode(&enc, page, bits, G, w, D)
                    raw[bits, default: 0] += n
                    enc.withUnsafeBytes { e in
                        whole[bits, default: 0] += lz4StoredSize(e.baseAddress!, n)
                        params[bits, default: 0] += lz4StoredSize(e.baseAddress!, pb)
                        codes[bits, default: 0] += lz4StoredSize(e.baseAddress! + pb, n - pb)
                    }
                    var scratch = [UInt16](repeating: 0, count: pb / 2)
                    var dec = [Float](repeating: 0, count: page.count)
                    cs_kivi_decode(&dec, enc, &scratch, bits, G, w, D)
                    for i in 0..<half_ {
                        errK[bits, default: 0] += Double((dec[i] - page[i]) * (dec[i] - page[i]))
                        errV[bits, default: 0] += Double((dec[half_ + i] - page[half_ + i]) * (dec[half_ + i] - page[half_ + i]))
                    }
                }
            }
        }
        let f16Raw = chunks * g0.layers * 2 * g0.floatsPerPage
        func perToken(_ b: Int) -> String { String(format: "%.0f", Double(b) / Double(tokens)) }
        print("page formats on \(chunks) of \(r.chunkCount) chunks × \(g0.layers) layers of \(path) (\(g0)); bytes/token of K+V pages:")
        print("f16: raw \(perToken(f16Raw)), LZ4 whole page \(perToken(f16Whole)) (ratio \(String(format: "%.3f", Double(f16Whole) / Double(f16Raw))))")
        for bits in [Int32(8), 4] {
            let pb = chunks * g0.layers * cs_kivi_param_bytes(G, w, D), cb = raw[bits]! - pb
            print("q\(bits): raw \(perToken(raw[bits]!)) (params \(perToken(pb)), codes \(perToken(cb))); "
                  + "LZ4 whole page \(perToken(whole[bits]!)) (ratio \(String(format: "%.3f", Double(whole[bits]!) / Double(raw[bits]!)))), "
                  + "params plane \(String(format: "%.3f", Double(params[bits]!) / Double(pb))), codes plane \(String(format: "%.3f", Double(codes[bits]!) / Double(cb))); "
                  + "relative RMS error K \(String(format: "%.4f", (errK[bits]! / normK).squareRoot())), V \(String(format: "%.4f", (errV[bits]! / normV).squareRoot()))")
        }
    }
}
