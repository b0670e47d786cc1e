import Foundation

/// A record `filter` cannot ask about: not UTF-8, or (JSON lines) not an object with the string field.
/// Named by the input, the record's number and its byte offset.
public struct RecordTextError: Error, CustomStringConvertible, Equatable {
    /// The input's name ("standard input"), the 1-based record number and the byte offset of its content.
    public var source: String, number: Int, offset: Int
    /// What is wrong.
    public var reason: String

    public var description: String { "\(source): record \(number) (byte \(offset)): \(reason)" }
}

extension Record {
    /// The text `filter` asks about: the content without its terminator (UTF-8), or with `field` the
    /// string member `field` of the JSON object the content holds (a blank record: ""). `source` names the
    /// input in a `RecordTextError`.
    public func text(field: String?, source: String) throws -> String {
        func bad(_ reason: String) -> RecordTextError { RecordTextError(source: source, number: number, offset: offset, reason: reason) }
        guard let text = String(validating: content, as: UTF8.self) else {
            throw bad("invalid UTF-8 at byte offset \(offset + firstInvalidUTF8(content))")
        }
        guard let field else { return text }
        if text.allSatisfy(\.isWhitespace) { return "" }
        guard let object = try? JSONSerialization.jsonObject(with: Data(content)) as? [String: Any] else { throw bad("not a JSON object") }
        guard let value = object[field] as? String else { throw bad("no string field \"\(field)\"") }
        return value
    }

    /// The record as `filter --score` writes it: with `json`, a `"score"` member (4 decimals) added before
    /// the object's closing brace; otherwise `P` and a tab before it. The terminator is kept.
    public func scored(_ p: Double, json: Bool) -> [UInt8] {
        let s = String(format: "%.4f", p)
        if json, let close = content.lastIndex(of: UInt8(ascii: "}")) {
            let before = content[..<close]
            let empty = before.last(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) == UInt8(ascii: "{")
            return Array(before) + Array(((empty ? "" : ",") + "\"score\":\(s)").utf8) + Array(bytes[close...])
        }
        return Array((s + "\t").utf8) + bytes
    }
}
