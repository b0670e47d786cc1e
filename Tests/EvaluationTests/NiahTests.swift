import Evaluation
import Foundation
import GGUF
import Generation
import LongHeads
import Model
import Pipeline
import TestSupport
import Testing
import Tokenization

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
        let ref = Passkey.prompt(tokens: 1500, depth: 0.4, key: Int(p.expected)!, tokenizer: tok)
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
        // Six complete chunks of 16 are ingested; the tail (96...98) and the last token run on open, in blocks
        // of their own (the state after the tail is what a document session keeps for its next opens).
        #expect(seen.ingest == Set(stride(from: 0, to: 96, by: 16)))
        #expect(seen.open == [96, 99])
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

/// `bench niah --via`: the readings list and who answers each trial.
@Suite struct NiahViaTests {
    func configuration(policies: [String], ingestPolicy: String? = nil, vias: [NiahVia]) -> NiahConfiguration {
        NiahConfiguration(tasks: [.prose], lengths: [700], trials: 1, depths: nil, seed: 1, policies: policies, ingestPolicy: ingestPolicy,
                          chunk: 64, attention: 320, selectiveFrom: nil, precision: .default, vias: vias)
    }

    @Test func policyProblems() {
        #expect(NiahConfiguration.policyProblem(policies: ["quest", "oracle"], ingestPolicy: "paper") == nil)
        #expect(NiahConfiguration.policyProblem(policies: ["quest", "quest"], ingestPolicy: nil) == "--policy: give distinct policies")
        #expect(NiahConfiguration.policyProblem(policies: [], ingestPolicy: nil) == "--policy: give distinct policies")
        #expect(NiahConfiguration.policyProblem(policies: ["quest"], ingestPolicy: "perfect")?.hasSuffix("got 'perfect'") == true)
        #expect(NiahConfiguration.policyProblem(policies: ["perfect"], ingestPolicy: nil)?.hasPrefix("--policy and --ingest-policy take ") == true)
    }

    @Test func parsesDistinctKnownNames() {
        #expect(NiahVia.list("ask") == [.ask])
        #expect(NiahVia.list("generate, ask,generate-no-retrieval") == [.generate, .ask, .generateNoRetrieval])
        for bad in ["", "chat", "ask,", "ask,ask", "generate,Generate"] { #expect(NiahVia.list(bad) == nil, "\(bad)") }
    }

    /// `ask` answers under every policy; each `generate` reading once, under the ingest selection policy
    /// (quest when the oracle ingests: generate has nothing to force).
    @Test func answerers() {
        let a = configuration(policies: ["quest-lexical", "quest"], vias: [.ask, .generate]).answerers
        #expect(a.map(\.via) == [.ask, .ask, .generate] && a.map(\.policy) == ["quest-lexical", "quest", "quest-lexical"])
        let o = configuration(policies: ["oracle", "paper"], vias: [.generateNoRetrieval, .ask]).answerers
        #expect(o.map(\.via) == [.generateNoRetrieval, .ask, .ask] && o.map(\.policy) == ["quest", "oracle", "paper"])
        let g = configuration(policies: ["quest"], ingestPolicy: "paper", vias: [.generate]).answerers
        #expect(g.map(\.via) == [.generate] && g.map(\.policy) == ["paper"])
    }
}

/// `NiahBenchmark` on the tiny model: one row per answerer and trial (`--via`), and the text-mode log lines.
@Suite struct NiahBenchmarkRunTests {
    @Test func viaRowsAndLogLines() throws {
        let path = try TinyModel().write(name: "niah-run")
        let dir = NSTemporaryDirectory() + "niah-run-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { for p in [path, dir] { try? FileManager.default.removeItem(atPath: p) } }
        let file = try GGUFFile(path: path)
        let pipeline = DocumentPipeline(model: try LlamaModel(file: file, threads: 2, maxBatch: 16), tokenizer: try Tokenizer(gguf: file),
                                        budgetBytes: 16 << 20)
        let cfg = NiahConfiguration(tasks: [.prose], lengths: [500], trials: 1, depths: [0.5], seed: 3, policies: ["quest-lexical"],
                                    ingestPolicy: nil, chunk: 16, attention: 48, selectiveFrom: nil, precision: .default,
                                    vias: [.generateNoRetrieval, .ask])
        var trials = [NiahTrial]()
        let rows = try NiahBenchmark(configuration: cfg, pipeline: pipeline, scratchDirectory: dir).run(trial: { trials.append($0) }, summary: { _ in })
        #expect(trials.map(\.via) == ["generate-no-retrieval", "ask"] && rows.map(\.via) == ["generate-no-retrieval", "ask"])
        #expect(trials.map(\.label) == ["generate-no-retrieval:quest-lexical", "quest-lexical"] && rows.map(\.label) == trials.map(\.label))
        #expect(trials[0].questionTokens.value == nil && trials[1].questionTokens.value == ("\n" + Haystack.proseQuestion).utf8.count)
        #expect(trials[0].expected == trials[1].expected && trials[0].tokens == trials[1].tokens)
        for t in trials {
            let lines = t.logLines(heads: 4)
            #expect(lines.count == 2)
            #expect(lines[0].hasPrefix("prose \(t.tokens) tokens depth 0.50 \(t.label): \(t.correct ? "ok" : "MISS") (expected \(t.expected), got \""))
            #expect(lines[1] == "  selection heads/4 per layer: \(t.countsLine)")
        }
        // The scratch stores are removed after each trial.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }
}
