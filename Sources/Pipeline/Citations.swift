import Foundation
import KVStore
import LongHeads

/// One source of an answer: an archived chunk the heads selected often for the question, with the
/// document bytes it holds.
public struct Citation: Codable, Sendable, Equatable {
    /// First source byte of the chunk.
    public var start: UInt64
    /// Source byte after the chunk.
    public var end: UInt64
    /// Chunk index in the store.
    public var chunk: Int
    /// Share of the question's counted selections that went to this chunk (0...1).
    public var share: Double
    /// `share` minus the chunk's share under neutral probe questions: what the question itself adds.
    public var lift: Double
}

/// Counts how often the query heads of every layer selected each archived chunk while the model read
/// the tokens at `positions` (`LongHeadsAttention.selections`).
///
/// Chunk 0 and the two recent chunks are in every selection (LongHeads keeps them), so they carry no
/// information and are not counted; neither are chunks completed after the store (the question and the
/// answer themselves), nor tokens below `beginSelective`, whose "selection" is every chunk.
public final class SourceTally {
    /// LongHeads chunk size.
    public let chunkSize: Int
    /// Positions below this attend to all chunks (nothing is selected).
    public let beginSelective: Int
    /// Chunks in the store; only these can be cited.
    public let storedChunks: Int
    /// Query heads per layer.
    public let heads: Int
    /// The token positions counted.
    public let positions: Range<Int>
    /// Selections per stored chunk.
    public private(set) var counts: [Int]
    /// Selections per layer and stored chunk, `[layer][chunk]`.
    public private(set) var layerCounts: [[Int]] = []
    /// All counted selections.
    public private(set) var total = 0

    /// A tally of the tokens at `positions` over a store of `storedChunks` chunks read with `parameters` by a
    /// model with `heads` query heads.
    public init(parameters: LongHeadsParameters, storedChunks: Int, heads: Int, positions: Range<Int>) {
        chunkSize = parameters.chunkSize
        beginSelective = parameters.beginSelective
        self.storedChunks = storedChunks
        self.heads = heads
        self.positions = positions
        counts = [Int](repeating: 0, count: storedChunks)
    }

    /// Adds one layer's selections of a block (`LongHeadsAttention.selections`).
    public func observe(_ record: SelectionRecord) {
        let layer = record.layer
        while layerCounts.count <= layer { layerCounts.append([Int](repeating: 0, count: storedChunks)) }
        for p in record.positions {
            guard positions.contains(p), p >= beginSelective else { continue }
            let current = p / chunkSize
            for h in 0..<heads {
                for chosen in record.chunks(position: p, head: h) {
                    let c = Int(chosen)
                    guard c > 0, c < current - 1, c < storedChunks else { continue }
                    counts[c] += 1
                    layerCounts[layer][c] += 1
                    total += 1
                }
            }
        }
    }

    /// Adds this tally to `attention`'s selection observers.
    public func install(on attention: LongHeadsAttention) {
        attention.selections.observe { [self] in observe($0) }
    }

    /// Each chunk's share of the counted selections (all zero when nothing was counted).
    public var shares: [Double] { counts.map { total > 0 ? Double($0) / Double(total) : 0 } }

    /// The `k` chunks whose share rises most above `baseline` (per chunk; nil: zero), most first, as
    /// citations with their source byte ranges from `reader`. Only chunks above their baseline are cited, and
    /// chunks that hold no source bytes (only the chat template before the document) are skipped.
    public func citations(reader: StoreReader, baseline: [Double]? = nil, top k: Int = 3) throws -> [Citation] {
        let share = shares
        let base = baseline ?? []
        let lift = share.indices.map { share[$0] - (base.indices.contains($0) ? base[$0] : 0) }
        var out = [Citation]()
        let ranked = share.indices.filter { share[$0] > 0 && lift[$0] > 0 }
            .sorted { lift[$0] != lift[$1] ? lift[$0] > lift[$1] : $0 < $1 }
        for c in ranked where out.count < k {
            let r = try reader.byteRange(ofChunk: c)
            if !r.isEmpty { out.append(Citation(start: r.lowerBound, end: r.upperBound, chunk: c, share: share[c], lift: lift[c])) }
        }
        return out
    }
}

extension DocumentPipeline {
    /// Reads the description a store records (`StoreInfo`, the header blob).
    public static func storeInfo(_ reader: StoreReader) throws -> StoreInfo {
        try StoreInfo.decode(reader.header.blob, path: reader.path, header: reader.header)
    }

    /// Neutral questions whose selections show which chunks heads pick whatever is asked (chunks that are
    /// generally salient); a question's citations are the chunks it selects more than these.
    public static let citationProbes = ["What is this document about?", "Summarize the text.", "What is the main point?"]
}
