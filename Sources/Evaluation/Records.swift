import Foundation

/// A value that is written as JSON `null` when absent (the key stays in the line, as readers of the
/// bench output expect), unlike an optional property, whose key `JSONEncoder` leaves out.
public struct Nullable<Value: Encodable & Sendable>: Encodable, Sendable {
    /// The value, or nil for `null`.
    public var value: Value?

    /// Wraps `value`.
    public init(_ value: Value?) { self.value = value }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if let value { try c.encode(value) } else { try c.encodeNil() }
    }
}

/// The depths of a run as recorded: the list given, or "random".
public enum DepthsField: Encodable, Sendable, Equatable {
    /// Depths cycled through.
    case list([Double])
    /// A random depth per trial.
    case random

    /// The field for `depths` (nil: random).
    public init(_ depths: [Double]?) { self = depths.map(DepthsField.list) ?? .random }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .list(let d): try c.encode(d)
        case .random: try c.encode("random")
        }
    }
}

/// One JSON object on one line with sorted snake_case keys: the bench output format.
public func jsonLine<T: Encodable>(_ value: T) throws -> String {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    e.keyEncodingStrategy = .convertToSnakeCase
    return String(decoding: try e.encode(value), as: UTF8.self)
}

/// Peak resident set size of this process, in bytes (getrusage: kilobytes on Linux).
public func peakRSSBytes() -> Int {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Int(u.ru_maxrss) * 1024
}

/// One trial of `bench passkey` (a JSON line).
public struct PasskeyTrial: Encodable, Sendable {
    /// The prompt length asked for and the prompt's tokens; the trial's index, key depth, key, continuation, outcome, seconds.
    public var length: Int, tokens: Int, trial: Int, depth: Double, key: Int, answer: String, correct: Bool, seconds: Double
    /// The LongHeads parameters and KV precision, as printed.
    public var parameters: String, precision: String
    /// The key line's token span and chunks, the answer's chunk, whether the key sits in a chunk every head reads.
    public var keySpan: [Int], keyChunk: Int, keyChunks: [Int], answerChunk: Int, keyInForcedChunk: Bool
    /// Share of (layer, head) pairs whose selection at the answer step held the key's chunk (null: not observed), and per layer.
    public var selectionRecall: Nullable<Double>, selectionPerLayer: [Double]
    /// Heads per layer whose selection held the key chunk, for a log line ("9 9 3 0 …"; not in the JSON).
    public var countsLine: String = ""

    enum CodingKeys: String, CodingKey {
        case length, tokens, trial, depth, key, answer, correct, seconds, parameters, precision, keySpan, keyChunk, keyChunks,
             answerChunk, keyInForcedChunk, selectionRecall, selectionPerLayer
    }

    /// The trial as `bench passkey` logs it in text mode (stderr): the outcome, then the selection
    /// diagnostic with the heads per layer (of `heads`) that held the key's chunk.
    public func logLines(heads: Int) -> [String] {
        let chunks = keyChunks.count == 1 ? "\(keyChunk)" : "\(keyChunk)-\(keyChunks.last!)"
        return [String(format: "passkey %d tokens depth %.2f: %@ (%@)", tokens, depth, correct ? "ok" : "MISS",
                       answer.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: "\\n")),
                String(format: "  selection: key chunk %@ of %d%@, recall %.2f, heads/%d per layer: %@",
                       chunks, answerChunk + 1, keyInForcedChunk ? " (forced)" : "", selectionRecall.value ?? 0, heads, countsLine)]
    }
}

/// The summary of one length of `bench passkey` (a JSON line).
public struct PasskeySummary: Encodable, Sendable {
    /// The length, correct trials, trials and their ratio.
    public var length: Int, correct: Int, trials: Int, accuracy: Double
    /// The run's settings.
    public var parameters: String, chunk: Int, attention: Int, selectiveFrom: Int, precision: String, depths: DepthsField, seed: UInt64
    /// Mean seconds per trial and the process's peak RSS.
    public var meanSecondsPerTrial: Double, peakRssBytes: Int
    /// Mean selection recall of all trials, of the correct ones and of the missed ones (null: none).
    public var meanSelectionRecall: Nullable<Double>, meanSelectionRecallHits: Nullable<Double>, meanSelectionRecallMisses: Nullable<Double>
}

