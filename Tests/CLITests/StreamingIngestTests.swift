import Foundation
import GGUF
import KVStore
import LongHeads
import Model
import Pipeline
import TestSupport
import Testing
import Tokenization

#if canImport(Glibc)
import Glibc
#endif

/// The store files that must be equal byte for byte between two ingests of one document (each file
/// starts with a 64-byte header holding the store's random id, which differs).
private let comparedFiles = ["pages", "pagetable", "features", "tokens"]

private func sameStore(_ a: String, _ b: String) throws -> Bool {
    for f in comparedFiles {
        let x = try Data(contentsOf: URL(fileURLWithPath: a + "/" + f)).dropFirst(64)
        let y = try Data(contentsOf: URL(fileURLWithPath: b + "/" + f)).dropFirst(64)
        if x != y { return false }
    }
    let ia = try JSONDecoder().decode(StoreInfo.self, from: Data(try StoreReader.open(at: a).header.blob))
    let ib = try JSONDecoder().decode(StoreInfo.self, from: Data(try StoreReader.open(at: b).header.blob))
    return ia.tailTokens == ib.tailTokens && ia.tokens == ib.tokens && ia.sourceBytes == ib.sourceBytes && ia.complete == true
        && ib.complete == true
}

/// A document with digits, runs of spaces and newlines, and multi-byte characters.
private let document = (0..<30).map { i in
    "Line \(i): the quick brown fox — \(i * 7919) jumps  over the lazy dög.\(i % 5 == 0 ? "\n\n  " : " ")大型 \(i).."
}.joined(separator: "\n")

/// Streaming ingest and resume through the pipeline API, on a tiny model (chunks of 16 tokens).
@Suite struct StreamingIngestTests {
    let parameters = LongHeadsParameters(chunkSize: 16, attentionLength: 64)

    func pipeline(_ modelPath: String) throws -> (DocumentPipeline, GGUFFile) {
        let file = try GGUFFile(path: modelPath)
        let model = try LlamaModel(file: file, threads: 2, maxBatch: 16)
        return (DocumentPipeline(model: model, tokenizer: try Tokenizer(gguf: file), budgetBytes: 16 << 20), file)
    }

    @Test func streamedStoreEqualsInMemoryIngest() throws {
        let modelPath = try TinyModel().write(name: "stream-eq")
        let a = temp("stream-a-\(UUID().uuidString.prefix(6))"), b = temp("stream-b-\(UUID().uuidString.prefix(6))")
        defer { for p in [modelPath, a, b] { try? FileManager.default.removeItem(atPath: p) } }
        let (p, file) = try pipeline(modelPath)
        let whole = try p.ingest(text: document, to: a, modelFile: file, parameters: parameters, precision: .f16, chat: true)
        // Blocks of 7 bytes cut characters, numbers and space runs everywhere.
        let streamed = try p.ingest(source: DocumentSource(bytes: Array(document.utf8)), to: b, modelFile: file,
                                    parameters: parameters, precision: .f16, chat: true, blockBytes: 7)
        #expect(streamed.info.tokens == whole.tokens)
        #expect(streamed.info.sourceBytes == document.utf8.count)
        #expect(try sameStore(a, b))
    }

    /// `peek` reads ahead without consuming: `read` hands the peeked bytes out first, and a peeked source
    /// ingests to the same store as a fresh one.
    @Test func peekedSourceReadsAndIngestsWhole() throws {
        let bytes = Array(document.utf8)
        let source = DocumentSource(bytes: bytes)
        #expect(try source.peek(10) == Array(bytes[..<10]))
        #expect(try source.peek(25) == Array(bytes[..<25]))   // a longer peek extends the first
        var out = [UInt8](), block = [UInt8](repeating: 0, count: 7)
        while true {
            let n = try block.withUnsafeMutableBytes { try source.read(into: $0) }
            if n == 0 { break }
            out += block[..<n]
        }
        #expect(out == bytes)
        #expect(try DocumentSource(bytes: Array(bytes[..<5])).peek(10) == Array(bytes[..<5]))   // short at the end

        let modelPath = try TinyModel().write(name: "stream-peek")
        let a = temp("stream-pa-\(UUID().uuidString.prefix(6))"), b = temp("stream-pb-\(UUID().uuidString.prefix(6))")
        defer { for p in [modelPath, a, b] { try? FileManager.default.removeItem(atPath: p) } }
        let (p, file) = try pipeline(modelPath)
        try p.ingest(source: DocumentSource(bytes: bytes), to: a, modelFile: file, parameters: parameters, precision: .f16, chat: true)
        let peeked = DocumentSource(bytes: bytes)
        _ = try peeked.peek(300)
        try p.ingest(source: peeked, to: b, modelFile: file, parameters: parameters, precision: .f16, chat: true, blockBytes: 64)
        #expect(try sameStore(a, b))
    }

