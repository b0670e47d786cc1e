import Evaluation
import LongHeads
import Testing

/// `generate --selection-report`: heads of a layer whose selection at a position holds a chunk.
@Suite struct SelectionReportTests {
    @Test func headsHoldingAChunk() {
        // Positions 10 and 11, two heads, up to three chunks each: [pos 10: h0 {0,3}, h1 {0,4,5}; pos 11: h0 {3}, h1 {3,5}].
        let slots: [Int32] = [0, 3, -1, 0, 4, 5, 3, -1, -1, 3, 5, -1]
        let counts: [Int32] = [2, 3, 1, 2]
        slots.withUnsafeBufferPointer { s in
            counts.withUnsafeBufferPointer { c in
                let r = SelectionRecord(layer: 1, positions: 10..<12, heads: 2, maxSlots: 3, slots: s.baseAddress!, counts: c.baseAddress!)
                #expect(r.heads(holding: 3, at: 10) == 1 && r.heads(holding: 0, at: 10) == 2 && r.heads(holding: 5, at: 10) == 1)
                #expect(r.heads(holding: 3, at: 11) == 2 && r.heads(holding: 4, at: 11) == 0)
                #expect(r.heads(holding: 3, at: 12) == nil && r.heads(holding: 3, at: 9) == nil)
            }
        }
    }
}
