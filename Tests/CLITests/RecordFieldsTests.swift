import Foundation
import GGUF
import Model
import Pipeline
import TestSupport
import Testing
import Tokenization

/// What `filter` asks about and writes for a record (`Record.text(field:source:)`, `Record.scored`).
@Suite struct RecordFieldsTests {
    func record(_ content: String, terminator: String = "\n", number: Int = 3, offset: Int = 40) -> Record {
        Record(bytes: Array((content + terminator).utf8), content: Array(content.utf8), number: number, offset: offset)
    }

    @Test func textOfALineOrItsField() throws {
        #expect(try record("a plain line").text(field: nil, source: "standard input") == "a plain line")
        #expect(try record(#"{"msg": "disk full", "n": 1}"#).text(field: "msg", source: "in") == "disk full")
        #expect(try record("   ").text(field: "msg", source: "in") == "")
        func reason(_ r: Record, _ field: String?) -> String? {
            do { _ = try r.text(field: field, source: "standard input"); return nil } catch let e as RecordTextError { return e.description } catch { return "\(error)" }
        }
        #expect(reason(record(#"{"n": 1}"#), "msg") == #"standard input: record 3 (byte 40): no string field "msg""#)
        #expect(reason(record("[1, 2]"), "msg") == "standard input: record 3 (byte 40): not a JSON object")
        let bad = Record(bytes: [0x61, 0xFF, 0x0A], content: [0x61, 0xFF], number: 2, offset: 10)
        #expect(reason(bad, nil) == "standard input: record 2 (byte 10): invalid UTF-8 at byte offset 11")
    }

    @Test func scoredKeepsTheRecordAndItsTerminator() {
        #expect(String(decoding: record("a line").scored(0.25, json: false), as: UTF8.self) == "0.2500\ta line\n")
        #expect(String(decoding: record(#"{"msg": "x"}"#).scored(0.5, json: true), as: UTF8.self) == #"{"msg": "x","score":0.5000}"# + "\n")
        #expect(String(decoding: record("{ }", terminator: "\0").scored(1, json: true), as: UTF8.self) == #"{ "score":1.0000}"# + "\0")
    }
}

/// `RecordFilter.run(fileDescriptor:name:)`: the read loop of `filter` over a descriptor.
@Suite struct RecordStreamTests {
    func filter(_ modelPath: String, maxRecordBytes: Int = 1 << 20, decided: @escaping (Record, FilterDecision) -> Void) throws -> RecordFilter {
        let file = try GGUFFile(path: modelPath)
        let pipeline = DocumentPipeline(model: try LlamaModel(file: file, threads: 2, maxBatch: 256), tokenizer: try Tokenizer(gguf: file),
                                        budgetBytes: 16 << 20)
        let c = try YesNoClassifier(pipeline: pipeline, question: "Is this about a fox?")
        return RecordFilter(classifier: c, splitter: RecordSplitter(mode: .lines, maxRecordBytes: maxRecordBytes), threshold: -1, invert: false,
                            batchTokens: 512, text: { try $0.text(field: nil, source: "in") }, decided: decided)
    }

    /// A pipe with `bytes` written and its write end closed; returns the read end.
    func pipe(_ bytes: String) -> Int32 {
        var fds: [Int32] = [0, 0]
        precondition(Foundation.pipe(&fds) == 0)
        let data = Array(bytes.utf8)
        precondition(write(fds[1], data, data.count) == data.count)
        close(fds[1])
        return fds[0]
    }

    @Test func readsEveryRecordInOrderThenNamesBadInput() throws {
        let modelPath = try TinyModel().write(name: "record-stream")
        defer { try? FileManager.default.removeItem(atPath: modelPath) }
        var seen = [Int]()
        let f = try filter(modelPath) { r, d in seen.append(r.number); #expect(d.passes) }
        let fd = pipe("a fox\nb\n\nlast without newline")
        defer { close(fd) }
        try f.run(fileDescriptor: fd, name: "in")
        #expect(seen == [1, 2, 3, 4] && f.records == 4)

        // A closed descriptor is named (exit 66 in the CLI); a record over the limit too (exit 65).
        let closed = pipe("")
        close(closed)
        #expect { try filter(modelPath) { _, _ in }.run(fileDescriptor: closed, name: "in") } throws: { e in
            (e as? RecordInputError)?.unreadable == true && "\(e)" == "in: in is closed"
        }
        let long = pipe("short\n" + String(repeating: "x", count: 100) + "\n")
        defer { close(long) }
        var decided = 0
        #expect { try filter(modelPath, maxRecordBytes: 50) { _, _ in decided += 1 }.run(fileDescriptor: long, name: "in") } throws: { e in
            (e as? RecordInputError)?.unreadable == false && "\(e)".hasPrefix("in: record 2 (byte 6): longer than 50 bytes")
        }
        #expect(decided == 1)
    }
}
