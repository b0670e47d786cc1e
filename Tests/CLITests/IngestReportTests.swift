import Foundation
import GGUF
import LongHeads
import Model
import Pipeline
import TestSupport
import Testing
import Tokenization

/// What `ingest` prints, built in Pipeline (`IngestProgressLog`, `IngestSummary.jsonLine`).
@Suite struct IngestReportTests {
    @Test func progressTextAndSummaryLine() throws {
        let modelPath = try TinyModel().write(name: "ingest-report")
        let dir = temp("ingest-report-\(UUID().uuidString.prefix(6))")
        defer { for p in [modelPath, dir] { try? FileManager.default.removeItem(atPath: p) } }
        let file = try GGUFFile(path: modelPath)
        let pipeline = DocumentPipeline(model: try LlamaModel(file: file, threads: 2, maxBatch: 16), tokenizer: try Tokenizer(gguf: file),
                                        budgetBytes: 16 << 20)
        var updates = [IngestProgress]()
        let text = String(repeating: "the cart rolled past the mill and stood there. ", count: 12)
        let summary = try pipeline.ingest(source: DocumentSource(bytes: Array(text.utf8)), to: dir, modelFile: file,
                                          parameters: LongHeadsParameters(chunkSize: 16, attentionLength: 64), precision: .default,
                                          chat: false, progress: { updates.append($0) })
        let last = try #require(updates.last)
        #expect(last.done)

        // A terminal line, rewritten in place; the last one ends the line.
        let tty = IngestProgressLog(mode: .tty)
        let shown = updates.compactMap { tty.text(for: $0) }
        #expect(!shown.isEmpty && shown.allSatisfy { $0.hasPrefix("\r\u{1B}[Kingest: ") })
        let end = "\r\u{1B}[Kingest: \(last.tokens) tokens, \(last.chunks) chunks, \(String(format: "%.0f", last.tokensPerSecond)) tok/s, "
        #expect(shown.last?.hasPrefix(end) == true && shown.last?.hasSuffix("\n") == true && shown.dropLast().allSatisfy { !$0.hasSuffix("\n") })
        // JSON lines, sorted keys; the last says done.
        let json = IngestProgressLog(mode: .json)
        let lines = updates.compactMap { json.text(for: $0) }
        #expect(lines.allSatisfy { $0.hasSuffix("}\n") && $0.hasPrefix("{\"bytes_done\":") })
        let o = try #require(try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as? [String: Any])
        #expect(o["done"] as? Bool == true && o["tokens"] as? Int == last.tokens && o["eta_seconds"] == nil)
        #expect(updates.allSatisfy { IngestProgressLog(mode: .none).text(for: $0) == nil })
        // Brief lines (`ask FILE --verbose`): one per interval, and the last.
        let brief = IngestProgressLog(mode: .brief(label: "ingest: ", interval: 1e9))
        #expect(updates.compactMap { brief.text(for: $0) } == [String(format: "ingest: %d tokens, %.1f s\n", last.tokens, last.seconds)])
        let every = IngestProgressLog(mode: .brief(label: "x ", interval: -1))
        #expect(updates.compactMap { every.text(for: $0) }.count == updates.count)

        let line = try summary.jsonLine(store: dir, seconds: 2, peakRSSBytes: 1 << 20)
        let s = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(line.hasPrefix("{\"chunks\":") && s["store"] as? String == dir && s["tokens"] as? Int == summary.info.tokens)
        #expect(s["chunks"] as? Int == summary.computedChunks && s["resumed_chunks"] as? Int == 0 && s["peak_rss_bytes"] as? Int == 1 << 20)
        #expect(s["tokens_per_second"] as? Double == Double(summary.info.tokens) / 2 && s["precision"] as? String == "q4")
    }
}

/// What `ask` and `verify` print, built in Pipeline (`Answer.jsonLine`, `Citation.json`, `appendLine`, `verifyStore`).
@Suite struct AskReportTests {
    @Test func answerLineKeepsItsKeyOrder() throws {
        let json = #"{"question":"q","text":" an answer\n","tokens":3,"openSeconds":0.1,"seconds":0.12345,"#
            + #""sources":[{"start":10,"end":20,"chunk":2,"share":0.66666,"lift":-0.1234}]}"#
        let a = try JSONDecoder().decode(Answer.self, from: Data(json.utf8))
        #expect(try a.jsonLine(id: 4) == #"{"id":4,"answer":"an answer","seconds":0.123,"sources":[{"start":10,"end":20,"chunk":2,"share":0.667,"lift":-0.123}]}"#)
        #expect(try a.jsonLine(id: "x").hasPrefix(#"{"id":"x","#))
    }

