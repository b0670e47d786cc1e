/// One layer's chunk selections for a block of tokens: the sorted chunks each (token, query head) read.
/// Valid only during the observer call that receives it (it points into the attention's scratch).
public struct SelectionRecord {
    /// The layer.
    public let layer: Int
    /// Positions of the block's tokens.
    public let positions: Range<Int>
    /// Query heads per token.
    public let heads: Int
    let maxSlots: Int
    let slots: UnsafePointer<Int32>
    let counts: UnsafePointer<Int32>

    /// A record over selection scratch: `counts[i · heads + h]` chunks chosen by head h for the token at
    /// `positions.lowerBound + i`, at `slots[(i · heads + h) · maxSlots ..< …+count]`, ascending.
    public init(layer: Int, positions: Range<Int>, heads: Int, maxSlots: Int, slots: UnsafePointer<Int32>, counts: UnsafePointer<Int32>) {
        (self.layer, self.positions, self.heads, self.maxSlots, self.slots, self.counts) = (layer, positions, heads, maxSlots, slots, counts)
    }

    /// The chunks query head `head` read for the token at `position` (in `positions`), ascending.
    public func chunks(position: Int, head: Int) -> UnsafeBufferPointer<Int32> {
        precondition(positions.contains(position) && (0..<heads).contains(head))
        let pair = (position - positions.lowerBound) * heads + head
        return UnsafeBufferPointer(start: slots + pair * maxSlots, count: Int(counts[pair]))
    }
}

/// Where a `LongHeadsAttention` reports what its heads selected: every layer's selections of every block,
/// in order, go to the observers added here. The one seam for whoever reads selections — citations
/// (`SourceTally`), the selection diagnostics of `bench`, `generate --selection-report` — so that none of
/// them reaches into the attention's scratch.
public final class SelectionRecorder {
    private var observers: [(SelectionRecord) -> Void] = []

    /// A recorder with no observers.
    public init() {}

    /// Adds `observer`, called with each layer's selections of each block from now on.
    public func observe(_ observer: @escaping (SelectionRecord) -> Void) { observers.append(observer) }

    /// Removes every observer (what follows is not recorded).
    public func removeAll() { observers.removeAll() }

    /// Hands `record` to the observers.
    func record(_ record: SelectionRecord) {
        for o in observers { o(record) }
    }
}
