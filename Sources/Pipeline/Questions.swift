import Foundation

/// One question of an `ask --questions` file.
public struct Question {
    /// The line's `id` (a JSON string or number), or its line number when it has none.
    public var id: Any
    /// The question.
    public var text: String
    /// 1-based line number in the file (0: not from a file).
    public var line: Int

    /// A question.
    public init(id: Any, text: String, line: Int) {
        self.id = id
        self.text = text
        self.line = line
    }
}

/// A questions file that cannot be used; every case names the file (`name`) and, for a line, its number.
public enum QuestionsError: Error, Equatable, CustomStringConvertible {
    /// The file is not UTF-8: the first bad sequence starts at byte `offset`.
    case invalidUTF8(name: String, offset: Int)
    /// Line `line` (1-based) is not a usable question.
    case badLine(name: String, line: Int, reason: String)
    /// No line holds a question.
    case noQuestions(name: String)

    public var description: String {
        switch self {
        case .invalidUTF8(let n, let o): "\(n): invalid UTF-8 at byte offset \(o)"
        case .badLine(let n, let l, let r): "\(n): line \(l): \(r)"
        case .noQuestions(let n): "\(n): no questions"
        }
    }
}

/// Parses a whole JSONL questions file (`bytes`; `name` for messages): one `{"id": …, "question": "…"}`
/// object per line, blank lines skipped. Every line is checked before any is returned, and the first bad
/// one is named by its number: not JSON, not an object, no non-blank "question" string, or an "id" that is
/// an array, object or null. A line without "id" gets its line number. Pure: no I/O.
public func parseQuestions(_ bytes: [UInt8], name: String) throws -> [Question] {
    guard let text = String(data: Data(bytes), encoding: .utf8) else {
        throw QuestionsError.invalidUTF8(name: name, offset: firstInvalidUTF8(bytes))
    }
    var out = [Question]()
    for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if line.isEmpty { continue }
        func bad(_ why: String) -> QuestionsError { .badLine(name: name, line: i + 1, reason: why) }
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) else {
            throw bad("not valid JSON")
        }
        guard let dict = object as? [String: Any] else { throw bad("not a JSON object") }
        guard let question = dict["question"] as? String else { throw bad("no \"question\" string") }
        guard !question.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw bad("the question is empty") }
        if let id = dict["id"], id is [Any] || id is [String: Any] || id is NSNull { throw bad("\"id\" must be a string or a number") }
        out.append(Question(id: dict["id"] ?? i + 1, text: question, line: i + 1))
    }
    guard !out.isEmpty else { throw QuestionsError.noQuestions(name: name) }
    return out
}
