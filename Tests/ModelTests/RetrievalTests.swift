import LongHeads
import Testing

/// BM25 retrieval of chunks over token ids (`LexicalRetrieval`).
@Suite struct RetrievalTests {
    /// Chunks of 16 tokens: ids 1...5 ("stop words") everywhere, a random filler word each, and in
    /// `needle` the question's rare ids 90 and 91.
    func chunks(count: Int, needle: Int) -> [[Int32]] {
        (0..<count).map { j in
            var ids = (0..<16).map { Int32(1 + $0 % 5) }
            ids[7] = Int32(20 + j % 40)
            if j == needle { ids[3] = 90; ids[9] = 91 }
            return ids
        }
    }

    @Test func theChunkSharingRareTokensWins() {
        let c = chunks(count: 50, needle: 31)
        // The question repeats stop words and one rare id; the needle shares two rare ids.
        let q: [Int32] = [1, 2, 3, 90, 4, 1, 2, 91, 5]
        let top = LexicalRetrieval().rank(query: q, chunks: 0..<50, limit: 3) { c[$0] }
        #expect(top.first?.chunk == 31)
        // Stop words (in every chunk) have an idf near zero: the needle's score is far above the rest.
        #expect(top.count == 3)
        #expect(top[0].score > 50 * top[1].score)
    }

    @Test func rangeLimitAndTies() {
        let c = chunks(count: 50, needle: 31)
        // Filler word 25 is in chunks 5 and 45 (j % 40 == 5): equal scores, the earlier chunk first.
        let both = LexicalRetrieval().rank(query: [25], chunks: 0..<50, limit: 5) { c[$0] }
        #expect(both.map(\.chunk) == [5, 45])
        #expect(both[0].score == both[1].score)
        #expect(LexicalRetrieval().rank(query: [25], chunks: 0..<50, limit: 1) { c[$0] }.map(\.chunk) == [5])
        // Only the given range is searched.
        #expect(LexicalRetrieval().rank(query: [90], chunks: 0..<31, limit: 5) { c[$0] }.isEmpty)
        #expect(LexicalRetrieval().rank(query: [90], chunks: 31..<32, limit: 5) { c[$0] }.map(\.chunk) == [31])
        #expect(LexicalRetrieval().rank(query: [], chunks: 0..<50, limit: 5) { c[$0] }.isEmpty)
    }

    @Test func moreOccurrencesScoreHigherButSaturate() {
        // Chunk 1 holds id 7 once, chunk 2 twice, chunk 3 eight times; BM25 ranks 3 > 2 > 1, with the
        // gain from 2 to 8 smaller than 4× (k1 saturation).
        var c = [[Int32]](repeating: [Int32](repeating: 1, count: 16), count: 6)
        c[1][0] = 7
        c[2][0] = 7; c[2][1] = 7
        for t in 0..<8 { c[3][t] = 7 }
        let r = LexicalRetrieval().rank(query: [7], chunks: 0..<6, limit: 6) { c[$0] }
        #expect(r.map(\.chunk) == [3, 2, 1])
        #expect(r[0].score < 4 * r[1].score)
    }
}
