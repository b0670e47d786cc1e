import Foundation

/// Lexical retrieval of chunks for a question: Okapi BM25 (Robertson & Zaragoza 2009, "The Probabilistic
/// Relevance Framework: BM25 and Beyond", eq. 3.15 with the non-negative idf of Lucene) over the chunks'
/// token ids, the question's token ids being the query terms.
///
/// Why (Docs/SELECTION.md, issue 4): in varied prose no attention score of this small model singles out
/// the chunk that holds the answer — neither the paper's key feature nor Quest bounds nor exact logits —
/// while the words of a question and of the sentence that answers it are mostly the same rare words.
/// Token ids stand in for words: ids common to most chunks (" the", ".", " is") get an idf near zero, so
/// no stop-word list is needed and any tokenizer works. The `quest-lexical` policy forces the best chunk
/// into every head's selection for the question and the answer (`LongHeadsAttention.sharedChunks`).
public struct LexicalRetrieval: Sendable {
    /// Term-frequency saturation (BM25's k1).
    public var k1: Double = 1.2
    /// Length normalisation (BM25's b); chunks all hold `chunkSize` tokens, so it only matters for a
    /// shorter last chunk.
    public var b: Double = 0.75

    public init() {}

    /// A chunk and its score.
    public struct Match: Sendable, Equatable {
        public var chunk: Int
        public var score: Double
    }

    /// The chunks among `chunks` that share a term with `query`, best first (ties: the earlier chunk),
    /// at most `limit`. `tokens(j)` gives chunk j's token ids. One pass over the chunks' tokens.
    public func rank(query: [Int32], chunks: Range<Int>, limit: Int,
                     tokens: (Int) throws -> [Int32]) rethrows -> [Match] {
        // Query terms: the distinct ids (a repeated word in the question counts once).
        var termIndex = [Int32: Int]()
        for id in query where termIndex[id] == nil { termIndex[id] = termIndex.count }
        let T = termIndex.count, N = chunks.count
        guard T > 0, N > 0, limit > 0 else { return [] }
        // tf[chunk][term] and chunk lengths.
        var tf = [Int32](repeating: 0, count: N * T), length = [Int](repeating: 0, count: N)
        for (i, j) in chunks.enumerated() {
            let ids = try tokens(j)
            length[i] = ids.count
            for id in ids { if let t = termIndex[id] { tf[i * T + t] += 1 } }
        }
        var df = [Int](repeating: 0, count: T)
        for i in 0..<N { for t in 0..<T where tf[i * T + t] > 0 { df[t] += 1 } }
        let idf = df.map { log(1 + (Double(N - $0) + 0.5) / (Double($0) + 0.5)) }
        let avgLength = max(1, Double(length.reduce(0, +)) / Double(N))
        var matches = [Match]()
        for i in 0..<N {
            var s = 0.0
            let norm = k1 * (1 - b + b * Double(length[i]) / avgLength)
            for t in 0..<T where tf[i * T + t] > 0 {
                let f = Double(tf[i * T + t])
                s += idf[t] * f * (k1 + 1) / (f + norm)
            }
            if s > 0 { matches.append(Match(chunk: chunks.lowerBound + i, score: s)) }
        }
        matches.sort { ($0.score, -$0.chunk) > ($1.score, -$1.chunk) }
        return Array(matches.prefix(limit))
    }
}
