import Evaluation
import Foundation
import GGUF
import ModelCache
import Tokenization
#if canImport(FoundationXML)
import FoundationXML
#endif
import KVStore
import LongHeads
import TestSupport
import Testing

/// True when `svg` parses as XML.
private func wellFormed(_ svg: String) -> Bool {
    XMLParser(data: Data(svg.utf8)).parse()
}

private func occurrences(of needle: String, in s: String) -> Int { s.components(separatedBy: needle).count - 1 }

/// The heatmap renderer, depth bins and schedule, and the selection bookkeeping (no model).
@Suite struct PasskeyBookkeepingTests {
    @Test func depthBins() {
        #expect(PasskeyGrid.bin(depth: 0, bins: 10) == 0)
        #expect(PasskeyGrid.bin(depth: 0.3, bins: 10) == 3)   // 0.3 · 10 = 2.9999… lands in bin 3
        #expect(PasskeyGrid.bin(depth: 0.7, bins: 10) == 7)
        #expect(PasskeyGrid.bin(depth: 0.999, bins: 10) == 9)
        #expect(PasskeyGrid.bin(depth: 1, bins: 10) == 9)
        #expect(PasskeyGrid.bin(depth: -1, bins: 10) == 0)
        var g = PasskeyGrid(lengths: [2048, 4096])
        g.record(length: 2048, depth: 0.15, correct: true)
        g.record(length: 2048, depth: 0.12, correct: false)
        g.record(length: 4096, depth: 0.95, correct: true)
        g.record(length: 999, depth: 0.5, correct: true)     // not a row: ignored
        #expect(g.cells[0][1] == .init(hits: 1, trials: 2))
        #expect(g.cells[1][9] == .init(hits: 1, trials: 1))
        #expect(g.total(row: 0) == .init(hits: 1, trials: 2))
        #expect(g.cells.flatMap { $0 }.reduce(0) { $0 + $1.trials } == 3)
    }

    @Test func depthSchedule() {
        #expect(DepthSchedule.parse("0.1,0.5,0.9") == [0.1, 0.5, 0.9])
        #expect(DepthSchedule.parse("0, 1") == [0, 1])
        #expect(DepthSchedule.parse("1.5") == nil)
        #expect(DepthSchedule.parse("0.1,,0.2") == nil)
        #expect(DepthSchedule.parse("x") == nil)
        let cycled = (0..<5).map { DepthSchedule.depth(trial: $0, depths: [0.1, 0.5], random: 0.77) }
        #expect(cycled == [0.1, 0.5, 0.1, 0.5, 0.1])
        #expect(DepthSchedule.depth(trial: 3, depths: nil, random: 0.77) == 0.77)
    }

    @Test func svgIsWellFormedWithCellsAndLabels() throws {
        var g = PasskeyGrid(lengths: [2048, 8192, 1000], bins: 10)
        for (d, ok) in [(0.05, true), (0.05, true), (0.06, false), (0.55, false)] { g.record(length: 2048, depth: d, correct: ok) }
        g.record(length: 8192, depth: 1.0, correct: true)
        let svg = renderHeatmapSVG(grid: g, title: "Passkey <chunk=256 & attention=1024>", subtitle: "model \"x\"")
        #expect(wellFormed(svg), "\(svg)")
        #expect(svg.hasPrefix("<?xml"))
        // One cell per (length, bin) plus an "all" cell per row.
        #expect(occurrences(of: "<rect class=\"cell\"", in: svg) == 3 * 11)
        #expect(occurrences(of: "class=\"row-label\"", in: svg) == 3)
        #expect(occurrences(of: "class=\"col-label\"", in: svg) == 11)
        for label in [">2k<", ">8k<", ">1000<", ">2/3<", ">0/1<", ">2/4<", ">1/1<", "0.9–1", "key depth", "prompt tokens"] {
            #expect(svg.contains(label), "missing \(label)")
        }
        #expect(svg.contains("&lt;chunk=256 &amp; attention=1024&gt;"))
        // Colours: all-hit green, all-miss red, no-trial grey.
        #expect(svg.contains(heatmapColor(accuracy: 1)) && svg.contains(heatmapColor(accuracy: 0)) && svg.contains(heatmapColor(accuracy: nil)))
        #expect(heatmapColor(accuracy: 0) == "#d73027")
        #expect(heatmapColor(accuracy: 1) == "#1a9641")
    }

    @Test func atomicWrite() throws {
        let p = NSTemporaryDirectory() + "evaluation-heatmap-\(UUID().uuidString.prefix(6)).svg"
        defer { try? FileManager.default.removeItem(atPath: p) }
        try writeAtomically("one", to: p)
        try writeAtomically("two", to: p)
        #expect(try String(contentsOfFile: p, encoding: .utf8) == "two")
        #expect(!FileManager.default.fileExists(atPath: p + ".tmp-\(getpid())"))
        #expect(throws: EvaluationError.self) { try writeAtomically("x", to: "/nonexistent-dir/h.svg") }
    }

