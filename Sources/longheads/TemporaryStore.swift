import Dispatch
import Foundation

/// A store directory that exists only while a command runs: removed when `body` returns or throws, and on
/// Ctrl-C or SIGTERM (the process then exits 130 / 143, as a shell expects).
func withTemporaryStore<R>(_ label: String, _ body: (String) throws -> R) throws -> R {
    let dir = NSTemporaryDirectory() + "longheads-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let guardSignals = SignalCleanup(path: dir)
    defer {
        try? FileManager.default.removeItem(atPath: dir)
        guardSignals.cancel()
    }
    return try body(dir)
}

/// Removes a path when SIGINT or SIGTERM arrives, then exits. The handlers run on a dispatch queue, so
/// they fire even while the main thread is busy in the model.
final class SignalCleanup {
    private var sources: [DispatchSourceSignal] = []

    init(path: String) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler {
                try? FileManager.default.removeItem(atPath: path)
                exit(128 + sig)
            }
            s.resume()
            sources.append(s)
        }
    }

    func cancel() {
        for s in sources { s.cancel() }
        sources.removeAll()
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}

/// JSON text inserted as is by `jsonLine` (an object whose keys keep their order).
struct RawJSON {
    var text: String
}

/// One JSON line with the keys in the given order (JSONSerialization would sort or shuffle them).
func jsonLine(_ pairs: [(String, Any)]) throws -> String {
    func encode(_ v: Any) throws -> String {
        if let raw = v as? RawJSON { return raw.text }
        if let list = v as? [RawJSON] { return "[" + list.map(\.text).joined(separator: ",") + "]" }
        return String(decoding: try JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]),
                      as: UTF8.self)
    }
    return "{" + (try pairs.map { try encode($0.0) + ":" + encode($0.1) }.joined(separator: ",")) + "}"
}