    /// `filter` of a long record: the question after the text retrieves the chunk holding its rare word;
    /// short texts and templates that ask before the text retrieve nothing.
    @Test func classifierQuestionRetrievesTheTextsChunk() throws {
        let modelPath = try TinyModel().write(name: "classify-lexical")
        defer { try? FileManager.default.removeItem(atPath: modelPath) }
        let (p, _) = try pipeline(modelPath)
        let params = LongHeadsParameters(chunkSize: 16, attentionLength: 512)  // room for the template's examples
        var words = (0..<60).map { "the cart rolled past mill \($0 % 7 == 0 ? "and" : "or") stood" }
        words.insert("zqjzqj", at: 30)   // z, q, j: in neither the filler nor the template
        let text = words.joined(separator: " ")
        let c = try YesNoClassifier(pipeline: p, question: "Is zqjzqj here?", parameters: params)
        _ = try c.score(text)
        // One token per byte: the needle's position is the prompt prefix plus its byte offset in the text.
        let tok = p.tokenizer
        let before = YesNoClassifier.defaultTemplate.components(separatedBy: "{text}")[0]
        let prefix = (tok.addBOS && tok.bosID != nil ? 1 : 0) + tok.encode(before).count
        let at = prefix + text.utf8.count - text.components(separatedBy: "zqjzqj")[1].utf8.count - 6
        #expect(c.lastSharedChunks == [at / 16] || c.lastSharedChunks == [(at + 5) / 16], "\(c.lastSharedChunks), needle at \(at)")
        _ = try c.score("a short text")
        #expect(c.lastSharedChunks.isEmpty)
        let asksFirst = try YesNoClassifier(pipeline: p, question: "Is zqjzqj here?", parameters: params,
                                            template: "Question: {question}\nText: {text}\nAnswer:")
        _ = try asksFirst.score(text)
        #expect(asksFirst.lastSharedChunks.isEmpty)
    }

    /// `quest-lexical`: the chunk sharing the question's rare tokens is in every head's selection for
    /// each question token, and only when the new tokens are a question.
    @Test func questLexicalSharesTheRetrievedChunk() throws {
        let modelPath = try TinyModel().write(name: "lexical")
        let store = temp("lexical-\(UUID().uuidString.prefix(6))")
        defer { for p in [modelPath, store] { try? FileManager.default.removeItem(atPath: p) } }
        let (p, file) = try pipeline(modelPath)
        // Lowercase filler (the tiny tokenizer is byte-level: a byte is a token), capitals only in the needle.
        let filler = (0..<90).map { "the cart rolled past mill \($0 % 7 == 0 ? "and" : "or") stood" }
        var words = filler
        words.insert("QZX", at: 60)
        let text = words.joined(separator: " ")
        var parameters = self.parameters
        parameters.policy = .questLexical
        let info = try p.ingest(text: text, to: store, modelFile: file, parameters: parameters, precision: .f16, chat: false)
        let ids = p.documentTokens(text, chat: false).ids
        let needle = ids.firstIndex(of: Int32(UInt8(ascii: "Q")))! / parameters.chunkSize
        let question = p.questionTokens("What is QZX?", chat: false, raw: false)
        let questionStart = info.tokens
        var checked = 0
        let (session, _) = try p.open(store: store, modelFile: file, then: question, question: true) { attention in
            attention.selections.observe { record in
                for p in record.positions where p >= questionStart {
                    for h in 0..<4 {
                        let chosen = Array(record.chunks(position: p, head: h))
                        #expect(chosen.contains(Int32(needle)))
                        checked += 1
                    }
                }
            }
        }
        #expect(checked == question.count * 4 * 2)  // tokens × heads × layers
        #expect(session.attention.sharedChunks == [needle])
        // The store remembers its policy; without a question nothing is shared.
        let (plain, _) = try p.open(store: store, modelFile: file, then: question)
        #expect(plain.attention.sharedChunks.isEmpty && plain.attention.parameters.policy == .questLexical)
    }

