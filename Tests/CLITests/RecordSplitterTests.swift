import Foundation
import Pipeline
import Testing

/// The record splitter (filter) and the questions parser (ask --questions), moved into Pipeline for fuzzing:
/// behaviour unchanged (checked against the splitter as it was), linear in a record's length, bounded.

/// The splitter before issue 14 (quadratic in a long record), kept as the reference of its behaviour.
struct ReferenceRecordSplitter {
    enum Mode { case lines, nul, paragraphs }
    let mode: Mode
    private var pending: [UInt8] = []
    private var consumed = 0        // input bytes before `pending`
    private var number = 0
    // Paragraphs: the record being built, whether it has content, and where its trailing blank lines start.
    private var paragraph: [UInt8] = []
    private var contentRange: Range<Int>?
    private var trailingBlank = false
    private var paragraphOffset = 0

    init(mode: Mode) { self.mode = mode }

    mutating func feed(_ bytes: ArraySlice<UInt8>, emit: (Record) throws -> Void) throws {
        pending += bytes
        let terminator = mode == .nul ? UInt8(0) : UInt8(ascii: "\n")
        var start = 0
        while let end = pending[start...].firstIndex(of: terminator) {
            try take(Array(pending[start...end]), terminated: true, emit: emit)
            start = end + 1
        }
        pending.removeFirst(start)
    }

    mutating func finish(emit: (Record) throws -> Void) throws {
        if !pending.isEmpty { try take(pending, terminated: false, emit: emit) }
        pending = []
        if mode == .paragraphs, contentRange != nil { try emitParagraph(emit) }
    }

    private mutating func take(_ piece: [UInt8], terminated: Bool, emit: (Record) throws -> Void) throws {
        defer { consumed += piece.count }
        guard mode == .paragraphs else {
            number += 1
            return try emit(Record(bytes: piece, content: terminated ? Array(piece.dropLast()) : piece, number: number, offset: consumed))
        }
        let blank = piece.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A }
        if blank {
            if paragraph.isEmpty { paragraphOffset = consumed }
            paragraph += piece
            if contentRange != nil { trailingBlank = true }
            return
        }
        if trailingBlank { try emitParagraph(emit) }  // the blank lines after the last paragraph ended it
        if paragraph.isEmpty { paragraphOffset = consumed }
        let lo = contentRange?.lowerBound ?? paragraph.count
        paragraph += piece
        contentRange = lo..<(paragraph.count - (terminated ? 1 : 0))
    }

    private mutating func emitParagraph(_ emit: (Record) throws -> Void) throws {
        number += 1
        let r = Record(bytes: paragraph, content: Array(paragraph[contentRange!]), number: number,
                       offset: paragraphOffset + contentRange!.lowerBound)
        paragraph = []
        contentRange = nil
        trailingBlank = false
        try emit(r)
    }
}

extension ReferenceRecordSplitter.Mode {
    var current: RecordSplitter.Mode {
        switch self {
        case .lines: .lines
        case .nul: .nul
        case .paragraphs: .paragraphs
        }
    }
}

