import Foundation
import Pipeline
import TestSupport
import Testing

/// The library example of Docs/LIBRARY.md: it compiles against the library products alone (this target
/// imports no executable), runs on the tiny model, and the document quotes it as it is.
@Suite struct LibraryExampleTests {
    @Test func exampleIngestsAndAnswersOnTheTinyModel() throws {
        let model = try TinyModel().write(name: "library-example")
        defer { try? FileManager.default.removeItem(atPath: model) }
        let store = NSTemporaryDirectory() + "library-example-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: store) }
        // Byte-level vocabulary: about 3,000 tokens, so the store holds full chunks and the question selects some.
        let text = (0..<60).map { "Line \($0): the harbour gate was painted blue on day \($0 % 7)." }.joined(separator: "\n")
        let answer = try askAboutText(text, question: "What colour was the gate?", modelPath: model, storeDirectory: store)
        #expect(answer.question == "What colour was the gate?")
        #expect(answer.tokens > 0 && answer.tokens <= 32)
        #expect(answer.sources.count <= 3)
        for s in answer.sources { #expect(s.start < s.end && s.end <= UInt64(text.utf8.count)) }
        // The answer round-trips through JSON (the Codable result type).
        let decoded = try JSONDecoder().decode(Answer.self, from: JSONEncoder().encode(answer))
        #expect(decoded == answer)
    }

    @Test func docsQuoteTheExample() throws {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        let source = try String(contentsOf: here.appendingPathComponent("Example.swift"), encoding: .utf8)
        let docs = try String(contentsOf: here.appendingPathComponent("../../Docs/LIBRARY.md").standardized, encoding: .utf8)
        let begin = try #require(source.range(of: "// BEGIN EXAMPLE\n")), end = try #require(source.range(of: "// END EXAMPLE"))
        let example = String(source[begin.upperBound..<end.lowerBound])
        #expect(docs.contains("```swift\n" + example + "```"))
    }
}