    @Test func resumeAfterAStopEqualsAnUninterruptedIngest() throws {
        let modelPath = try TinyModel().write(name: "stream-resume")
        let a = temp("resume-a-\(UUID().uuidString.prefix(6))"), b = temp("resume-b-\(UUID().uuidString.prefix(6))")
        defer { for p in [modelPath, a, b] { try? FileManager.default.removeItem(atPath: p) } }
        let (p, file) = try pipeline(modelPath)
        let bytes = Array(document.utf8)
        try p.ingest(source: DocumentSource(bytes: bytes), to: a, modelFile: file, parameters: parameters, precision: .f16, chat: true)
        // Stop three times at different chunks, resuming each time, then finish.
        var stops = 0
        for stopAfter in [3, 20, 41] {
            var seen = 0
            do {
                let stop = { () -> Bool in seen += 1; return seen >= stopAfter }
                if stops == 0 {
                    try p.ingest(source: DocumentSource(bytes: bytes), to: b, modelFile: file, parameters: parameters, precision: .f16,
                                 chat: true, blockBytes: 1000, shouldStop: stop)
                } else {
                    try p.resume(source: DocumentSource(bytes: bytes), store: b, modelFile: file, blockBytes: 333, shouldStop: stop)
                }
                Issue.record("not interrupted")
            } catch PipelineError.interrupted(_, let chunks, _) {
                #expect(chunks > 0)
            }
            stops += 1
            // An interrupted store cannot be asked.
            #expect(throws: PipelineError.self) { try p.open(store: b, modelFile: file, then: [65]) }
        }
        let r = try p.resume(source: DocumentSource(bytes: bytes), store: b, modelFile: file)
        #expect(r.resumedChunks >= 64 && r.computedChunks > 0)
        #expect(try sameStore(a, b))
        // Resuming a finished store only checks it.
        let again = try p.resume(source: DocumentSource(bytes: bytes), store: b, modelFile: file)
        #expect(again.computedChunks == 0)
        #expect(try sameStore(a, b))
    }

    @Test func aChangedSourceIsRefused() throws {
        let modelPath = try TinyModel().write(name: "stream-changed")
        let b = temp("changed-\(UUID().uuidString.prefix(6))")
        defer { for p in [modelPath, b] { try? FileManager.default.removeItem(atPath: p) } }
        let (p, file) = try pipeline(modelPath)
        var seen = 0
        #expect(throws: PipelineError.self) {
            try p.ingest(source: DocumentSource(bytes: Array(document.utf8)), to: b, modelFile: file, parameters: parameters,
                         precision: .f16, chat: true, shouldStop: { seen += 1; return seen >= 20 })
        }
        // One character changed inside the committed part; then a document cut short.
        var edited = Array(document.utf8)
        edited[200] = UInt8(ascii: "X")
        do {
            try p.resume(source: DocumentSource(bytes: edited), store: b, modelFile: file)
            Issue.record("resumed a changed document")
        } catch let e as PipelineError {
            guard case .sourceChanged = e else { Issue.record("\(e)"); return }
            #expect(e.description.contains("not the one this store was ingested from"))
        }
        #expect(throws: PipelineError.self) { try p.resume(source: DocumentSource(bytes: Array(document.utf8.prefix(100))), store: b, modelFile: file) }
        // The unchanged document still resumes.
        #expect(try p.resume(source: DocumentSource(bytes: Array(document.utf8)), store: b, modelFile: file).info.complete == true)
    }
}

/// Runs the `longheads` binary with stdin from a file; `killAfter` sends `signal` after that many seconds.
private func runCLI(_ args: [String], stdinFile: String? = nil, signal: Int32? = nil, after: Double = 0) throws -> CLIRun {
    let p = longheadsProcess(args)
    let out = temp("out-\(UUID().uuidString.prefix(6))"), err = temp("err-\(UUID().uuidString.prefix(6))")
    FileManager.default.createFile(atPath: out, contents: nil)
    FileManager.default.createFile(atPath: err, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: out); try? FileManager.default.removeItem(atPath: err) }
    p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
    p.standardInput = stdinFile.map { FileHandle(forReadingAtPath: $0)! } ?? FileHandle.nullDevice
    try p.run()
    if let signal {
        usleep(UInt32(after * 1e6))
        kill(p.processIdentifier, signal)
    }
    p.waitUntilExit()
    return CLIRun(status: p.terminationStatus, stdout: try String(contentsOfFile: out, encoding: .utf8),
                  stderr: try String(contentsOfFile: err, encoding: .utf8))
}

/// `longheads ingest` streaming, Ctrl-C, kill -9 and `--resume`, on the tiny model.
@Suite struct StreamingIngestCLITests {
    static let common = ["--chunk", "16", "--attention", "64", "--progress", "none"]

    /// A document long enough that an ingest takes a second or so on the tiny model.
    static let longDocument = String(repeating: document + "\n", count: 4)

