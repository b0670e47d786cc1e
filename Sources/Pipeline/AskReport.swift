import Foundation
import KVStore
import LongHeads

// What `ask` and `verify` print, built here so that the CLI only writes it (issue 15: no pipeline logic
// in the CLI target).

extension Citation {
    /// As a JSON object for `jsonLine`: start, end, chunk, share, lift in that order (3 decimals).
    public var json: RawJSON {
        RawJSON(text: (try? jsonLine([("start", start), ("end", end), ("chunk", chunk), ("share", (share * 1000).rounded() / 1000),
                                      ("lift", (lift * 1000).rounded() / 1000)])) ?? "{}")
    }
}

extension Answer {
    /// The `ask --questions` line of question `id`: id, answer (trimmed), seconds (3 decimals), sources.
    public func jsonLine(id: Any) throws -> String {
        try Pipeline.jsonLine([("id", id), ("answer", text.trimmingCharacters(in: .whitespacesAndNewlines)),
                               ("seconds", (seconds * 1000).rounded() / 1000), ("sources", sources.map(\.json))])
    }
}

extension DocumentSession {
    /// A hint when the questions will retrieve nothing although they could: no `policy` asked for, and a
    /// store ingested before `quest-lexical` became the default, which records `quest` (the same data; its
    /// questions retrieve only with `--policy quest-lexical`; Docs/SELECTION.md: 14/20 right clauses
    /// against 5/20). Nil otherwise.
    public func retrievalHint(policy: SelectionPolicy?) -> String? {
        guard policy == nil && info.parameters.policy == .quest else { return nil }
        return "\(path) was ingested with policy=quest, which does not retrieve the question's chunk; "
            + "--policy quest-lexical adds retrieval on the same store"
    }
}

extension SourceTally {
    /// The `ask --tally-out` diagnosis line of question `id`: the per-layer selection counts of the
    /// question and of the answer, and the byte range of every chunk of the store `reader` reads.
    public static func diagnosisLine(id: Any, question: SourceTally, answer: SourceTally, reader: StoreReader) throws -> String {
        try jsonLine([("id", id), ("question", question.layerCounts), ("answer", answer.layerCounts),
                      ("ranges", try (0..<reader.chunkCount).map { c in
                          let r = try reader.byteRange(ofChunk: c); return [r.lowerBound, r.upperBound] })])
    }
}

/// A file a line could not be appended to (`appendLine(_:toFile:)`).
public struct AppendError: Error, CustomStringConvertible {
    /// The file.
    public var path: String
    /// Why, as the system says it.
    public var reason: String

    public var description: String { "\(path): cannot write (\(reason))" }
}

/// Appends `line` and a newline to the file at `path`, creating it when missing. A file that cannot be
/// created or opened, or a write that fails (a full disk), is an `AppendError` naming it.
public func appendLine(_ line: String, toFile path: String) throws {
    if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
    do {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? h.close() }
        try h.seekToEnd()
        try h.write(contentsOf: Data((line + "\n").utf8))
    } catch {
        let reason = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError)?.localizedDescription ?? error.localizedDescription
        throw AppendError(path: path, reason: reason)
    }
}

/// The outcome of `verifyStore(at:)`.
public enum StoreVerification: Sendable, Equatable {
    /// Every byte checked; the store is complete and can be asked.
    case ok(chunks: Int, tokens: Int)
    /// What is damaged, one description per problem (`StoreReader.verify`).
    case damaged([String])
}

/// `verify`: checks every page, header and feature file of the store at `path`, then its description
/// with the decoder `ask` uses (every field, against the header). A store whose ingest did not finish
/// (interrupted, killed) is intact but not ok to ask: `PipelineError.incompleteStore`, whose message
/// says how to finish it.
public func verifyStore(at path: String) throws -> StoreVerification {
    let reader = try StoreReader.open(at: path)
    let problems = reader.verify()
    guard problems.isEmpty else { return .damaged(problems.map { "\($0)" }) }
    let info = try StoreInfo.decode(reader.header.blob, path: path, header: reader.header)
    try info.checkSummaryVersion(path: path)
    if info.complete == false {
        throw PipelineError.incompleteStore(path: path, chunks: reader.chunkCount)
    }
    return .ok(chunks: reader.chunkCount, tokens: reader.tokenCount)
}
