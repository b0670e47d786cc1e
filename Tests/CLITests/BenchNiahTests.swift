import Foundation
import GGUF
import Generation
import LongHeads
import Model
import Pipeline
import TestSupport
import Testing
import Tokenization
@testable import longheads

private func occurrences(of needle: String, in s: String) -> Int { s.components(separatedBy: needle).count - 1 }

/// The tiny model's tokenizer: byte-level, one token per byte, so token counts are byte counts.
private let tinyTokenizer: Tokenizer = {
    let path = try! TinyModel().write(name: "niah-tokenizer")
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try! Tokenizer(gguf: GGUFFile(path: path))
}()

/// Haystack generation (no model run).
@Suite struct NiahHaystackTests {
    let tok = tinyTokenizer

    func prompt(_ task: NiahTask, tokens: Int, depth: Double, trial: Int = 0, seed: UInt64 = 7) -> NiahPrompt {
        var rng = Haystack.trialGenerator(seed: seed, task: task, length: tokens, trial: trial)
        return Haystack.prompt(task: task, tokens: tokens, depth: depth, rng: &rng, tokenizer: tok)
    }

    @Test func tinyTokenizerIsOneTokenPerByte() {
        let s = "The secret ingredient of the festival soup is cactus."
        #expect(tok.encode(s).count == s.utf8.count)
    }

    @Test(arguments: [0.0, 0.1, 0.5, 0.9, 1.0])
    func proseHasOneNeedleAtItsDepth(depth: Double) throws {
        let target = 4000
        let p = prompt(.prose, tokens: target, depth: depth)
        // Close to the target, never over it: it stops at the last sentence that fits.
        #expect(p.ids.count <= target && p.ids.count > target - 120, "\(p.ids.count)")
        #expect(p.ids == tok.encode(p.text))
        let needle = Haystack.proseNeedle(p.expected)
        #expect(Haystack.needleWords.contains(p.expected))
        #expect(occurrences(of: needle, in: p.text) == 1)
        // The answer word occurs in the needle only (the question does not name it).
        #expect(occurrences(of: p.expected, in: p.text.lowercased()) == 1)
        #expect(p.text.hasSuffix("\n" + Haystack.proseQuestion))
        // The span covers the needle sentence.
        #expect(tok.decode(Array(p.ids[p.needleSpan])).trimmingCharacters(in: .whitespaces) == needle)
        #expect(p.allNeedleSpans == [p.needleSpan])
        // Depth: the share of the prose (question and needle excluded) before the needle, within a sentence.
        let question = tok.encode("\n" + Haystack.proseQuestion).count
        let prose = p.ids.count - question - p.needleSpan.count
        let before = Double(p.needleSpan.lowerBound) / Double(prose)
        #expect(abs(before - depth) < 0.04, "needle at \(before), asked \(depth)")
    }

