import Corpus
import Foundation
import GGUF
import KVStore
import LongHeads
import Model
import Pipeline
import TestSupport
import Testing
import Tokenization

/// Runs the binary with output to files (so that it can be killed at any moment without a pipe filling).
private func run(_ args: [String], kill signal: Int32? = nil, after: Double = 0) throws -> CLIRun {
    let p = longheadsProcess(args)
    let out = temp("corpus-out-\(UUID().uuidString.prefix(6))"), err = temp("corpus-err-\(UUID().uuidString.prefix(6))")
    FileManager.default.createFile(atPath: out, contents: nil)
    FileManager.default.createFile(atPath: err, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: out); try? FileManager.default.removeItem(atPath: err) }
    p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
    p.standardInput = FileHandle.nullDevice
    try p.run()
    if let signal {
        usleep(UInt32(after * 1e6))
        kill(p.processIdentifier, signal)
    }
    p.waitUntilExit()
    return CLIRun(status: p.terminationStatus, stdout: try String(contentsOfFile: out, encoding: .utf8),
                  stderr: try String(contentsOfFile: err, encoding: .utf8))
}

/// Three paragraphs-rich documents with one distinctive sentence each.
private func documents(in dir: String) throws -> [String] {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let facts = ["The lighthouse on Karsa was built by Tomas Velde.", "Plum dumplings need cardamom and flour.",
                 "The treaty of Orvik ended the salt war."]
    return try facts.enumerated().map { i, fact in
        var paragraphs = (0..<8).map { k in "Paragraph \(k) of document \(i): the quiet roads and the market of the town.\nA second line \(k)." }
        paragraphs.insert(fact, at: 5)
        let path = dir + "/doc\(i).txt"
        try (paragraphs.joined(separator: "\n\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

private func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

/// Every store of `a`'s corpus equals `b`'s (data files past their 64-byte prefix, which holds the random
/// store id), and the manifests and indexes are byte-identical.
private func sameCorpus(_ a: String, _ b: String) throws -> Bool {
    guard bytes(a + "/manifest") == bytes(b + "/manifest"), bytes(a + "/index") == bytes(b + "/index"), bytes(a + "/manifest") != nil else {
        return false
    }
    let names = try FileManager.default.contentsOfDirectory(atPath: a + "/segments").sorted()
    guard names == (try FileManager.default.contentsOfDirectory(atPath: b + "/segments").sorted()) else { return false }
    for n in names where !n.hasSuffix(".seg") {
        for f in ["pages", "pagetable", "tokens", "features"] {
            if bytes("\(a)/segments/\(n)/\(f)")?.dropFirst(64) != bytes("\(b)/segments/\(n)/\(f)")?.dropFirst(64) { return false }
        }
    }
    return true
}

@Suite struct CorpusPlanTests {
    @Test func cutsAfterParagraphsAndCoversTheInput() {
        let text = Array("aaaa aaaa\n\nbbbb bbbb bbbb\n\n\ncccc\ndddd dddd dddd dddd\n\neeee".utf8)
        // One "token" per 4 bytes.
        let ranges = text.withUnsafeBytes { Corpus.plan($0, segmentTokens: 4, count: { ($0.count + 3) / 4 }) }
        #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == text.count)
        for (x, y) in zip(ranges, ranges.dropFirst()) { #expect(x.upperBound == y.lowerBound) }
        // Every cut is after a newline.
        for r in ranges.dropFirst() { #expect(text[r.lowerBound - 1] == 0x0A) }
        #expect(ranges.count >= 3)
        // Without a limit: one segment.
        #expect(text.withUnsafeBytes { Corpus.plan($0, segmentTokens: nil, count: { _ in 1 }) } == [0..<text.count])
    }

    @Test func segmentIDsAreStable() {
        let p = LongHeadsParameters.default
        let a = Corpus.segmentID(content: String(repeating: "0", count: 64), range: 0..<10, model: [1, 2], parameters: p, precision: .default, chat: true)
        let b = Corpus.segmentID(content: String(repeating: "0", count: 64), range: 0..<10, model: [1, 2], parameters: p, precision: .default, chat: true)
        let c = Corpus.segmentID(content: String(repeating: "0", count: 64), range: 0..<11, model: [1, 2], parameters: p, precision: .default, chat: true)
        #expect(a == b && a != c && a.count == 32)
    }
}

/// `ingest --corpus`, `corpus index`, `ask --corpus` on the tiny model.
@Suite struct CorpusCLITests {
    static let common = ["--chunk", "16", "--attention", "64", "--progress", "none"]

    @Test func ingestIsIdempotentAndRangesBuildTheSameCorpus() throws {
        let model = try TinyModel().write(name: "corpus-idem")
        let dir = temp("corpus-idem-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: model) }
        let docs = try documents(in: dir + "/docs")
        let a = dir + "/a", b = dir + "/b"
        let r = try run(["ingest", "--corpus", a, "--segment-tokens", "120", "--model", model] + Self.common + docs)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count > docs.count, "\(r.stdout)")
        #expect(lines.allSatisfy { $0.contains("\"outcome\":\"added\"") })
        let manifest = bytes(a + "/manifest"), index = bytes(a + "/index")
        // Again: nothing changes.
        let again = try run(["ingest", "--corpus", a, "--segment-tokens", "120", "--model", model] + Self.common + docs)
        #expect(again.status == 0 && again.stdout.split(separator: "\n").allSatisfy { $0.contains("\"outcome\":\"present\"") }, "\(again.stdout)")
        #expect(bytes(a + "/manifest") == manifest && bytes(a + "/index") == index)
        // As Spark tasks would: each planned range on its own, in reverse order, no index; then one index.
        let plan = try run(["corpus", "plan", "--segment-tokens", "120", "--model", model] + docs)
        #expect(plan.status == 0, "\(plan.stderr)")
        for line in plan.stdout.split(separator: "\n").reversed() {
            let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let t = try run(["ingest", "--corpus", b, "--no-index", "--source-range", "\(o["start"]!):\(o["end"]!)", "--model", model]
                            + Self.common + [o["source"] as! String])
            #expect(t.status == 0, "\(t.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: b + "/manifest"))
        let idx = try run(["corpus", "index", b, "--model", model])
        #expect(idx.status == 0, "\(idx.stderr)")
        #expect(try sameCorpus(a, b))
        // Both answer alike, citing a file and its bytes.
        let q = ["--model", model, "--max-tokens", "4", "Who built the lighthouse on Karsa?"]
        let x = try run(["ask", "--corpus", a] + q), y = try run(["ask", "--corpus", b] + q)
        #expect(x.status == 0 && x.stdout == y.stdout, "\(x.stderr)")
        let qf = dir + "/q.jsonl"
        try "{\"id\": 1, \"question\": \"Who built the lighthouse on Karsa?\"}\n{\"id\": 2, \"question\": \"What ended the salt war?\"}\n"
            .write(toFile: qf, atomically: true, encoding: .utf8)
        let batch = try run(["ask", "--corpus", a, "--questions", qf, "--segments", "2", "--model", model, "--max-tokens", "4"])
        #expect(batch.status == 0, "\(batch.stderr)")
        let answers = batch.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(answers.count == 2)
        for (k, o) in answers.enumerated() {
            let sources = o["sources"] as! [[String: Any]]
            let top = try #require(sources.first)
            let file = top["file"] as! String, start = top["start"] as! Int, end = top["end"] as! Int
            // The cited bytes overlap the sentence that answers (chunks of 16 tokens cut sentences).
            let whole = try String(contentsOfFile: file, encoding: .utf8)
            let fact = k == 0 ? "The lighthouse on Karsa was built by Tomas Velde." : "The treaty of Orvik ended the salt war."
            let at = try #require(whole.range(of: fact))
            let fs = whole.utf8.distance(from: whole.startIndex, to: at.lowerBound), fe = fs + fact.utf8.count
            #expect(start < fe && end > fs, "cited \(start)..<\(end), the answer is at \(fs)..<\(fe) in \(file)")
            #expect((o["answers"] as! [Any]).count == 2)
        }
    }

    @Test func killNineDuringAnAddThenRerunGivesTheCleanCorpus() throws {
        let model = try TinyModel().write(name: "corpus-kill")
        let dir = temp("corpus-kill-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: model) }
        let docs = try documents(in: dir + "/docs")
        // One long document: its ingest takes long enough to be killed in the middle.
        let long = dir + "/docs/long.txt"
        let text = try docs.map { try String(contentsOfFile: $0, encoding: .utf8) }.joined(separator: "\n\n")
        try String(repeating: text + "\n\n", count: 3).write(toFile: long, atomically: true, encoding: .utf8)
        let args = ["--segment-tokens", "400", "--model", model] + Self.common + docs + [long]
        let t0 = Date()
        let clean = try run(["ingest", "--corpus", dir + "/clean"] + args)
        #expect(clean.status == 0, "\(clean.stderr)")
        let full = Date().timeIntervalSince(t0)
        var kills = 0, latest = max(0.1, full * 0.9)
        for _ in 0..<10 {
            let k = try run(["ingest", "--corpus", dir + "/killed"] + args, kill: SIGKILL, after: Double.random(in: 0.05...latest))
            if k.status == 0 {
                if kills > 0 { break }
                try? FileManager.default.removeItem(atPath: dir + "/killed")
                latest = max(0.06, latest / 2)
                continue
            }
            kills += 1
        }
        let done = try run(["ingest", "--corpus", dir + "/killed"] + args)
        #expect(done.status == 0, "\(done.stderr)")
        #expect(kills > 0)
        #expect(try sameCorpus(dir + "/clean", dir + "/killed"))
        // Nothing is left under tmp/ but lock files of finished adds (none) and no temporary names.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir + "/killed/tmp")
        #expect(leftovers.allSatisfy { $0.hasSuffix(".lock") }, "\(leftovers)")
    }

    @Test func summarizeCorpusWritesOneLinePerSegmentThenOverall() throws {
        let model = try TinyModel().write(name: "corpus-sum")
        let dir = temp("corpus-sum-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: model) }
        let docs = try documents(in: dir + "/docs")
        let c = dir + "/c"
        let ingest = try run(["ingest", "--corpus", c, "--segment-tokens", "150", "--model", model] + Self.common + docs)
        #expect(ingest.status == 0, "\(ingest.stderr)")
        let segments = ingest.stdout.split(separator: "\n").count
        let r = try run(["summarize", "--corpus", c, "--model", model, "--max-tokens", "6"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == segments + 1, "\(r.stdout)")
        #expect(lines.dropLast().allSatisfy { l in docs.contains { l.hasPrefix(Corpus.absolutePath($0) + " ") } }, "\(r.stdout)")
        #expect(lines.last?.hasPrefix("Overall: ") == true)
        let bad = try run(["summarize", "--corpus", c, "FILE", "--model", model])
        #expect(bad.status == 64)
    }

    @Test func damagedCorpusFilesAreNamedWithExit65() throws {
        let model = try TinyModel().write(name: "corpus-bad")
        let dir = temp("corpus-bad-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: model) }
        let docs = try documents(in: dir + "/docs")
        let c = dir + "/c"
        #expect(try run(["ingest", "--corpus", c, "--model", model] + Self.common + Array(docs.prefix(2))).status == 0)
        let ask = ["ask", "--corpus", c, "--model", model, "--max-tokens", "2", "Who built the lighthouse?"]
        let manifest = try #require(bytes(c + "/manifest")), index = try #require(bytes(c + "/index"))
        func expectRefused(_ mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try run(ask)
            #expect(r.status == 65, "\(r.status) \(r.stderr)", sourceLocation: sourceLocation)
            #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)", sourceLocation: sourceLocation)
            for m in mentions { #expect(r.stderr.contains(m), "\(r.stderr)", sourceLocation: sourceLocation) }
        }
        // A flipped byte: the checksum.
        var m = manifest
        m[m.count / 2] ^= 0x20
        try m.write(to: URL(fileURLWithPath: c + "/manifest"))
        try expectRefused(["/manifest", "crc32c"])
        // A resealed manifest with a hostile field: the field is named.
        try manifest.write(to: URL(fileURLWithPath: c + "/manifest"))
        var o = try JSONSerialization.jsonObject(with: Data(try SealedFile.read(path: c + "/manifest", magic: "LHCMANI"))) as! [String: Any]
        var segs = o["segments"] as! [[String: Any]]
        segs[0]["tokens"] = -5
        o["segments"] = segs
        try Data(SealedFile.seal(magic: "LHCMANI", payload: Array(try JSONSerialization.data(withJSONObject: o))))
            .write(to: URL(fileURLWithPath: c + "/manifest"))
        try expectRefused(["/manifest", "`tokens`"])
        try manifest.write(to: URL(fileURLWithPath: c + "/manifest"))
        // A truncated index; an index of another manifest.
        try index.prefix(index.count - 9).write(to: URL(fileURLWithPath: c + "/index"))
        try expectRefused(["/index", "length"])
        segs = (try JSONSerialization.jsonObject(with: Data(try SealedFile.read(path: c + "/manifest", magic: "LHCMANI"))) as! [String: Any])["segments"] as! [[String: Any]]
        try index.write(to: URL(fileURLWithPath: c + "/index"))
        try Data(SealedFile.seal(magic: "LHCMANI", payload: Array(try JSONSerialization.data(withJSONObject: ["model": o["model"]!, "segments": [segs[0]]]))))
            .write(to: URL(fileURLWithPath: c + "/manifest"))
        try expectRefused(["/index", "manifestCRC"])
        try manifest.write(to: URL(fileURLWithPath: c + "/manifest"))
        // A hostile postings row (resealed): named when read.
        var ix = [UInt8](index)
        let chunks = Int(ix[32]) | Int(ix[33]) << 8, terms = Int(ix[40]) | Int(ix[41]) << 8
        let firstPosting = 24 + 40 + 24 * chunks + 16 * terms
        for k in 0..<(ix.count - 4 - firstPosting) / 8 { ix[firstPosting + 8 * k + 3] = 0x7f }  // chunk ≥ 2^30
        try Data(SealedFile.seal(magic: "LHCINDX", payload: Array(ix[24..<(ix.count - 4)]))).write(to: URL(fileURLWithPath: c + "/index"))
        try expectRefused(["/index", "postings["])
        try index.write(to: URL(fileURLWithPath: c + "/index"))
        #expect(try run(ask).status == 0)
        let usage = try run(["ask", "--corpus", c, "--model", model])
        #expect(usage.status == 64 && usage.stderr.contains("ask --corpus DIR QUESTION"), "\(usage.stderr)")
        // Not a corpus: exit 66; a damaged segment record stops `corpus index` naming it.
        let none = try run(["ask", "--corpus", dir + "/docs", "--model", model, "Q?"])
        #expect(none.status == 66 && none.stderr.contains("not a corpus"), "\(none.stderr)")
        let seg = try #require(try FileManager.default.contentsOfDirectory(atPath: c + "/segments").first { $0.hasSuffix(".seg") })
        try Data("LHCSEG\0\0garbage".utf8).write(to: URL(fileURLWithPath: c + "/segments/" + seg))
        let ix2 = try run(["corpus", "index", c, "--model", model])
        #expect(ix2.status == 65 && ix2.stderr.contains(seg), "\(ix2.stderr)")
    }
}

/// The corpus index scores exactly as the plain BM25 of one store (`LexicalRetrieval`), its reference.
@Suite struct CorpusIndexTests {
    @Test func rankingEqualsLexicalRetrievalOverTheSameChunks() throws {
        var rng = SplitMix(seed: 11)
        let chunks: [[Int32]] = (0..<60).map { _ in (0..<(8 + Int(rng.next() % 40))).map { _ in Int32(rng.next() % 90) } }
        var entries = [CorpusIndex.Entry]()
        for i in chunks.indices {
            let where_ = CorpusIndex.Chunk(segment: i % 3, chunk: i / 3, start: i * 100, end: i * 100 + 50)
            entries.append(CorpusIndex.Entry(chunk: where_, tokens: chunks[i]))
        }
        let path = temp("corpus-index-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(CorpusIndex.build(entries: entries, segmentCount: 3, manifestCRC: 7)).write(to: URL(fileURLWithPath: path))
        let index = try CorpusIndex(path: path)
        #expect(index.chunkCount == 60 && index.segmentCount == 3 && index.manifestCRC == 7)
        for _ in 0..<50 {
            let query = (0..<(1 + Int(rng.next() % 8))).map { _ in Int32(rng.next() % 100) }
            let got = try index.rank(query: query, limit: 10)
            let want = LexicalRetrieval().rank(query: query, chunks: 0..<chunks.count, limit: 10) { chunks[$0] }
            #expect(got.map(\.id) == want.map(\.chunk), "query \(query)")
            for (g, w) in zip(got, want) { #expect(abs(g.score - w.score) < 1e-9) }
            for g in got { #expect(g.chunk == entries[g.id].chunk) }
        }
    }
}

/// The corpus jobs as library calls (`Corpus.ingest`, `indexReport`, `CorpusReader.ask`, the summaries):
/// what the CLI's corpus commands print, without the executable.
@Suite struct CorpusJobsTests {
    @Test func planSegmentsOfAFile() throws {
        let dir = temp("corpus-plan-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let docs = try documents(in: dir)
        let size = try #require(bytes(docs[0])).count
        #expect(try Corpus.planSegments(path: docs[0], segmentTokens: nil, tokenizer: nil) == [0..<size])
        FileManager.default.createFile(atPath: dir + "/empty", contents: nil)
        #expect(throws: PipelineError.self) { try Corpus.planSegments(path: dir + "/empty", segmentTokens: nil, tokenizer: nil) }
        #expect(throws: (any Error).self) { try Corpus.planSegments(path: dir + "/missing", segmentTokens: nil, tokenizer: nil) }
    }

    @Test func ingestIndexListAskAndSummarize() throws {
        let modelPath = try TinyModel().write(name: "corpus-jobs")
        let dir = temp("corpus-jobs-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: modelPath) }
        let docs = try documents(in: dir + "/docs")
        let file = try GGUFFile(path: modelPath)
        let pipeline = DocumentPipeline(model: try LlamaModel(file: file, threads: 2, maxBatch: 64), tokenizer: try Tokenizer(gguf: file),
                                        budgetBytes: 16 << 20)
        let corpus = Corpus(path: dir + "/corpus")
        var lines = [String]()
        let manifest = try corpus.ingest(files: docs, sourceRange: nil, segmentTokens: 120, pipeline: pipeline,
                                         parameters: LongHeadsParameters(chunkSize: 16, attentionLength: 64), precision: .default, chat: true,
                                         index: true, progress: { _ in }) { lines.append(try $0.jsonLine()) }
        let m = try #require(manifest)
        #expect(lines.count == m.segments.count && lines.count > docs.count)
        for (line, r) in zip(lines, m.segments) {
            #expect(line.hasPrefix("{\"segment\":\"\(r.id)\",\"source\":") && line.contains("\"outcome\":\"added\",\"seconds\":"), "\(line)")
            #expect(try r.listLine() == "{\"segment\":\"\(r.id)\",\"source\":\"\(r.source)\",\"start\":\(r.start),\"end\":\(r.end),"
                    + "\"tokens\":\(r.tokens),\"chunks\":\(r.chunks),\"kv\":\"\(r.kv)\"}")
        }
        let report = try corpus.indexReport(model: pipeline.model, tokenizer: pipeline.tokenizer)
        #expect(report.hasPrefix("{\"segments\":\(m.segments.count),\"tokens\":\(m.segments.reduce(0) { $0 + $1.tokens }),\"chunks\":"))

        let reader = try CorpusReader(corpus: corpus, pipeline: pipeline)
        var streamed = ""
        let one = try reader.ask("Who built the lighthouse on Karsa?", segments: 1, sources: 2, raw: false, maxTokens: 4, policy: nil) { streamed += $0 }
        #expect(one.answers.count == 1 && one.answers[0].text == streamed && one.sources.count == 2)
        #expect(docs.contains(one.sources[0].file))
        let line = try one.jsonLine(id: 7)
        #expect(line.hasPrefix("{\"id\":7,\"answer\":") && line.contains("\"sources\":[{\"file\":") && !line.contains("\"answers\""))
        let two = try reader.ask("Who built the lighthouse on Karsa?", segments: 2, sources: 1, raw: false, maxTokens: 4, policy: nil)
        #expect(two.answers.count == 2 && two.answers[0].text == one.answers[0].text)
        #expect(try two.jsonLine(id: "q").contains(",\"answers\":[{\"segment\":\"\(two.answers[0].segment.id)\""))

        let options = SummaryOptions(maxTokens: 4, parameters: LongHeadsParameters(chunkSize: 16, attentionLength: 64))
        var seen = [String]()
        let parts = try reader.summarizeSegments(options) { r, line in
            seen.append(r.id)
            #expect(!line.contains("\n"))
        }
        #expect(seen == m.segments.map(\.id) && parts.count == seen.count)
        var overall = ""
        try reader.summarizeSummaries(parts, options: options, temporaryStore: { label, body in
            let d = dir + "/tmp-" + label
            defer { try? FileManager.default.removeItem(atPath: d) }
            try body(d)
        }) { overall += $0 }
        #expect(!overall.isEmpty)
    }
}
