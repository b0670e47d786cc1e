import Foundation

/// JSON text inserted as is by `jsonLine(_:)` (an object whose keys keep their order).
public struct RawJSON: Sendable {
    /// The JSON text.
    public var text: String

    /// Wraps JSON `text`, written unchanged.
    public init(text: String) { self.text = text }
}

/// One JSON object on one line with the keys in the given order (JSONSerialization would sort or shuffle
/// them): the format of the job commands' JSON lines (`ask --questions`, `ingest --corpus`, `corpus list`).
/// Values are JSON-serializable Foundation values, `RawJSON` or `[RawJSON]`.
public func jsonLine(_ pairs: [(String, Any)]) throws -> String {
    func encode(_ v: Any) throws -> String {
        if let raw = v as? RawJSON { return raw.text }
        if let list = v as? [RawJSON] { return "[" + list.map(\.text).joined(separator: ",") + "]" }
        return String(decoding: try JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]),
                      as: UTF8.self)
    }
    return "{" + (try pairs.map { try encode($0.0) + ":" + encode($0.1) }.joined(separator: ",")) + "}"
}
