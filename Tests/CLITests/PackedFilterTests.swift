import Foundation
import GGUF
import Model
import Pipeline
import TestSupport
import Testing
import Tokenization

/// `filter` packs short records into one forward pass (`YesNoClassifier.scores(packed:)`): the scores and
/// the output must be those of scoring each record alone.
@Suite struct PackedFilterTests {
    static let texts = [
        "a fox", "b", "ticket 10001 [2026-03-04] Mateo G.: Do you offer gift wrapping for the smart watch?",
        "The blender broke the first time I used it. Refund please, not a replacement.", "x y z", "dög 大型",
    ]

    func classifier(_ modelPath: String, maxBatch: Int) throws -> YesNoClassifier {
        let file = try GGUFFile(path: modelPath)
        let model = try LlamaModel(file: file, threads: 2, maxBatch: maxBatch)
        let pipeline = DocumentPipeline(model: model, tokenizer: try Tokenizer(gguf: file), budgetBytes: 16 << 20)
        return try YesNoClassifier(pipeline: pipeline, question: "Is this about a fox?")
    }

    /// Packed in one pass, in two, or one by one: the same probabilities as the plain dense path, bit for bit.
    func expectPackedEqualsAlone(_ c: YesNoClassifier, _ texts: [String]) throws {
        let inputs = texts.map(c.prepare)
        #expect(inputs.allSatisfy { $0.isShort })
        let alone = try inputs.map { try c.denseScore($0) }
        #expect(try c.scores(packed: inputs) == alone)
        let half = inputs.count / 2
        let halves = try c.scores(packed: Array(inputs[..<half])) + (try c.scores(packed: Array(inputs[half...])))
        #expect(halves == alone)
        let single = try inputs.map { try c.scores(packed: [$0])[0] }
        #expect(single == alone)
        let viaScore = try inputs.map { try c.score($0) }
        #expect(viaScore == alone)   // `score` is the dense path
        #expect(Set(alone).count > 1)               // the texts are told apart: the comparison is not vacuous
    }

    /// Texts that start alike: their common start is computed once per batch.
    static let tickets = [
        "ticket 10001 [2026-03-04] Mateo G.: Do you offer gift wrapping for the smart watch?",
        "ticket 10002 [2026-03-25] Maria K.: The blender broke the first time I used it. Refund please.",
        "ticket 10003 [2026-03-25] Maria K.: Where is my order?", "ticket 10004 [2026-03-2", "ticket 1",
    ]

    @Test func packedScoresEqualScoresAloneOnATinyModel() throws {
        let path = try TinyModel().write(name: "packed-classifier")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try classifier(path, maxBatch: 512)
        try expectPackedEqualsAlone(c, Self.texts)
        try expectPackedEqualsAlone(c, Self.tickets)
        try expectPackedEqualsAlone(c, Array(Self.tickets[..<3]))
    }

    @Test(.enabled(if: defaultModel != nil, "the default model is not cached"))
    func packedScoresEqualScoresAloneOnTheDefaultModel() throws {
        let c = try classifier(defaultModel!, maxBatch: 512)
        try expectPackedEqualsAlone(c, Self.texts)
        try expectPackedEqualsAlone(c, Self.tickets)
    }

    /// The CLI: records packed (default, or a small token bound that cuts more batches) and one at a time
    /// (`--batch-tokens 0`), with blank and long records among them: the same bytes out.
    @Test(arguments: [([], []), (["--paragraphs"], []), ([], ["--batch-tokens", "100"])])
    func filterOutputIsTheSameBatchedOrNot(_ mode: [String], _ batched: [String]) throws {
        let long = String(repeating: "the fox runs. ", count: 80)   // past the tiny model's attention length
        let all = Self.texts + ["", "  ", long] + Self.texts.reversed() + (0..<40).map { "record \($0) about a \($0 % 3 == 0 ? "fox" : "cat")" } + Self.tickets
        let paragraphs = mode == ["--paragraphs"]
        let records = paragraphs ? all.filter { !$0.allSatisfy(\.isWhitespace) } : all
        let input = [UInt8](records.joined(separator: paragraphs ? "\n\n" : "\n").utf8)
        func run(_ extra: [String]) throws -> String {
            let r = try longheads(["filter", "Is this about a fox?", "--model", jobsModel, "--score", "--threshold", "0"] + mode + extra,
                                  stdinBytes: input)
            #expect(r.status == 0, "\(r.stderr)")
            return String(decoding: r.stdout, as: UTF8.self)
        }
        let one = try run(["--batch-tokens", "0"])
        #expect(try run(batched) == one)
        // Every record passes at threshold 0, each with its own score.
        let rows = one.split(separator: "\n", omittingEmptySubsequences: false).filter { $0.contains("\t") }
        #expect(rows.count == records.count)
        #expect(Set(rows.compactMap { Double($0.split(separator: "\t")[0]) }).count > 3)
    }
}