    func writeDoc(_ text: String) throws -> String {
        let path = temp("doc-\(UUID().uuidString.prefix(6)).txt")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func stdinEqualsFileAndKillNineResumes() throws {
        let model = try TinyModel().write(name: "cli-kill")
        let doc = try writeDoc(Self.longDocument)
        let a = temp("kill-a-\(UUID().uuidString.prefix(6))"), b = temp("kill-b-\(UUID().uuidString.prefix(6))")
        defer { for p in [model, doc, a, b] { try? FileManager.default.removeItem(atPath: p) } }
        let t0 = Date()
        let r = try runCLI(["ingest", doc, "--store", a, "--model", model] + Self.common)
        #expect(r.status == 0, "\(r.stderr)")
        let full = Date().timeIntervalSince(t0)
        // From stdin, in small blocks, killed at random moments and resumed until done.
        var rng = SystemRandomNumberGenerator()
        var kills = 0
        var latest = max(0.1, full * 0.8)
        for _ in 0..<12 {
            let resume = FileManager.default.fileExists(atPath: b) ? ["--resume"] : []
            let args = ["ingest", "-", "--store", b, "--model", model, "--read-block", "4096"] + Self.common + resume
            let k = try runCLI(args, stdinFile: doc, signal: SIGKILL, after: Double.random(in: 0.05...latest, using: &rng))
            if k.status == 0 {
                if kills > 0 { break }
                // Done before any kill landed (on a loaded machine the timed run is a poor guide): start over, killing sooner.
                try? FileManager.default.removeItem(atPath: b)
                latest = max(0.06, latest / 2)
                continue
            }
            kills += 1
        }
        let done = try runCLI(["ingest", "-", "--store", b, "--model", model, "--resume"] + Self.common, stdinFile: doc)
        #expect(done.status == 0, "\(done.stderr)")
        #expect(kills > 0)
        #expect(try sameStore(a, b))
        let q = ["ask", "--model", model, "--max-tokens", "5", "What does the fox do?"]
        #expect(try runCLI(q + ["--store", a]).stdout == (try runCLI(q + ["--store", b]).stdout))
    }

    @Test func ctrlCCommitsAndSaysHowToResume() throws {
        let model = try TinyModel().write(name: "cli-int")
        let doc = try writeDoc(Self.longDocument + Self.longDocument)
        let b = temp("int-\(UUID().uuidString.prefix(6))")
        defer { for p in [model, doc, b] { try? FileManager.default.removeItem(atPath: p) } }
        let r = try runCLI(["ingest", doc, "--store", b, "--model", model] + Self.common, signal: SIGINT, after: 0.6)
        #expect(r.status == 130, "\(r.stderr)")
        #expect(r.stderr.contains("--resume"), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
        let asked = try runCLI(["ask", "--store", b, "--model", model, "What?"])
        #expect(asked.status == 65 && asked.stderr.contains("--resume"), "\(asked.stderr)")
        let done = try runCLI(["ingest", doc, "--store", b, "--model", model, "--resume"] + Self.common)
        #expect(done.status == 0, "\(done.stderr)")
        let o = try JSONSerialization.jsonObject(with: Data(done.stdout.utf8)) as! [String: Any]
        #expect((o["resumed_chunks"] as! Int) > 0)
    }

    @Test func emptyAndInvalidInputs() throws {
        let model = try TinyModel().write(name: "cli-bad")
        let empty = try writeDoc("")
        let bad = temp("bad-\(UUID().uuidString.prefix(6)).txt")
        try Data(Array("Hello wörld, ".utf8) + [0xC3, 0x28] + Array(" more".utf8)).write(to: URL(fileURLWithPath: bad))
        let s = temp("bad-store-\(UUID().uuidString.prefix(6))")
        defer { for p in [model, empty, bad, s] { try? FileManager.default.removeItem(atPath: p) } }
        let e = try runCLI(["ingest", "-", "--store", s, "--model", model] + Self.common, stdinFile: empty)
        expectCleanFailure(e, code: 65, mentions: "empty")
        let u = try runCLI(["ingest", bad, "--store", s + "2", "--model", model, "--read-block", "14"] + Self.common)
        expectCleanFailure(u, code: 65, mentions: "invalid UTF-8 at byte offset 14")
        let m = try runCLI(["ingest", temp("missing.txt"), "--store", s + "3", "--model", model] + Self.common)
        expectCleanFailure(m, code: 66, mentions: "missing.txt")
        try? FileManager.default.removeItem(atPath: s + "2")
    }
}
