import Pipeline
import Testing

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
