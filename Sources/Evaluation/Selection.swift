import Foundation
import LongHeads

/// Which query heads, per layer, selected a chunk holding the passkey line at one position (the answer
/// step: the forward of the last prompt token). Fed by `LongHeadsAttention.selections`.
public final class SelectionTally {
    /// Layers and query heads per layer.
    public let layers: Int, heads: Int
    /// The token position whose selections are counted.
    public let position: Int
    /// Chunks overlapping the key line's token span (one, or more when it straddles boundaries).
    public let keyChunks: ClosedRange<Int>
    /// Per layer: heads whose selection holds any of `keyChunks`; nil until that layer was observed.
    public private(set) var held: [Int?]

    /// A tally of the heads of `layers` layers × `heads` holding any of `keyChunks` at `position`.
    public init(layers: Int, heads: Int, position: Int, keyChunks: ClosedRange<Int>) {
        self.layers = layers
        self.heads = heads
        self.position = position
        self.keyChunks = keyChunks
        held = Array(repeating: nil, count: layers)
    }

    /// The chunks overlapping token span `span` (non-empty) with chunks of `chunkSize` tokens.
    public static func chunks(of span: Range<Int>, chunkSize: Int) -> ClosedRange<Int> {
        precondition(!span.isEmpty && chunkSize > 0)
        return (span.lowerBound / chunkSize)...((span.upperBound - 1) / chunkSize)
    }

    /// Whether `keyChunks` is in what every head reads anyway at `position`: plain causal attention below
    /// `beginSelective` (all chunks), else chunk 0, the previous and the current chunk.
    public static func inForcedChunks(_ keyChunks: ClosedRange<Int>, position: Int, parameters: LongHeadsParameters) -> Bool {
        if position < parameters.beginSelective { return true }
        let c = position / parameters.chunkSize
        return [0, c - 1, c].contains { keyChunks.contains($0) }
    }

    /// Counts the heads of the record's layer at `position` if its block holds it.
    public func observe(_ record: SelectionRecord) {
        guard record.layer >= 0 && record.layer < layers, record.positions.contains(position) else { return }
        var hits = 0
        for h in 0..<min(heads, record.heads) where record.chunks(position: position, head: h).contains(where: { keyChunks.contains(Int($0)) }) {
            hits += 1
        }
        held[record.layer] = hits
    }

    /// Whether every layer was observed.
    public var complete: Bool { !held.contains(nil) }

    /// Per layer, the share of heads holding the key chunk (unobserved layers count 0).
    public var perLayer: [Double] { held.map { Double($0 ?? 0) / Double(heads) } }

    /// The share of all (layer, head) pairs holding the key chunk.
    public var recall: Double { Double(held.reduce(0) { $0 + ($1 ?? 0) }) / Double(max(1, layers * heads)) }

    /// Compact per-layer counts for a log line, e.g. "9 9 3 0 …".
    public var countsLine: String { held.map { $0.map(String.init) ?? "?" }.joined(separator: " ") }
}

/// Depths of passkey trials: cycled through a given list, or random (the default).
public enum DepthSchedule {
    /// Parses "0.1,0.5,0.9" (each in 0...1); nil when malformed or empty.
    public static func parse(_ s: String) -> [Double]? {
        let parts = s.split(separator: ",", omittingEmptySubsequences: false)
        var out = [Double]()
        for p in parts {
            guard let d = Double(p.trimmingCharacters(in: .whitespaces)), d >= 0, d <= 1 else { return nil }
            out.append(d)
        }
        return out.isEmpty ? nil : out
    }

    /// The depth of trial `trial`: `depths[trial % count]` when given, else `random`.
    public static func depth(trial: Int, depths: [Double]?, random: Double) -> Double {
        guard let depths, !depths.isEmpty else { return random }
        return depths[trial % depths.count]
    }
}

/// Mean of `xs`, nil when empty.
public func mean(_ xs: [Double]) -> Double? { xs.isEmpty ? nil : xs.reduce(0, +) / Double(xs.count) }

/// Length of the common prefix of two token sequences.
public func commonPrefixCount(_ a: [Int32], _ b: [Int32]) -> Int {
    var i = 0
    while i < a.count && i < b.count && a[i] == b[i] { i += 1 }
    return i
}

extension SelectionRecord {
    /// How many of the record's query heads selected `chunk` at token `position`; nil when the record
    /// does not hold that position (`generate --selection-report`).
    public func heads(holding chunk: Int32, at position: Int) -> Int? {
        guard positions.contains(position) else { return nil }
        return (0..<heads).filter { chunks(position: position, head: $0).contains(chunk) }.count
    }
}
