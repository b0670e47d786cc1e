/// Cutting a byte stream into records (`longheads filter`): pure functions over bytes, no I/O, so that they
/// can be tested and fuzzed on their own.

/// One record of the input.
public struct Record: Equatable, Sendable {
    /// Everything that is passed through: the record and its terminator (paragraphs: the blank lines after it).
    public var bytes: [UInt8]
    /// The part that is asked about (no terminator, no surrounding blank lines).
    public var content: [UInt8]
    /// 1-based record number.
    public var number: Int
    /// Byte offset of `content` in the input.
    public var offset: Int

    /// A record.
    public init(bytes: [UInt8], content: [UInt8], number: Int, offset: Int) {
        self.bytes = bytes
        self.content = content
        self.number = number
        self.offset = offset
    }
}

/// Input the splitter refuses.
public enum RecordError: Error, Equatable, CustomStringConvertible {
    /// Record `record`, starting at byte `offset` of the input, has more than `limit` bytes (terminator
    /// included), or has reached that many without a terminator.
    case tooLong(record: Int, offset: Int, limit: Int)

    public var description: String {
        switch self {
        case .tooLong(let r, let o, let l):
            "record \(r) (byte \(o)): longer than \(l) bytes (--max-record-bytes); is the record separator right?"
        }
    }
}

/// Cuts a byte stream into records as the bytes arrive: lines (LF-terminated), NUL-terminated records, or
/// paragraphs (runs of non-blank lines; the blank lines after one are passed through with it). The last
/// record may lack its terminator. Linear in the input: every byte is scanned for a terminator once, also
/// within a record that spans many `feed` calls.
public struct RecordSplitter {
    /// How records end.
    public enum Mode: Sendable { case lines, nul, paragraphs }
    /// How records end.
    public let mode: Mode
    /// Most bytes of one record (`Record.bytes`); more is `RecordError.tooLong`.
    public let maxRecordBytes: Int
    /// The default limit: 16 MiB.
    public static let defaultMaxRecordBytes = 16 << 20

    private var pending: [UInt8] = []
    private var scanned = 0          // bytes at the start of `pending` known to hold no terminator
    private var consumed = 0        // input bytes before `pending`
    private var number = 0
    // Paragraphs: the record being built, whether it has content, and where its trailing blank lines start.
    private var paragraph: [UInt8] = []
    private var contentRange: Range<Int>?
    private var trailingBlank = false
    private var paragraphOffset = 0

    /// A splitter for `mode`, refusing records of more than `maxRecordBytes` bytes.
    public init(mode: Mode, maxRecordBytes: Int = defaultMaxRecordBytes) {
        self.mode = mode
        self.maxRecordBytes = max(1, maxRecordBytes)
    }

    /// Takes the next bytes of the input; `emit` receives every record they complete, in order.
    public mutating func feed(_ bytes: ArraySlice<UInt8>, emit: (Record) throws -> Void) throws {
        pending += bytes
        let terminator = mode == .nul ? UInt8(0) : UInt8(ascii: "\n")
        var start = 0
        // The scan resumes where the previous one stopped: a long record is not rescanned at every read.
        var from = scanned
        while let end = pending[from...].firstIndex(of: terminator) {
            try take(Array(pending[start...end]), terminated: true, emit: emit)
            start = end + 1
            from = start
        }
        pending.removeFirst(start)
        scanned = pending.count
        if pending.count > maxRecordBytes { throw pendingTooLong() }
    }

    /// The error for `pending`, a line without its terminator yet that is already too long: it belongs to
    /// the paragraph being built, or (lines, NUL records, after a paragraph's blank lines) starts a record.
    private func pendingTooLong() -> RecordError {
        guard mode == .paragraphs, !paragraph.isEmpty else { return tooLong(offset: consumed) }
        if trailingBlank { return .tooLong(record: number + 2, offset: consumed, limit: maxRecordBytes) }
        return tooLong(offset: paragraphOffset)
    }

    /// Ends the input: emits the last record (unterminated, or a paragraph's).
    public mutating func finish(emit: (Record) throws -> Void) throws {
        if !pending.isEmpty { try take(pending, terminated: false, emit: emit) }
        pending = []
        scanned = 0
        if mode == .paragraphs, contentRange != nil { try emitParagraph(emit) }
    }

    private func tooLong(offset: Int) -> RecordError { .tooLong(record: number + 1, offset: offset, limit: maxRecordBytes) }

    private mutating func take(_ piece: [UInt8], terminated: Bool, emit: (Record) throws -> Void) throws {
        defer { consumed += piece.count }
        guard mode == .paragraphs else {
            if piece.count > maxRecordBytes { throw tooLong(offset: consumed) }
            number += 1
            return try emit(Record(bytes: piece, content: terminated ? Array(piece.dropLast()) : piece, number: number, offset: consumed))
        }
        let blank = piece.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A }
        if blank {
            if paragraph.isEmpty { paragraphOffset = consumed }
            paragraph += piece
            if contentRange != nil { trailingBlank = true }
            if paragraph.count > maxRecordBytes { throw tooLong(offset: paragraphOffset) }
            return
        }
        if trailingBlank { try emitParagraph(emit) }  // the blank lines after the last paragraph ended it
        if paragraph.isEmpty { paragraphOffset = consumed }
        let lo = contentRange?.lowerBound ?? paragraph.count
        paragraph += piece
        contentRange = lo..<(paragraph.count - (terminated ? 1 : 0))
        if paragraph.count > maxRecordBytes { throw tooLong(offset: paragraphOffset) }
    }

    private mutating func emitParagraph(_ emit: (Record) throws -> Void) throws {
        guard let range = contentRange else { return }
        number += 1
        let r = Record(bytes: paragraph, content: Array(paragraph[range]), number: number, offset: paragraphOffset + range.lowerBound)
        paragraph = []
        contentRange = nil
        trailingBlank = false
        try emit(r)
    }
}

/// Byte offset of the first byte that does not start (or continue) a valid UTF-8 sequence (`bytes.count`
/// if all of it is valid).
public func firstInvalidUTF8(_ bytes: [UInt8]) -> Int {
    var it = bytes.makeIterator()
    var decoder = UTF8()
    var offset = 0
    while case .scalarValue(let s) = decoder.decode(&it) { offset += UTF8.width(s) }
    return offset
}