    @Test func keyChunksAndForcedChunks() {
        #expect(SelectionTally.chunks(of: 300..<320, chunkSize: 256) == 1...1)
        #expect(SelectionTally.chunks(of: 500..<520, chunkSize: 256) == 1...2)   // straddles a boundary
        #expect(SelectionTally.chunks(of: 0..<1, chunkSize: 256) == 0...0)
        let p = LongHeadsParameters(chunkSize: 16, attentionLength: 48)   // selective from 48
        // Answer at position 200: chunk 12; forced are 0, 11, 12.
        #expect(SelectionTally.inForcedChunks(0...0, position: 200, parameters: p))
        #expect(SelectionTally.inForcedChunks(10...11, position: 200, parameters: p))
        #expect(SelectionTally.inForcedChunks(12...12, position: 200, parameters: p))
        #expect(!SelectionTally.inForcedChunks(5...6, position: 200, parameters: p))
        // Below the selective start every chunk is read.
        #expect(SelectionTally.inForcedChunks(1...1, position: 40, parameters: p))
    }

    @Test func selectionTallyCountsHeadsHoldingTheKeyChunk() {
        // 2 layers, 3 heads, answer at position 101 inside a block of 4 tokens starting at 100, slots of 4.
        let heads = 3, maxSlots = 4, n = 4
        let t = SelectionTally(layers: 2, heads: heads, position: 101, keyChunks: 2...3)
        var slots = [Int32](repeating: -1, count: n * heads * maxSlots)
        var counts = [Int32](repeating: 0, count: n * heads)
        func set(token i: Int, head h: Int, _ chosen: [Int32]) {
            let pair = i * heads + h
            for (s, c) in chosen.enumerated() { slots[pair * maxSlots + s] = c }
            counts[pair] = Int32(chosen.count)
        }
        // Layer 0 at token 1 (position 101): heads 0 and 2 hold chunk 3 or 2; head 1 does not. Chunk 5
        // sits beyond head 1's count: it must not be read.
        set(token: 1, head: 0, [0, 3, 5, 6])
        set(token: 1, head: 1, [0, 4, 5])
        slots[(1 * heads + 1) * maxSlots + 3] = 2
        set(token: 1, head: 2, [0, 2, 5, 6])
        // Other tokens of the block select the key everywhere: they must not count.
        for i in [0, 2, 3] { for h in 0..<heads { set(token: i, head: h, [0, 2, 3, 6]) } }
        slots.withUnsafeBufferPointer { s in counts.withUnsafeBufferPointer { c in
            t.observe(SelectionRecord(layer: 0, positions: 100..<(100 + n), heads: heads, maxSlots: maxSlots, slots: s.baseAddress!, counts: c.baseAddress!))
            // A block that does not hold position 101 is ignored.
            t.observe(SelectionRecord(layer: 1, positions: 104..<(104 + n), heads: heads, maxSlots: maxSlots, slots: s.baseAddress!, counts: c.baseAddress!))
        } }
        #expect(!t.complete)
        #expect(t.countsLine == "2 ?")
        for h in 0..<heads { set(token: 1, head: h, [0, 1, 4, 6]) }
        slots.withUnsafeBufferPointer { s in counts.withUnsafeBufferPointer { c in
            t.observe(SelectionRecord(layer: 1, positions: 100..<(100 + n), heads: heads, maxSlots: maxSlots, slots: s.baseAddress!, counts: c.baseAddress!))
        } }
        #expect(t.complete)
        #expect(t.perLayer == [2.0 / 3, 0])
        #expect(abs(t.recall - 2.0 / 6) < 1e-12)
        #expect(t.countsLine == "2 0")
    }

    @Test func meanAndPrefix() {
        #expect(mean([]) == nil)
        #expect(mean([1, 2, 3]) == 2)
        #expect(commonPrefixCount([1, 2, 3], [1, 2, 4, 5]) == 2)
        #expect(commonPrefixCount([], [1]) == 0)
    }
}

/// The passkey prompt with the default model's tokenizer (BPE merges the space that joins two filler
/// repetitions into the next word, so a repetition is a token shorter joined than alone).
@Suite(.enabled(if: ModelCache().cachedPath(of: .smolLM2) != nil, "default model not fetched (run Scripts/test.sh)"))
struct BenchPasskeyRealTokenizerTests {
    /// A key near the start needs almost all the filler after it: the filler must cover that (it once
    /// fell short at 8k with depth < 0.02 and crashed).
    @Test(arguments: [0.0, 0.001, 0.5, 0.999])
    func fillerCoversEveryDepth(depth: Double) throws {
        let file = try GGUFFile(path: ModelCache().cachedPath(of: .smolLM2)!)
        let tokenizer = try Tokenizer(gguf: file)
        for length in [8192, 16384] {
            let p = Passkey.prompt(tokens: length, depth: depth, key: 12345, tokenizer: tokenizer)
            #expect(abs(p.ids.count - length) < 32, "\(p.ids.count) tokens for \(length)")
            #expect(tokenizer.decode(Array(p.ids[p.keySpan])).contains("12345"))
            #expect(tokenizer.decode(Array(p.ids[p.questionStart...])) == "\n" + Passkey.question)
        }
    }
}
