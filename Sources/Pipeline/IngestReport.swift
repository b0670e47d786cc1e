import Foundation

/// Ingest progress as text for a log (`ingest --progress`, `ingest --corpus`): a line rewritten in place
/// on a terminal, or one JSON object per line for logs, at most twice a second (terminal) or every
/// 2 seconds (JSON), and always the last update; or brief lines (`ask FILE --verbose`, `summarize
/// --verbose`). The caller writes the text (to stderr) as it is.
public final class IngestProgressLog {
    /// How progress is shown.
    public enum Mode: Sendable, Equatable {
        /// Nothing.
        case none
        /// One line, rewritten in place (carriage return, erase line), ended by a newline when done.
        case tty
        /// One JSON object per line: tokens, chunks, resumed_chunks, tokens_per_second, elapsed_seconds,
        /// bytes_done, done, and when known source_bytes and eta_seconds.
        case json
        /// `label` then "N tokens, S s", one line every `interval` seconds (the first after `interval`) and the last.
        case brief(label: String, interval: Double)
    }

    /// How progress is shown.
    public let mode: Mode
    private var last: Double

    /// A log in `mode`.
    public init(mode: Mode) {
        self.mode = mode
        if case .brief = mode { last = 0 } else { last = -Double.infinity }
    }

    /// The text to write for `p`, or nil when nothing is due yet.
    public func text(for p: IngestProgress) -> String? {
        guard mode != .none else { return nil }
        if case .brief(let label, let interval) = mode {
            guard p.done || p.seconds - last > interval else { return nil }
            last = p.seconds
            return label + String(format: "%d tokens, %.1f s\n", p.tokens, p.seconds)
        }
        guard p.done || p.seconds - last >= (mode == .tty ? 0.5 : 2) else { return nil }
        last = p.seconds
        switch mode {
        case .tty:
            var line = "ingest: \(p.tokens) tokens, \(p.chunks) chunks, \(String(format: "%.0f", p.tokensPerSecond)) tok/s, \(Self.clock(p.seconds))"
            if p.resumedChunks > 0 { line += ", \(p.resumedChunks) chunks resumed" }
            if let eta = p.etaSeconds, !p.done { line += ", ETA \(Self.clock(eta))" }
            return "\r\u{1B}[K" + line + (p.done ? "\n" : "")
        case .json:
            var o: [String: Any] = ["tokens": p.tokens, "chunks": p.chunks, "resumed_chunks": p.resumedChunks,
                                    "tokens_per_second": p.tokensPerSecond, "elapsed_seconds": p.seconds, "bytes_done": p.bytesDone,
                                    "done": p.done]
            if let total = p.sourceBytes { o["source_bytes"] = total }
            if let eta = p.etaSeconds, !p.done { o["eta_seconds"] = eta }
            guard let d = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) else { return nil }
            return String(decoding: d, as: UTF8.self) + "\n"
        case .none, .brief: return nil
        }
    }

    /// `m:ss`, or `h:mm:ss` from an hour on.
    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}

extension IngestSummary {
    /// The line `ingest` prints (sorted keys): store, tokens, seconds, tokens_per_second (of the tokens
    /// this run computed, not those a resume verified), peak_rss_bytes, parameters, precision,
    /// source_bytes, chunks, resumed_chunks, computed_chunks.
    public func jsonLine(store: String, seconds s: Double, peakRSSBytes: Int) throws -> String {
        let computedTokens = max(0, info.tokens - resumedChunks * info.chunkSize)
        let o: [String: Any] = [
            "store": store, "tokens": info.tokens, "seconds": s, "tokens_per_second": Double(computedTokens) / max(s, 1e-9),
            "peak_rss_bytes": peakRSSBytes, "parameters": info.parameters.description,
            "precision": precision.description,
            "source_bytes": info.sourceBytes, "chunks": resumedChunks + computedChunks,
            "resumed_chunks": resumedChunks, "computed_chunks": computedChunks,
        ]
        return String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
    }
}
