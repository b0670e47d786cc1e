import Foundation

/// One segment of a corpus: a byte range of a source file ingested into its own store,
/// `DIR/segments/ID/`. Written as `DIR/segments/ID.seg` (a `SealedFile`, magic "LHCSEG", JSON payload)
/// once the store is complete: the record is the segment's commit point.
public struct SegmentRecord: Codable, Sendable, Equatable {
    /// Stable id: 32 hex digits (`Corpus.segmentID`), also the store's directory name.
    public var id: String
    /// Absolute path of the source file when the segment was added (for citations).
    public var source: String
    /// First source byte of the segment.
    public var start: Int
    /// Source byte after the segment.
    public var end: Int
    /// SHA-256 (hex) over the CRC32C of each 64 KiB block of the segment's bytes: the content's identity.
    public var content: String
    /// Model fingerprint (hex, 64 digits) of the store: every segment of a corpus has the same one.
    public var model: String
    /// KV store format version of the segment's store.
    public var storeFormat: Int
    /// KV precision of the store (`q4`, `q8`, `f16`).
    public var kv: String
    /// LongHeads chunk size of the store.
    public var chunkSize: Int
    /// LongHeads attention length of the store.
    public var attentionLength: Int
    /// Selection policy the store was ingested with.
    public var policy: String
    /// The segment opens a chat user turn (`ingest` without `--raw`).
    public var chat: Bool
    /// Document tokens of the store (template included).
    public var tokens: Int
    /// Complete chunks of the store.
    public var chunks: Int

    static let hexDigits = Set("0123456789abcdef")

    /// Checks every field (`path` names the file in messages).
    public func validate(path: String) throws {
        func bad(_ f: String, _ r: String) -> CorpusError { .invalid(path: path, field: f, reason: r) }
        guard id.count == 32, id.allSatisfy(Self.hexDigits.contains) else { throw bad("id", "\(id.prefix(80).debugDescription) is not 32 hex digits") }
        guard !source.isEmpty, source.utf8.count <= 4096, source.hasPrefix("/"), !source.contains("\0") else {
            throw bad("source", "not an absolute path of at most 4096 bytes")
        }
        guard start >= 0, end > start, end <= 1 << 50 else { throw bad("end", "byte range \(start)..<\(end) is empty or out of range") }
        guard content.count == 64, content.allSatisfy(Self.hexDigits.contains) else { throw bad("content", "not 64 hex digits") }
        guard model.count == 64, model.allSatisfy(Self.hexDigits.contains) else { throw bad("model", "not 64 hex digits") }
        guard storeFormat == 2 else { throw bad("storeFormat", "\(storeFormat); this build reads stores of format 2") }
        guard ["q4", "q8", "f16"].contains(kv) else { throw bad("kv", "\(kv.prefix(40).debugDescription) is not q4, q8 or f16") }
        guard (16...8192).contains(chunkSize) else { throw bad("chunkSize", "\(chunkSize) is not in 16...8192") }
        guard (16...(1 << 22)).contains(attentionLength) else { throw bad("attentionLength", "\(attentionLength) is not in 16...\(1 << 22)") }
        guard policy.count <= 40 else { throw bad("policy", "too long") }
        guard (1...(1 << 40)).contains(tokens) else { throw bad("tokens", "\(tokens) is not in 1...2^40") }
        guard chunks >= 0, chunks <= tokens / chunkSize else { throw bad("chunks", "\(chunks) chunks cannot hold in \(tokens) tokens") }
    }

    /// The sealed file's bytes.
    public func sealed() throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return SealedFile.seal(magic: Corpus.segmentMagic, payload: Array(try e.encode(self)))
    }

    /// Reads and validates the record at `path`.
    public static func read(path: String) throws -> SegmentRecord {
        let payload = try SealedFile.read(path: path, magic: Corpus.segmentMagic)
        let r: SegmentRecord
        do { r = try JSONDecoder().decode(SegmentRecord.self, from: Data(payload)) } catch {
            throw CorpusError.invalid(path: path, field: "payload", reason: "not a segment record: \(jsonReason(error))")
        }
        try r.validate(path: path)
        return r
    }
}

/// The manifest, `DIR/manifest` (a `SealedFile`, magic "LHCMANI", JSON payload): every segment record of
/// the corpus, ordered by (source, start, id), merged from `segments/*.seg` by `Corpus.index`. The index
/// records the CRC32C of the manifest's bytes, so that a manifest and an index of different merges are
/// never read together.
public struct Manifest: Codable, Sendable, Equatable {
    /// Model fingerprint (hex) shared by every segment.
    public var model: String
    /// The segments, in order: an index's segment numbers refer to this order.
    public var segments: [SegmentRecord]

    /// Reads and validates `DIR/manifest`: every record, ids unique and in order, one model.
    public static func read(path: String) throws -> (Manifest, crc: UInt32) {
        // One read: the CRC an index is matched against is that of the very bytes decoded (the file may be
        // replaced by a concurrent `corpus index` at any moment).
        let raw: Data
        do { raw = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw CorpusError.cannotRead(path: path, reason: ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError)?.localizedDescription
                                            ?? error.localizedDescription)
        }
        let payload = try raw.withUnsafeBytes { Array(try SealedFile.open($0, magic: Corpus.manifestMagic, path: path)) }
        let m: Manifest
        do { m = try JSONDecoder().decode(Manifest.self, from: Data(payload)) } catch {
            throw CorpusError.invalid(path: path, field: "payload", reason: "not a corpus manifest: \(jsonReason(error))")
        }
        try m.validate(path: path)
        return (m, raw.withUnsafeBytes { crc32c($0) })
    }

    func validate(path: String) throws {
        guard m_isHex(model) else { throw CorpusError.invalid(path: path, field: "model", reason: "not 64 hex digits") }
        guard segments.count <= 1 << 24 else { throw CorpusError.invalid(path: path, field: "segments", reason: "\(segments.count) segments (at most 2^24)") }
        var ids = Set<String>()
        for (i, s) in segments.enumerated() {
            try s.validate(path: path + " segment \(i)")
            guard s.model == model else { throw CorpusError.invalid(path: path, field: "segments[\(i)].model", reason: "another model's segment") }
            guard ids.insert(s.id).inserted else { throw CorpusError.invalid(path: path, field: "segments[\(i)].id", reason: "\(s.id) appears twice") }
            if i > 0, !Manifest.ordered(segments[i - 1], s) {
                throw CorpusError.invalid(path: path, field: "segments[\(i)]", reason: "out of order")
            }
        }
    }

    /// The manifest order: source, then start, then id.
    static func ordered(_ a: SegmentRecord, _ b: SegmentRecord) -> Bool {
        (a.source, a.start, a.id) < (b.source, b.start, b.id)
    }

    func sealed() throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return SealedFile.seal(magic: Corpus.manifestMagic, payload: Array(try e.encode(self)))
    }
}

private func m_isHex(_ s: String) -> Bool { s.count == 64 && s.allSatisfy(SegmentRecord.hexDigits.contains) }

/// A JSON decoding error, in one line.
func jsonReason(_ error: Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let k, _): "missing `\(k.stringValue)`"
    case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
        "bad `\(c.codingPath.map(\.stringValue).joined(separator: "."))`"
    case DecodingError.dataCorrupted(let c): c.debugDescription.prefix(120).description
    default: "\(error)".prefix(120).description
    }
}
