import Evaluation
import Foundation
import TestSupport
import Testing

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

    /// `--via ask,generate`: each trial's prompt is read through `ask` (every policy) and through `generate`
    /// (the whole prompt, its last paragraph the retrieval question); one row per reading, each naming its via.
    @Test func viaAskAndGenerate() throws {
        let model = try TinyModel().write(name: "niah-via")
        defer { try? FileManager.default.removeItem(atPath: model) }
        let r = try longheads(["bench", "niah", "--model", model, "--task", "prose", "--policy", "quest-lexical,quest",
                               "--via", "ask,generate,generate-no-retrieval", "--depths", "0.4"] + Self.small)
        #expect(r.status == 0, "\(r.stderr)")
        let rows = try lines(r.stdout)
        let trialRows = rows.filter { $0["trial"] != nil }, summaries = rows.filter { $0["trial"] == nil }
        let answerers = ["ask quest-lexical", "ask quest", "generate quest-lexical", "generate-no-retrieval quest-lexical"]
        #expect(trialRows.count == 2 * answerers.count && summaries.count == answerers.count)
        for trial in 0..<2 {
            let same = trialRows.filter { $0["trial"] as? Int == trial }
            #expect(same.map { "\($0["via"] as! String) \($0["policy"] as! String)" } == answerers)
            // The same haystack and the same prompt tokens, read four ways.
            #expect(Set(same.map { $0["expected"] as! String }).count == 1 && Set(same.map { $0["tokens"] as! Int }).count == 1)
            for t in same {
                #expect(t["correct"] as! Bool == (t["answer"] as! String).lowercased().contains((t["expected"] as! String).lowercased()))
                #expect((t["selection_per_layer"] as! [Double]).count == 2)
            }
            // `generate` reads the whole prompt: its question is the prompt's last line (the tiny tokenizer
            // is one token per byte), and retrieval shares at most one chunk; without retrieval, no question.
            let generate = same[2], plain = same[3]
            #expect(generate["question_tokens"] as? Int == ("\n" + Haystack.proseQuestion).utf8.count)
            #expect((generate["shared_chunks"] as! [Int]).count <= 1)
            #expect(plain["question_tokens"] is NSNull && (plain["shared_chunks"] as! [Int]).isEmpty)
            #expect(generate["read_tokens"] as? Int == generate["tokens"] as? Int)
            #expect(same[0]["question_tokens"] as? Int == ("\n" + Haystack.proseQuestion).utf8.count)
        }
        #expect(summaries.map { $0["via"] as! String } == ["ask", "ask", "generate", "generate-no-retrieval"])

        // Text mode: the table names the generate readings by via and policy.
        let text = try longheads(["bench", "niah", "--model", model, "--task", "prose", "--via", "generate", "--lengths", "500",
                                  "--trials", "1", "--chunk", "16", "--attention", "48"])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("generate:quest-lexical") && text.stderr.contains("generate:quest-lexical"), "\(text.stdout)")
    }

    @Test func badTaskOrPolicyIsAUsageError() throws {
        for args in [["--task", "haystack"], ["--task", "prose,"], ["--policy", "perfect"], ["--depths", "2"], ["--lengths", "0"],
                     ["--via", "chat"], ["--via", "ask,ask"], ["--via", "ask,"]] {
            let r = try longheads(["bench", "niah", "--model", "/nonexistent.gguf"] + args)
            #expect(r.status == 64, "\(args): \(r.stderr)")
            #expect(r.stderr.contains(args[0]), "\(args): \(r.stderr)")
        }
    }
}