@Suite struct RecordSplitterTests {
    /// Random inputs of lines, blank lines, NULs and whitespace, fed in random pieces: the same records as
    /// the reference splitter fed the whole input at once.
    @Test func sameRecordsAsTheReference() throws {
        var rng = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = [0x0A, 0x0A, 0x00, 0x20, 0x09, 0x0D, 0x61, 0x62, 0xC3, 0xA9]
        for _ in 0..<400 {
            let input = (0..<Int.random(in: 0...200, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            for mode in [ReferenceRecordSplitter.Mode.lines, .nul, .paragraphs] {
                var expected = [Record]()
                var reference = ReferenceRecordSplitter(mode: mode)
                try reference.feed(input[...]) { expected.append(Record(bytes: $0.bytes, content: $0.content, number: $0.number, offset: $0.offset)) }
                try reference.finish { expected.append(Record(bytes: $0.bytes, content: $0.content, number: $0.number, offset: $0.offset)) }
                var got = [Record]()
                var splitter = RecordSplitter(mode: mode.current)
                var at = 0
                while at < input.count {
                    let n = Int.random(in: 1...8, using: &rng)
                    try splitter.feed(input[at..<min(input.count, at + n)]) { got.append($0) }
                    at += n
                }
                try splitter.finish { got.append($0) }
                #expect(got == expected, "\(mode) \(input)")
            }
        }
    }

    /// A 16 MiB record without a terminator, read 64 KiB at a time (as `filter` reads): each byte is
    /// scanned once. The splitter before scanned the whole buffer at every read (about 2 GB of scanning here).
    @Test func longRecordIsLinear() throws {
        let piece = [UInt8](repeating: 0x61, count: 1 << 16)
        var splitter = RecordSplitter(mode: .lines, maxRecordBytes: 1 << 30)
        let clock = ContinuousClock()
        let t0 = clock.now
        for _ in 0..<256 { try splitter.feed(piece[...]) { _ in Issue.record("no record ends here") } }
        var records = [Record]()
        try splitter.feed([0x0A][...]) { records.append($0) }
        let seconds = (clock.now - t0) / .seconds(1)
        #expect(records.count == 1 && records[0].content.count == 16 << 20)
        #expect(seconds < 30, "\(seconds) s")
    }

    @Test func recordsLongerThanTheLimitAreNamed() throws {
        var lines = RecordSplitter(mode: .lines, maxRecordBytes: 8)
        var seen = [Int]()
        // Complete records: the third (11 bytes with its newline) is too long.
        #expect(throws: RecordError.tooLong(record: 3, offset: 8, limit: 8)) {
            try lines.feed(Array("abc\nxyz\n0123456789\n".utf8)[...]) { seen.append($0.number) }
        }
        #expect(seen == [1, 2])
        // A record without its terminator yet, over the limit: named before it ends.
        var open = RecordSplitter(mode: .nul, maxRecordBytes: 8)
        #expect(throws: RecordError.tooLong(record: 2, offset: 2, limit: 8)) {
            try open.feed(Array("a\0bcdefghijkl".utf8)[...]) { _ in }
        }
        var paragraphs = RecordSplitter(mode: .paragraphs, maxRecordBytes: 8)
        #expect(throws: RecordError.tooLong(record: 2, offset: 4, limit: 8)) {
            try paragraphs.feed(Array("ab\n\ncd\nef\ngh\n".utf8)[...]) { _ in }
        }
        // At the limit is fine.
        var exact = RecordSplitter(mode: .lines, maxRecordBytes: 4)
        var got = [Record]()
        try exact.feed(Array("abc\n".utf8)[...]) { got.append($0) }
        #expect(got.count == 1)
    }
}

@Suite struct QuestionsParserTests {
    @Test func parsesAndNamesBadLines() throws {
        let ok = try parseQuestions(Array("{\"id\": \"a\", \"question\": \"Who?\"}\n\n  \n{\"question\": \"Why?\"}\n".utf8), name: "q.jsonl")
        #expect(ok.map(\.text) == ["Who?", "Why?"])
        #expect(ok.map(\.line) == [1, 4])
        #expect(ok[0].id as? String == "a" && ok[1].id as? Int == 4)
        let cases: [(String, QuestionsError)] = [
            ("{\"question\": \"a\"}\nnot json", .badLine(name: "f", line: 2, reason: "not valid JSON")),
            ("[1]", .badLine(name: "f", line: 1, reason: "not a JSON object")),
            ("{\"q\": 1}", .badLine(name: "f", line: 1, reason: "no \"question\" string")),
            ("{\"question\": \"  \"}", .badLine(name: "f", line: 1, reason: "the question is empty")),
            ("{\"question\": \"a\", \"id\": null}", .badLine(name: "f", line: 1, reason: "\"id\" must be a string or a number")),
            ("\n \n", .noQuestions(name: "f")),
        ]
        for (text, error) in cases {
            #expect(throws: error) { try parseQuestions(Array(text.utf8), name: "f") }
        }
        #expect(throws: QuestionsError.invalidUTF8(name: "f", offset: 3)) { try parseQuestions([0x7B, 0x22, 0x71, 0xFF], name: "f") }
        #expect(QuestionsError.badLine(name: "f", line: 2, reason: "not valid JSON").description == "f: line 2: not valid JSON")
    }
}
