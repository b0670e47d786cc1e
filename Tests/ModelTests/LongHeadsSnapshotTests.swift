import Foundation
import LongHeads
import TestSupport
import Testing
@testable import Model

/// `LongHeadsAttention.snapshot()` / `restore(_:)`: an attention put back in the state a document's tail left
/// gives the same logits, bit for bit, as one that runs the tail again (what `DocumentSession` relies on to
/// run a store's tail once per batch of questions).
@Suite struct LongHeadsSnapshotTests {
    static let w = 16
    /// K = 4, selective from 64: past chunk 4 every head picks one of the candidates by its Quest bound.
    static let parameters = LongHeadsParameters(chunkSize: w, attentionLength: 64, policy: .quest)

    /// Runs `tokens` from `attention.position` in blocks ending at chunk boundaries (as `DocumentSession`
    /// does), returning every token's logits.
    static func feed(_ model: LlamaModel, _ tokens: [Int32], _ attention: LongHeadsAttention) throws -> [Float] {
        var out = [Float]()
        var i = 0
        while i < tokens.count {
            let n = min(tokens.count - i, w - attention.position % w)
            out += try model.forward(tokens[i..<(i + n)], start: attention.position, attention: attention, logits: .all)
            i += n
        }
        return out
    }

    /// Archives `chunks` whole chunks of `document` and returns the archive and the document's tail.
    static func archive(_ model: LlamaModel, _ document: [Int32], chunks: Int) throws -> (MemoryArchive, tail: [Int32]) {
        let archive = MemoryArchive()
        let writer = try LongHeadsAttention(config: model.config, parameters: parameters, archive: archive, pool: model.pool)
        _ = try run(model, Array(document[..<(chunks * w)]), block: w, attention: writer)
        #expect(archive.chunkCount == chunks)
        return (archive, Array(document[(chunks * w)...]))
    }

    /// Same bits (not only equal values), and a failure prints no arrays of logits.
    static func same(_ a: [Float], _ b: [Float]) -> Bool { a.map(\.bitPattern) == b.map(\.bitPattern) }

    /// Expects `same(a, b)` == `equal`, printing no logits when it fails.
    static func expectSame(_ a: [Float], _ b: [Float], _ what: Comment, equal: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) {
        let same = Self.same(a, b)
        #expect(same == equal, what, sourceLocation: sourceLocation)
    }

    @Test(arguments: [7, 0])
    func restoredTailGivesTheSameLogitsAsRerunningIt(tailLength: Int) throws {
        let (model, path) = try LongHeadsInvariantTests.model()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let chunks = 6
        let document = LongHeadsInvariantTests.tokens(chunks * Self.w + tailLength, seed: 21)
        let (archive, tail) = try Self.archive(model, document, chunks: chunks)
        // Questions: one inside the current chunk, one that completes it and the next (archiving two chunks).
        let short = LongHeadsInvariantTests.tokens(5, seed: 22)
        let long = LongHeadsInvariantTests.tokens(2 * Self.w + 3, seed: 23)

        // Reference: a new attention per question, tail and question run in one pass (blocks only end at
        // chunk boundaries, so the tail and the question's first tokens share blocks).
        func alone(_ question: [Int32]) throws -> [Float] {
            let a = try LongHeadsAttention(config: model.config, parameters: Self.parameters, archive: archive, pool: model.pool)
            let logits = try Self.feed(model, tail + question, a)
            archive.truncate(to: chunks)
            return Array(logits[(tail.count * model.config.vocabSize)...])
        }
        let expectedLong = try alone(long), expectedShort = try alone(short)

        // One attention: the tail once, then each question from the snapshot.
        let lh = try LongHeadsAttention(config: model.config, parameters: Self.parameters, archive: archive, pool: model.pool)
        _ = try Self.feed(model, tail, lh)
        let afterTail = lh.snapshot()
        #expect(afterTail.position == chunks * Self.w + tailLength && afterTail.archivedChunks == chunks)
        var got = [[Float]]()
        for question in [long, short, long] {
            lh.restore(afterTail)
            #expect(lh.position == afterTail.position)
            got.append(try Self.feed(model, question, lh))
            archive.truncate(to: chunks)
        }
        Self.expectSame(got[0], expectedLong, "the long question after restore")
        Self.expectSame(got[1], expectedShort, "the short question after restore")
        Self.expectSame(got[2], expectedLong, "the long question again")
        #expect(expectedLong.count == long.count * model.config.vocabSize)

        // Restored onto another attention of the same model and parameters: the same bits again.
        let other = try LongHeadsAttention(config: model.config, parameters: Self.parameters, archive: archive, pool: model.pool)
        other.restore(afterTail)
        Self.expectSame(try Self.feed(model, long, other), expectedLong, "restored onto another attention")
        archive.truncate(to: chunks)

        // Not vacuous: without the tail, the question's logits differ.
        if tailLength > 0 {
            let bare = try LongHeadsAttention(config: model.config, parameters: Self.parameters, archive: archive, pool: model.pool)
            Self.expectSame(try Self.feed(model, long, bare), expectedLong, "a question without the tail", equal: false)
            archive.truncate(to: chunks)
        }
    }

    /// The filled slabs of the archived chunks kept across blocks and decode steps (`slabCacheLimitBytes`)
    /// give the same logits, bit for bit, as filling every slab per call.
    @Test func keptSlabsGiveTheSameLogits() throws {
        let (model, path) = try LongHeadsInvariantTests.model()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let chunks = 6
        let document = LongHeadsInvariantTests.tokens(chunks * Self.w + 5, seed: 31)
        let (archive, tail) = try Self.archive(model, document, chunks: chunks)
        let question = LongHeadsInvariantTests.tokens(Self.w + 4, seed: 32)
        func logits(limit: Int) throws -> (logits: [Float], kept: Int) {
            let lh = try LongHeadsAttention(config: model.config, parameters: Self.parameters, archive: archive, pool: model.pool)
            lh.slabCacheLimitBytes = limit
            var out = try Self.feed(model, tail + question, lh)
            for t in LongHeadsInvariantTests.tokens(6, seed: 33) {  // decode steps
                out += try model.forward([t], start: lh.position, attention: lh, logits: .all)
            }
            archive.truncate(to: chunks)
            return (out, lh.slabCacheBytes)
        }
        let filled = try logits(limit: 0), kept = try logits(limit: 1 << 20)
        #expect(filled.kept == 0 && kept.kept > 0)
        Self.expectSame(filled.logits, kept.logits, "kept slabs against filled ones")
    }
}