    /// A store ingested with `quest` (before `quest-lexical` became the default) gets a hint, unless a policy is asked for.
    @Test func retrievalHintForQuestStores() throws {
        let modelPath = try TinyModel().write(name: "retrieval-hint")
        let dir = temp("retrieval-hint-\(UUID().uuidString.prefix(6))")
        defer { for p in [modelPath, dir, dir + "-lex"] { try? FileManager.default.removeItem(atPath: p) } }
        let file = try GGUFFile(path: modelPath)
        let pipeline = DocumentPipeline(model: try LlamaModel(file: file, threads: 2, maxBatch: 16), tokenizer: try Tokenizer(gguf: file),
                                        budgetBytes: 16 << 20)
        let bytes = Array(String(repeating: "the cart rolled past the mill. ", count: 8).utf8)
        for (path, policy) in [(dir, SelectionPolicy.quest), (dir + "-lex", .questLexical)] {
            try pipeline.ingest(source: DocumentSource(bytes: bytes), to: path, modelFile: file,
                                parameters: LongHeadsParameters(chunkSize: 16, attentionLength: 64, policy: policy), precision: .default, chat: true)
        }
        let quest = try DocumentSession(pipeline: pipeline, store: dir)
        #expect(quest.retrievalHint(policy: nil) == "\(dir) was ingested with policy=quest, which does not retrieve the question's chunk; "
                + "--policy quest-lexical adds retrieval on the same store")
        #expect(quest.retrievalHint(policy: .quest) == nil)
        #expect(try DocumentSession(pipeline: pipeline, store: dir + "-lex").retrievalHint(policy: nil) == nil)
    }

    @Test func appendLineAppendsOrNamesTheFile() throws {
        let dir = temp("append-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try appendLine("{\"a\":1}", toFile: dir + "/t.jsonl")
        try appendLine("{\"a\":2}", toFile: dir + "/t.jsonl")
        #expect(try String(contentsOfFile: dir + "/t.jsonl", encoding: .utf8) == "{\"a\":1}\n{\"a\":2}\n")
        #expect { try appendLine("x", toFile: dir + "/missing/t.jsonl") } throws: { e in
            (e as? AppendError)?.description.hasPrefix(dir + "/missing/t.jsonl: cannot write (") == true
        }
    }

    @Test func verifyStoreNamesDamageAndUnfinishedIngests() throws {
        let modelPath = try TinyModel().write(name: "verify-store")
        let dir = temp("verify-store-\(UUID().uuidString.prefix(6))")
        defer { for p in [modelPath, dir] { try? FileManager.default.removeItem(atPath: p) } }
        let file = try GGUFFile(path: modelPath)
        let pipeline = DocumentPipeline(model: try LlamaModel(file: file, threads: 2, maxBatch: 16), tokenizer: try Tokenizer(gguf: file),
                                        budgetBytes: 16 << 20)
        let text = String(repeating: "the cart rolled past the mill and stood there. ", count: 6)
        let summary = try pipeline.ingest(source: DocumentSource(bytes: Array(text.utf8)), to: dir, modelFile: file,
                                          parameters: LongHeadsParameters(chunkSize: 16, attentionLength: 64), precision: .default, chat: false)
        guard case .ok(let chunks, let tokens) = try verifyStore(at: dir) else { Issue.record("intact store not ok"); return }
        #expect(chunks > 0 && tokens > 0 && tokens <= summary.info.tokens)
        // A flipped byte in the pages is named.
        let pages = URL(fileURLWithPath: dir + "/pages")
        var data = try Data(contentsOf: pages)
        data[data.count - 5] ^= 0xFF
        try data.write(to: pages)
        guard case .damaged(let problems) = try verifyStore(at: dir) else { Issue.record("damage not found"); return }
        #expect(!problems.isEmpty)
        #expect(throws: (any Error).self) { try verifyStore(at: dir + "/none") }
    }
}

/// Whole reads of a source (`DocumentSource.readAll`, `readText`): prompts, questions files, sections.
@Suite struct WholeSourceTests {
    @Test func readsEverythingAndNamesBadUTF8() throws {
        let big = (0..<200_000).map { UInt8(97 + $0 % 26) }
        #expect(try DocumentSource(bytes: big).readAll() == big)
        #expect(try DocumentSource(bytes: Array("héllo".utf8)).readText() == "héllo")
        #expect(try DocumentSource(bytes: []).readAll().isEmpty)
        #expect { try DocumentSource(bytes: [0x61, 0x62, 0x63, 0xC3, 0x28], name: "prompt").readText() } throws: { e in
            "\(e)" == "prompt: invalid UTF-8 at byte offset 3"
        }
    }
}

/// `ingest --resume` as one library call (`DocumentPipeline.ingest(source:to:resume:…)`).
@Suite struct ResumableIngestTests {
    @Test func resumesAStoreThatIsThereAndStartsOneThatIsNot() throws {
        let modelPath = try TinyModel().write(name: "resumable")
        let dir = temp("resumable-\(UUID().uuidString.prefix(6))")
        defer { for p in [modelPath, dir, dir + "-new"] { try? FileManager.default.removeItem(atPath: p) } }
        let file = try GGUFFile(path: modelPath)
        let pipeline = DocumentPipeline(model: try LlamaModel(file: file, threads: 2, maxBatch: 16), tokenizer: try Tokenizer(gguf: file),
                                        budgetBytes: 16 << 20)
        let bytes = Array(String(repeating: "the cart rolled past the mill and stood there. ", count: 40).utf8)
        let parameters = LongHeadsParameters(chunkSize: 16, attentionLength: 64)
        func ingest(_ path: String, resume: Bool, stopAfter: Int? = nil) throws -> IngestSummary {
            var chunks = 0
            return try pipeline.ingest(source: DocumentSource(bytes: bytes), to: path, resume: resume, modelFile: file, parameters: parameters,
                                       precision: .default, chat: false, blockBytes: 64, progress: { chunks = $0.chunks },
                                       shouldStop: { stopAfter.map { chunks >= $0 } ?? false })
        }
        // No store there: --resume starts one.
        let fresh = try ingest(dir + "-new", resume: true)
        #expect(fresh.resumedChunks == 0 && fresh.computedChunks > 20)
        // Interrupted, then resumed: the committed chunks are kept, the rest computed.
        #expect(throws: PipelineError.self) { try ingest(dir, resume: false, stopAfter: 8) }
        let resumed = try ingest(dir, resume: true)
        #expect(resumed.resumedChunks >= 8 && resumed.resumedChunks + resumed.computedChunks == fresh.computedChunks)
        #expect(resumed.info.tokens == fresh.info.tokens)
    }
}
