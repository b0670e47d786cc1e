/// `filter`'s streaming loop, without I/O: records cut from the bytes as they arrive (`RecordSplitter`),
/// asked about through a `YesNoClassifier`, and decided in input order, each as soon as its score is known.
///
/// Short records wait to be scored together in one forward pass (at most `batchTokens` tokens; the same
/// scores as one at a time); blank records (never asked: probability 0) wait with them so that the order
/// is kept; a record that does not fit a batch is scored alone. The caller runs `flush` before any read
/// that would wait for input, so that a record is decided before more input is needed.
public final class RecordFilter {
    /// The classifier.
    public let classifier: YesNoClassifier
    /// P(yes) at or above which a record passes (inverted by `invert`).
    public let threshold: Double
    /// Pass the records answered no.
    public let invert: Bool
    /// Most tokens of short records packed into one forward pass (0: each record alone).
    public let batchTokens: Int
    private var splitter: RecordSplitter
    private let text: (Record) throws -> String
    private let decided: (Record, FilterDecision) throws -> Void
    private var waiting: [(record: Record, input: YesNoClassifier.Input?)] = []
    private var waitingTokens = 0
    /// Records seen, and of them passed.
    public private(set) var records = 0, passed = 0
    /// Tokens of packed records run through the model, and the forward passes that ran them.
    public private(set) var packedTokens = 0, passes = 0

    /// A filter cutting records with `splitter`; `text` gives the text asked about (the record's content,
    /// or a field of it; it may throw to refuse a record), `decided` receives every record with its
    /// decision, in input order.
    public init(classifier: YesNoClassifier, splitter: RecordSplitter, threshold: Double, invert: Bool, batchTokens: Int,
                text: @escaping (Record) throws -> String, decided: @escaping (Record, FilterDecision) throws -> Void) {
        self.classifier = classifier
        self.splitter = splitter
        self.threshold = threshold
        self.invert = invert
        self.batchTokens = batchTokens
        self.text = text
        self.decided = decided
    }

    /// Whether records wait for a batch to be scored.
    public var hasWaiting: Bool { !waiting.isEmpty }

    /// Cuts and handles the records `bytes` complete. On an error, the records before the failing one are
    /// decided first (as when each was scored alone), then the error is rethrown.
    public func feed(_ bytes: ArraySlice<UInt8>) throws {
        do { try splitter.feed(bytes, emit: handle) } catch {
            try flush()
            throw error
        }
    }

    /// The end of the input: the last record (which may lack its terminator), then every waiting one.
    public func finish() throws {
        do { try splitter.finish(emit: handle) } catch {
            try flush()
            throw error
        }
        try flush()
    }

    /// Scores the waiting records in one forward pass and decides them, in order.
    public func flush() throws {
        guard !waiting.isEmpty else { return }
        let inputs = waiting.compactMap(\.input)
        var ps = inputs.isEmpty ? [] : try classifier.scores(packed: inputs)[...]
        if !inputs.isEmpty { passes += 1; packedTokens += classifier.lastPackedTokens }
        let batch = waiting
        waiting = []
        waitingTokens = 0
        for (r, input) in batch { try decide(r, input == nil ? 0 : ps.removeFirst()) }
    }

    private func decide(_ r: Record, _ p: Double) throws {
        let d = FilterDecision(probability: p, threshold: threshold, invert: invert)
        if d.passes { passed += 1 }
        try decided(r, d)
    }

    private func handle(_ r: Record) throws {
        records += 1
        let t = try text(r)
        guard t.contains(where: { !$0.isWhitespace }) else {
            if waiting.isEmpty { try decide(r, 0) } else { waiting.append((r, nil)) }
            return
        }
        let input = classifier.prepare(t)
        let n = input.body.count
        guard input.isShort && n <= batchTokens else {
            try flush()
            return try decide(r, try classifier.score(input))
        }
        if waitingTokens + n > batchTokens { try flush() }
        waiting.append((r, input))
        waitingTokens += n
    }
}