    @Test func proseIsVaried() {
        let p = prompt(.prose, tokens: 6000, depth: 0.5)
        let sentences = p.text.split(whereSeparator: { $0 == "." || $0 == "\n" }).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        #expect(sentences.count > 50)
        #expect(Double(Set(sentences).count) / Double(sentences.count) > 0.95, "\(Set(sentences).count) of \(sentences.count) distinct")
        #expect(p.text.contains("\n"))   // paragraphs
        // No filler word list holds an answer word, so the prose never gives an answer away.
        let filler = Haystack.templates + Haystack.nouns + Haystack.places + Haystack.materials + Haystack.names
        for w in Haystack.needleWords { #expect(!filler.contains { $0.lowercased().contains(w) }, "\(w)") }
        #expect(Set(Haystack.needleWords).count >= 50)
    }

    @Test func multikeyHasFourDistinctKeys() throws {
        for trial in 0..<4 {
            let target = 3000
            let p = prompt(.multikey, tokens: target, depth: 0.3, trial: trial)
            #expect(p.ids.count <= target && p.ids.count > target - 120)
            #expect(p.keys.count == 4 && Set(p.keys).count == 4)
            let asked = try #require(p.asked)
            #expect(p.keys.contains(asked))
            #expect(p.text.hasSuffix("\n" + Haystack.multikeyQuestion(key: asked)))
            #expect(p.expected.count == 7 && Int(p.expected) != nil)
            #expect(occurrences(of: Haystack.multikeyNeedle(key: asked, number: Int(p.expected)!), in: p.text) == 1)
            #expect(occurrences(of: "One of the special magic numbers for ", in: p.text) == 4)
            // Each key's needle once, numbers distinct; the spans in text order, disjoint, one of them the asked one.
            var numbers = Set<String>()
            for (k, span) in zip(p.keys, p.allNeedleSpans) {
                let line = tok.decode(Array(p.ids[span])).trimmingCharacters(in: .whitespaces)
                #expect(line.hasPrefix("One of the special magic numbers for \(k) is: "), "\(line)")
                numbers.insert(String(line.dropFirst("One of the special magic numbers for \(k) is: ".count).dropLast()))
            }
            #expect(numbers.count == 4 && numbers.contains(p.expected))
            #expect(zip(p.allNeedleSpans, p.allNeedleSpans.dropFirst()).allSatisfy { $0.upperBound <= $1.lowerBound })
            #expect(p.allNeedleSpans.contains(p.needleSpan))
            #expect(tok.decode(Array(p.ids[p.needleSpan])).contains(" for \(asked) is: \(p.expected)."))
        }
    }

    @Test func passkeyIsBenchPasskeysPrompt() {
        let p = prompt(.passkey, tokens: 1500, depth: 0.4)
        let ref = BenchPasskey.prompt(tokens: 1500, depth: 0.4, key: Int(p.expected)!, tokenizer: tok)
        #expect(p.ids == ref.ids && p.needleSpan == ref.keySpan && p.text == ref.text)
        #expect(p.expected.count == 5)
    }

    @Test func deterministicFromSeedTaskLengthAndTrial() {
        #expect(prompt(.prose, tokens: 2000, depth: 0.5).text == prompt(.prose, tokens: 2000, depth: 0.5).text)
        #expect(prompt(.prose, tokens: 2000, depth: 0.5).text != prompt(.prose, tokens: 2000, depth: 0.5, trial: 1).text)
        #expect(prompt(.prose, tokens: 2000, depth: 0.5).text != prompt(.prose, tokens: 2000, depth: 0.5, seed: 8).text)
        #expect(prompt(.multikey, tokens: 2000, depth: 0.5).text != prompt(.prose, tokens: 2000, depth: 0.5).text)
    }

    @Test func articles() {
        #expect(Haystack.withArticles("A orange cart and a old map near a wide gate.") == "An orange cart and an old map near a wide gate.")
        let p = prompt(.prose, tokens: 6000, depth: 0.5)
        for v in "aeiou" { #expect(!p.text.contains(" a \(v)") && !p.text.contains("A \(v)")) }
    }

    @Test func answersMatchCaseInsensitively() {
        #expect(Haystack.isCorrect(answer: " Cactus.\nThe", expected: "cactus"))
        #expect(Haystack.isCorrect(answer: " 1234567.", expected: "1234567"))
        #expect(!Haystack.isCorrect(answer: " 123456.", expected: "1234567"))
        #expect(!Haystack.isCorrect(answer: " the soup", expected: "cactus"))
    }
}

/// `DocumentPipeline.run`'s ingest hook: the attention that ingests the complete chunks is handed over.
@Suite struct NiahIngestHookTests {
    @Test func prepareIngestSeesTheIngestedChunks() throws {
        let path = try TinyModel().write(name: "niah-hook")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try GGUFFile(path: path)
        let model = try LlamaModel(file: file, threads: 1, maxBatch: 16)
        let pipeline = DocumentPipeline(model: model, tokenizer: try Tokenizer(gguf: file), budgetBytes: 16 << 20)
        let dir = NSTemporaryDirectory() + "niah-hook-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        final class Seen { var ingest = Set<Int>(), open = Set<Int>() }
        let seen = Seen()
        let ids = (0..<100).map { Int32(65 + $0 % 26) }
        _ = try pipeline.run(prompt: ids, storeAt: dir, modelFile: file, parameters: LongHeadsParameters(chunkSize: 16, attentionLength: 48),
                             precision: .f16, chat: false,
                             prepare: { a in a.selections.observe { seen.open.insert($0.positions.lowerBound) } },
                             prepareIngest: { a in a.selections.observe { seen.ingest.insert($0.positions.lowerBound) } })
        // Six complete chunks of 16 are ingested; the tail (96...98) and the last token run on open.
        #expect(seen.ingest == Set(stride(from: 0, to: 96, by: 16)))
        #expect(seen.open == [96])
    }
}

/// `bench niah` end to end on the tiny model (byte-level vocabulary).
@Suite struct BenchNiahCLITests {
    func lines(_ s: String) throws -> [[String: Any]] {
        try s.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    static let trialKeys = ["task", "length", "tokens", "read_tokens", "trial", "depth", "policy", "ingest_policy", "parameters", "precision", "seed",
                            "expected", "answer", "correct", "ingest_seconds", "ask_seconds", "selection_recall", "selection_per_layer",
                            "needle_in_forced_chunk", "needle_span", "needle_chunks", "answer_chunk", "shared_chunks"]
    static let summaryKeys = ["task", "length", "correct", "trials", "accuracy", "mean_tokens", "policy", "ingest_policy", "parameters",
                              "chunk", "attention", "selective_from", "precision", "seed", "depths", "mean_ingest_seconds",
                              "mean_ask_seconds", "peak_rss_bytes", "mean_selection_recall", "mean_selection_recall_hits",
                              "mean_selection_recall_misses"]

    /// Chunks of 64 and K = 5 chunks per query: two ranked picks, room for a needle straddling two chunks.
    static let small = ["--chunk", "64", "--attention", "320", "--lengths", "700", "--trials", "2", "--json"]

    /// Three policies answer the same two stores per task (one ingest per trial).
    @Test func jsonFields() throws {
        let model = try TinyModel().write(name: "niah-json")
        defer { try? FileManager.default.removeItem(atPath: model) }
        let policies = ["quest", "oracle", "quest-lexical"]
        let r = try longheads(["bench", "niah", "--model", model, "--task", "prose,multikey", "--policy", policies.joined(separator: ","),
                               "--depths", "0.2,0.6"] + Self.small)
        #expect(r.status == 0, "\(r.stderr)")
        let rows = try lines(r.stdout)
        #expect(rows.count == 2 * (2 + 1) * 3)
        let trialRows = rows.filter { $0["trial"] != nil }, summaries = rows.filter { $0["trial"] == nil }
        for t in trialRows {
            for k in Self.trialKeys { #expect(t[k] != nil, "trial lacks \(k)") }
            let policy = t["policy"] as! String
            #expect(t["ingest_policy"] as? String == "quest")
            #expect((t["parameters"] as! String).contains("chunk=64 attention=320"))
            #expect((t["parameters"] as! String).hasSuffix(policy == "oracle" ? "policy=quest oracle=needle" : "policy=\(policy)"))
            let tokens = t["tokens"] as! Int
            #expect(tokens <= 700 && tokens > 600)
            let span = t["needle_span"] as! [Int], chunks = t["needle_chunks"] as! [Int]
            #expect(chunks == Array((span[0] / 64)...((span[1] - 1) / 64)))
            #expect(t["answer_chunk"] as? Int == (tokens - 1) / 64)
            let perLayer = t["selection_per_layer"] as! [Double]
            #expect(perLayer.count == 2)
            let recall = t["selection_recall"] as! Double
            #expect(abs(recall - perLayer.reduce(0, +) / 2) < 1e-9)
            // The oracle puts the needle in every head's selection.
            if policy == "oracle" || t["needle_in_forced_chunk"] as! Bool { #expect(recall == 1) }
            let shared = t["shared_chunks"] as! [Int]
            switch policy {
            case "oracle": #expect(shared == chunks)
            case "quest-lexical": #expect(shared.count <= 1)
            default: #expect(shared.isEmpty)
            }
            if t["task"] as? String == "multikey" { #expect((t["keys"] as! [String]).count == 4 && t["key"] != nil) }
            #expect(t["correct"] as! Bool == (t["answer"] as! String).lowercased().contains((t["expected"] as! String).lowercased()))
        }
        // Per trial, the policies share the haystack and its ingest.
        for (task, trial) in [("prose", 0), ("prose", 1), ("multikey", 0), ("multikey", 1)] {
            let same = trialRows.filter { $0["task"] as? String == task && $0["trial"] as? Int == trial }
            #expect(same.map { $0["policy"] as! String } == policies)
            #expect(Set(same.map { $0["ingest_seconds"] as! Double }).count == 1 && Set(same.map { $0["expected"] as! String }).count == 1)
        }
        #expect(trialRows.map { $0["depth"] as! Double } == [0.2, 0.2, 0.2, 0.6, 0.6, 0.6, 0.2, 0.2, 0.2, 0.6, 0.6, 0.6])
        #expect(summaries.map { $0["task"] as! String } == ["prose", "prose", "prose", "multikey", "multikey", "multikey"])
        #expect(summaries.map { $0["policy"] as! String } == policies + policies)
        for s in summaries {
            for k in Self.summaryKeys { #expect(s[k] != nil, "summary lacks \(k)") }
            #expect(s["trials"] as? Int == 2 && (s["peak_rss_bytes"] as! Int) > 0)
        }
    }

    /// A policy answers alike alone and among others: each open starts from the store as ingested.
    @Test func policiesDoNotInfluenceEachOther() throws {
        let model = try TinyModel().write(name: "niah-alone")
        defer { try? FileManager.default.removeItem(atPath: model) }
        func answers(_ policy: String) throws -> [String: String] {
            let r = try longheads(["bench", "niah", "--model", model, "--task", "prose", "--policy", policy, "--ingest-policy", "quest"] + Self.small)
            #expect(r.status == 0, "\(r.stderr)")
            var out = [String: String]()
            for t in try lines(r.stdout) where t["trial"] != nil { out["\(t["policy"]!)-\(t["trial"]!)"] = t["answer"] as? String }
            return out
        }
        let together = try answers("oracle,quest-lexical,quest")
        let alone = try answers("quest")
        #expect(alone.count == 2)
        for (k, v) in alone { #expect(together[k] == v, "\(k)") }
    }

    /// needle-chunk reads only the needle's chunks and the question (plain attention), alone or among
    /// other policies; the others still read the whole haystack.
    @Test func needleChunkReadsTheNeedlesChunksAndTheQuestion() throws {
        let model = try TinyModel().write(name: "niah-needle")
        defer { try? FileManager.default.removeItem(atPath: model) }
        func trials(_ policy: String) throws -> [[String: Any]] {
            let r = try longheads(["bench", "niah", "--model", model, "--task", "prose,multikey", "--policy", policy,
                                   "--depths", "0.3"] + Self.small)
            #expect(r.status == 0, "\(r.stderr)")
            return try lines(r.stdout).filter { $0["trial"] != nil }
        }
        let together = try trials("quest,needle-chunk"), alone = try trials("needle-chunk")
        #expect(together.count == 8 && alone.count == 4)
        for t in together where t["policy"] as? String == "quest" { #expect(t["read_tokens"] as? Int == t["tokens"] as? Int) }
        let window = together.filter { $0["policy"] as? String == "needle-chunk" }
        for (t, a) in zip(window, alone) {
            // The tiny tokenizer has one token per byte; at depth 0.3 the needle's chunks end before the question.
            let question = t["task"] as? String == "prose" ? Haystack.proseQuestion : Haystack.multikeyQuestion(key: t["key"] as! String)
            let chunks = t["needle_chunks"] as! [Int]
            #expect(t["read_tokens"] as? Int == chunks.count * 64 + ("\n" + question).utf8.count)
            #expect(t["selection_recall"] as? Double == 1)
            #expect((t["parameters"] as! String).hasSuffix("read=needle-chunk"))
            #expect(a["answer"] as? String == t["answer"] as? String && a["read_tokens"] as? Int == t["read_tokens"] as? Int)
        }
    }

    @Test func textModeLogsTrialsAndPrintsATable() throws {
        let model = try TinyModel().write(name: "niah-text")
        defer { try? FileManager.default.removeItem(atPath: model) }
        let r = try longheads(["bench", "niah", "--model", model, "--task", "passkey", "--lengths", "500", "--trials", "1",
                               "--chunk", "16", "--attention", "48"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("passkey ") && r.stderr.contains("selection heads/4 per layer"), "\(r.stderr)")
        let out = r.stdout.split(separator: "\n")
        #expect(out.count == 3, "\(r.stdout)")
        #expect(out[0].hasPrefix("niah chunk=16 attention=48"))
        #expect(out[1].contains("accuracy") && out[1].contains("recall_misses") && out[1].contains("peak_rss_MiB"))
        #expect(out[2].hasPrefix("passkey") && out[2].contains(" 500 "))
    }

    @Test func badTaskOrPolicyIsAUsageError() throws {
        for args in [["--task", "haystack"], ["--task", "prose,"], ["--policy", "perfect"], ["--depths", "2"], ["--lengths", "0"]] {
            let r = try longheads(["bench", "niah", "--model", "/nonexistent.gguf"] + args)
            #expect(r.status == 64, "\(args): \(r.stderr)")
            #expect(r.stderr.contains(args[0]), "\(args): \(r.stderr)")
        }
    }
}

/// Haystacks through Qwen2's tokenizer, whose vocabulary joins a sentence's full stop and the question's
/// newline into one token (".\n"): the haystack alone is then not a token prefix of the prompt.
@Suite(.enabled(if: RealModels.qwen25Coder05B != nil, "needs qwen2.5-coder-0.5b (LONGHEADS_QWEN_MODEL or the model cache)"))
struct NiahQwen2HaystackTests {
    @Test(arguments: [NiahTask.prose, .multikey, .passkey])
    func questionStartsWhereTheEncodingsPart(task: NiahTask) throws {
        let path = try #require(RealModels.qwen25Coder05B)
        let tok = try Tokenizer(gguf: GGUFFile(path: path))
        var rng = Haystack.trialGenerator(seed: 7, task: task, length: 2000, trial: 0)
        let p = Haystack.prompt(task: task, tokens: 2000, depth: 0.5, rng: &rng, tokenizer: tok)
        #expect(p.ids == tok.encode(p.text))
        #expect(p.questionStart > p.needleSpan.upperBound && p.questionStart < p.ids.count)
        // The tokens from questionStart on hold the whole question (their first may carry the haystack's last '.').
        #expect(tok.decode(Array(p.ids[p.questionStart...])).contains("\n"))
    }
}
