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

        let line = try summary.jsonLine(store: dir, seconds: 2, peakRSSBytes: 1 << 20)
        let s = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(line.hasPrefix("{\"chunks\":") && s["store"] as? String == dir && s["tokens"] as? Int == summary.info.tokens)
        #expect(s["chunks"] as? Int == summary.computedChunks && s["resumed_chunks"] as? Int == 0 && s["peak_rss_bytes"] as? Int == 1 << 20)
        #expect(s["tokens_per_second"] as? Double == Double(summary.info.tokens) / 2 && s["precision"] as? String == "q4")
    }
}