/// One trial of `bench niah` under one policy (a JSON line).
public struct NiahTrial: Encodable, Sendable {
    /// The task, length asked for, prompt tokens, tokens the policy read, trial index and needle depth.
    public var task: String, length: Int, tokens: Int, readTokens: Int, trial: Int, depth: Double
    /// How the prompt was read (`NiahVia`), the answering and ingesting policies, parameters, precision and seed.
    public var via: String, policy: String, ingestPolicy: String, parameters: String, precision: String, seed: UInt64
    /// The expected answer, the continuation, the outcome, and the seconds of ingest and of question + answer.
    public var expected: String, answer: String, correct: Bool, ingestSeconds: Double, askSeconds: Double
    /// Selection recall at the answer step (null: not observed), per layer, and whether the needle sits in a chunk every head reads.
    public var selectionRecall: Nullable<Double>, selectionPerLayer: [Double], needleInForcedChunk: Bool
    /// The needle's token span and chunks, the answer's chunk, the chunks shared by every head.
    public var needleSpan: [Int], needleChunks: [Int], answerChunk: Int, sharedChunks: [Int]
    /// Tokens read as the question (`generate-no-retrieval`: null, the prompt has none).
    public var questionTokens: Nullable<Int>
    /// Multikey: the asked key and the four keys in text order (absent for the other tasks).
    public var key: String?, keys: [String]?
    /// Heads per layer whose selection held the needle's chunk, for a log line (not in the JSON).
    public var countsLine: String = ""

    enum CodingKeys: String, CodingKey {
        case task, length, tokens, readTokens, trial, depth, via, policy, ingestPolicy, parameters, precision, seed, expected, answer, correct,
             ingestSeconds, askSeconds, selectionRecall, selectionPerLayer, needleInForcedChunk, needleSpan, needleChunks, answerChunk,
             sharedChunks, questionTokens, key, keys
    }

    /// The answerer as logged: the policy, after its `via` when that is not `ask` ("generate:quest-lexical").
    public var label: String { via == NiahVia.ask.rawValue ? policy : via + ":" + policy }

    /// The trial as `bench niah` logs it in text mode (stderr): the outcome, then the heads per layer (of
    /// `heads`) whose selection held the needle's chunk.
    public func logLines(heads: Int) -> [String] {
        [String(format: "%@ %d tokens depth %.2f %@: %@ (expected %@, got \"%@\"), recall %.2f%@, ingest %.1f s, ask %.1f s",
                task, tokens, depth, label, correct ? "ok" : "MISS", expected,
                answer.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: "\\n"),
                selectionRecall.value ?? 0, needleInForcedChunk ? " (forced)" : "", ingestSeconds, askSeconds),
         "  selection heads/\(heads) per layer: \(countsLine)"]
    }
}

/// The summary of one (task, length, policy) of `bench niah` (a JSON line, and a row of the text table).
public struct NiahSummary: Encodable, Sendable {
    /// The task, length, correct trials, trials, their ratio and the mean prompt tokens.
    public var task: String, length: Int, correct: Int, trials: Int, accuracy: Double, meanTokens: Double
    /// How the prompts were read (`NiahVia`), and the run's settings.
    public var via: String, policy: String, ingestPolicy: String, parameters: String, chunk: Int, attention: Int, selectiveFrom: Int
    /// The run's settings.
    public var precision: String, seed: UInt64, depths: DepthsField
    /// Mean seconds of ingest and of question + answer per trial, and the process's peak RSS.
    public var meanIngestSeconds: Double, meanAskSeconds: Double, peakRssBytes: Int
    /// Mean selection recall of all trials, of the correct ones and of the missed ones (null: none).
    public var meanSelectionRecall: Nullable<Double>, meanSelectionRecallHits: Nullable<Double>, meanSelectionRecallMisses: Nullable<Double>

    /// The answerer as shown in the table: the policy, after its `via` when that is not `ask`.
    public var label: String { via == NiahVia.ask.rawValue ? policy : via + ":" + policy }

    /// The text-mode table: `header` (naming the parameters), then one row per summary.
    public static func table(_ rows: [NiahSummary], header title: String) -> String {
        func f(_ x: Double?) -> String { x.map { String(format: "%.2f", $0) } ?? "-" }
        let header = ["task", "length", "policy", "tokens", "accuracy", "correct", "recall", "recall_hits", "recall_misses",
                      "ingest_s", "ask_s", "peak_rss_MiB"]
        let cells = rows.map { r -> [String] in
            [r.task, String(r.length), r.label, String(Int(r.meanTokens)), String(format: "%.2f", r.accuracy),
             "\(r.correct)/\(r.trials)", f(r.meanSelectionRecall.value), f(r.meanSelectionRecallHits.value),
             f(r.meanSelectionRecallMisses.value), String(format: "%.1f", r.meanIngestSeconds), String(format: "%.1f", r.meanAskSeconds),
             String(peakRSSBytes() >> 20)]
        }
        // Columns as wide as their widest cell; the task and the policy left-aligned, figures right-aligned.
        let widths = header.indices.map { c in ([header] + cells).map { $0[c].count }.max()! }
        func line(_ row: [String]) -> String {
            row.indices.map { c in
                let pad = String(repeating: " ", count: widths[c] - row[c].count)
                return c == 0 || c == 2 ? row[c] + pad : pad + row[c]
            }.joined(separator: "  ") + "\n"
        }
        return title + "\n" + line(header) + cells.map(line).joined()
    }
}
