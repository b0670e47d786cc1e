import Foundation
import TestSupport
import Testing

/// A tiny model shared by the suites of this file: one fixed file, rewritten (atomically) by each test run,
/// so that runs leave nothing behind.
let jobsModel: String = {
    let path = NSTemporaryDirectory() + "longheads-jobs-tests-tiny.gguf"
    let part = path + ".\(getpid())"
    try! TinyModel().gguf().0.write(to: part)
    _ = rename(part, path)
    return path
}()

/// A document long enough (≈ 3000 tokens) for LongHeads to select chunks with chunk 16, attention 64.
let jobsDocument = (0..<60).map { "Line \($0): the quick brown fox jumps over the lazy dog number \($0 * 7)." }.joined(separator: "\n")

@Suite struct AskBatchTests {
    /// A new store of `jobsDocument` (ingested from a file, chunk 16, attention 64); the caller removes it.
    func ingestedStore() throws -> String {
        let store = temp("jobs-store-\(UUID().uuidString.prefix(6))")
        let doc = temp("jobs-doc-\(UUID().uuidString.prefix(6)).txt")
        defer { try? FileManager.default.removeItem(atPath: doc) }
        try jobsDocument.write(toFile: doc, atomically: true, encoding: .utf8)
        let ingest = try longheads(["ingest", doc, "--store", store, "--model", jobsModel, "--chunk", "16", "--attention", "64"])
        #expect(ingest.status == 0, "\(ingest.stderr)")
        return store
    }

    @Test func questionsFileGivesOneJSONLinePerQuestion() throws {
        let store = try ingestedStore()
        let qs = temp("jobs-q-\(UUID().uuidString.prefix(6)).jsonl")
        defer { for p in [store, qs] { try? FileManager.default.removeItem(atPath: p) } }
        try "{\"id\": \"a\", \"question\": \"What does the fox do?\"}\n\n{\"id\": 7, \"question\": \"Which number?\"}\n"
            .write(toFile: qs, atomically: true, encoding: .utf8)
        let r = try longheads(["ask", "--store", store, "--questions", qs, "--model", jobsModel, "--max-tokens", "5"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        let size = UInt64(jobsDocument.utf8.count)
        for (line, id) in zip(lines, ["a", "7"]) {
            #expect(line.hasPrefix("{\"id\":"), "keys in order: \(line)")
            let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect("\(o["id"]!)" == id)
            #expect(o["answer"] is String)
            #expect((o["seconds"] as? Double ?? -1) >= 0)
            let sources = try #require(o["sources"] as? [[String: Any]])
            #expect(!sources.isEmpty && sources.count <= 3, "\(line)")
            var lifts = [Double]()
            for s in sources {
                let start = (s["start"] as! NSNumber).uint64Value, end = (s["end"] as! NSNumber).uint64Value
                #expect(start < end && end <= size)
                let chunk = s["chunk"] as! Int
                #expect(chunk > 0)
                let share = s["share"] as! Double, lift = s["lift"] as! Double
                #expect(share > 0 && share <= 1 && lift > 0 && lift <= share)
                lifts.append(lift)
            }
            #expect(lifts == lifts.sorted(by: >))
        }
        // The same questions from stdin give the same answers (each question starts from the document).
        let again = try longheads(["ask", "--store", store, "--questions", "-", "--model", jobsModel, "--max-tokens", "5"],
                                  stdin: try String(contentsOfFile: qs, encoding: .utf8))
        #expect(again.status == 0)
        func answers(_ s: String) -> [String] {
            s.split(separator: "\n").map { (try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["answer"] as! String }
        }
        #expect(answers(again.stdout) == answers(r.stdout))
    }

    /// `--tally-out` (diagnosis) appends one line per question: per-layer selection counts of the question
    /// and of the answer, and each stored chunk's byte range.
    @Test func tallyOutAppendsOneLinePerQuestion() throws {
        let store = try ingestedStore()
        let out = temp("jobs-tally-\(UUID().uuidString.prefix(6)).jsonl")
        defer { for p in [store, out] { try? FileManager.default.removeItem(atPath: p) } }
        for question in ["What does the fox do?", "Which number?"] {
            let r = try longheads(["ask", "--store", store, question, "--model", jobsModel, "--max-tokens", "3", "--tally-out", out])
            #expect(r.status == 0, "\(r.stderr)")
        }
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        for line in lines {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(o["question"] is [Any] && o["answer"] is [Any], "\(line)")
            let ranges = try #require(o["ranges"] as? [[Int]])
            // Chunks of the chat opening alone hold no document bytes: ranges may be empty, never backwards.
            #expect(!ranges.isEmpty && ranges.allSatisfy { $0.count == 2 && $0[0] <= $0[1] } && ranges.last![1] > 0, "\(ranges)")
        }
        // A path that cannot be written is named, exit 74.
        let bad = try longheads(["ask", "--store", store, "What?", "--model", jobsModel, "--max-tokens", "1",
                                 "--tally-out", "/nonexistent-dir/tally.jsonl"])
        #expect(bad.status == 74 && bad.stderr.contains("--tally-out /nonexistent-dir/tally.jsonl: cannot write"), "\(bad.stderr)")
    }

    @Test func badLineIsNamedBeforeAnythingIsAnswered() throws {
        let cases: [(String, String)] = [
            ("{\"id\": 1, \"question\": \"ok?\"}\n{\"id\": 2, \"question\": \n", "line 2"),
            ("{\"id\": 1, \"question\": \"ok?\"}\n\n{\"id\": 3}\n", "line 3"),
            ("[1, 2]\n", "line 1"),
        ]
        for (text, mention) in cases {
            // No store exists: validation must come first, so the error is the line, not the store.
            let r = try longheads(["ask", "--store", "/nonexistent-store", "--questions", "-", "--model", jobsModel], stdin: text)
            expectCleanFailure(r, code: 65, mentions: mention)
        }
        expectCleanFailure(try longheads(["ask", "--store", "/nonexistent-store", "--questions", "-", "--model", jobsModel], stdin: "\n"),
                           code: 65, mentions: "no questions")
    }

    @Test func askFileUsesATemporaryStoreAndRemovesIt() throws {
        let doc = temp("jobs-doc-\(UUID().uuidString.prefix(6)).txt")
        defer { try? FileManager.default.removeItem(atPath: doc) }
        try jobsDocument.write(toFile: doc, atomically: true, encoding: .utf8)
        // A TMPDIR of its own: the temporary store must be gone afterwards, on success and on error.
        let tmp = temp("jobs-tmp-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let r = try longheads(["ask", doc, "What does the fox do?", "--model", jobsModel, "--max-tokens", "4", "--chunk", "16", "--attention", "64"],
                              env: ["TMPDIR": tmp])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasSuffix("\n"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty)
        // On error too (an empty document).
        try "".write(toFile: doc, atomically: true, encoding: .utf8)
        let bad = try longheads(["ask", doc, "What?", "--model", jobsModel], env: ["TMPDIR": tmp])
        #expect(bad.status == 65, "\(bad.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty)
        // Usage: a question alone needs --store.
        #expect(try longheads(["ask", "What?", "--model", jobsModel]).status == 64)
    }
}

@Suite struct FilterTests {
    func filter(_ extra: [String], _ input: [UInt8]) throws -> (status: Int32, stdout: [UInt8], stderr: String) {
        try longheads(["filter", "Is this about a fox?", "--model", jobsModel] + extra, stdinBytes: input)
    }

    static let inputs: [(mode: [String], input: String)] = [
        ([], "one fox\ntwo dogs\n\nthree birds\nno newline at the end"),
        (["--paragraphs"], "\n\nfirst paragraph\nstill first\n\n\nsecond one\n  \t\nthird\nlast line\n"),
        (["-z"], "alpha\u{0}beta\ngamma\u{0}\u{0}delta"),
        (["--field", "text"], "{\"text\": \"a fox\", \"n\": 1}\n{\"n\": 2, \"text\": \"a dog\"}\n{\"text\": \"\"}\n"),
    ]

    @Test(arguments: 0..<4) func recordsPassThroughByteForByte(_ i: Int) throws {
        let (mode, text) = Self.inputs[i]
        let input = [UInt8](text.utf8)
        // Threshold 0: every record is a yes; above 1: none is (and -v passes them all).
        let all = try filter(mode + ["--threshold", "0"], input)
        #expect(all.status == 0, "\(all.stderr)")
        #expect(all.stdout == input, "\(String(decoding: all.stdout, as: UTF8.self))")
        let none = try filter(mode + ["--threshold", "1.5"], input)
        #expect(none.status == 0 && none.stdout.isEmpty)
        let inverted = try filter(mode + ["--threshold", "1.5", "-v"], input)
        #expect(inverted.stdout == input)
        // At the default threshold, the yes and the no records partition the input, each in order.
        let yes = try filter(mode, input), no = try filter(mode + ["-v"], input)
        #expect(yes.status == 0 && no.status == 0)
        #expect(yes.stdout.count + no.stdout.count == input.count)
        #expect(isInterleaving(yes.stdout, no.stdout, of: input))
    }

    /// Whether `whole` can be cut into pieces alternately from `a` and `b` (greedy on record boundaries is
    /// enough here: records are distinct).
    func isInterleaving(_ a: [UInt8], _ b: [UInt8], of whole: [UInt8]) -> Bool {
        var memo = [Int: Bool]()
        func go(_ i: Int, _ j: Int) -> Bool {
            if i == a.count && j == b.count { return true }
            let k = i * (b.count + 1) + j
            if let m = memo[k] { return m }
            let r = (i < a.count && a[i] == whole[i + j] && go(i + 1, j)) || (j < b.count && b[j] == whole[i + j] && go(i, j + 1))
            memo[k] = r
            return r
        }
        return go(0, 0)
    }

    @Test func scoresArePrefixedOrAddedAsAField() throws {
        let lines = try filter(["--threshold", "0", "--score"], [UInt8]("a fox\nb\n".utf8))
        let text = String(decoding: lines.stdout, as: UTF8.self)
        let rows = text.split(separator: "\n")
        #expect(rows.count == 2)
        for (row, rec) in zip(rows, ["a fox", "b"]) {
            let parts = row.split(separator: "\t", maxSplits: 1)
            #expect(Double(parts[0]).map { (0...1).contains($0) } == true)
            #expect(parts[1] == rec)
        }
        let json = try filter(["--threshold", "0", "--score", "--field", "t"], [UInt8]("{\"t\": \"x\", \"k\": [1]}\n{}\n".utf8))
        #expect(json.status != 0)  // the second line has no field "t"
        let ok = try filter(["--threshold", "0", "--score", "--field", "t"], [UInt8]("{\"t\": \"x\", \"k\": [1]}\n".utf8))
        let o = try JSONSerialization.jsonObject(with: Data(ok.stdout)) as! [String: Any]
        #expect(o["t"] as? String == "x" && o["score"] is Double)
        #expect(String(decoding: ok.stdout, as: UTF8.self).hasPrefix("{\"t\": \"x\", \"k\": [1],\"score\":"))
    }

    @Test func badRecordsAndEmptyInput() throws {
        var input = [UInt8]("fine\nalso fine\nbad ".utf8)
        input += [0xC3, 0x28]
        input += [UInt8](" here\n".utf8)
        let bad = try filter(["--threshold", "0"], input)
        #expect(bad.status == 65)
        #expect(bad.stderr.contains("record 3") && bad.stderr.contains("byte offset 19"), "\(bad.stderr)")
        #expect(String(decoding: bad.stdout, as: UTF8.self) == "fine\nalso fine\n")
        let json = try filter(["--field", "text"], [UInt8]("{\"text\": \"a\"}\nnot json\n".utf8))
        #expect(json.status == 65 && json.stderr.contains("record 2"), "\(json.stderr)")
        let empty = try filter([], [])
        #expect(empty.status == 0 && empty.stdout.isEmpty)
        #expect(empty.stderr.contains("no records"))
        #expect(try filter(["--paragraphs", "-z"], []).status == 64)
    }

    @Test func longRecordsGoThroughLongHeads() throws {
        // Tiny model: one token per byte, so this record is past the 1024-token attention length.
        let input = [UInt8](("short fox\n" + String(repeating: "the fox runs. ", count: 120) + "\nlast\n").utf8)
        // A TMPDIR of its own: the temporary stores must be gone afterwards.
        let tmp = temp("jobs-tmp-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let all = try longheads(["filter", "Is this about a fox?", "--model", jobsModel, "--threshold", "0", "--score"],
                                stdinBytes: input, env: ["TMPDIR": tmp])
        #expect(all.status == 0, "\(all.stderr)")
        let rows = String(decoding: all.stdout, as: UTF8.self).split(separator: "\n")
        #expect(rows.count == 3)
        #expect(rows.allSatisfy { Double($0.split(separator: "\t")[0]).map { (0...1).contains($0) } == true })
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).isEmpty)
    }

    /// The first passing record is written while standard input is still open.
    @Test func streamsBeforeTheInputEnds() throws {
        let p = longheadsProcess(["filter", "Is this about a fox?", "--model", jobsModel, "--threshold", "0"])
        let out = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardInput = inp
        p.standardError = FileHandle.nullDevice
        try p.run()
        inp.fileHandleForWriting.write(Data("first record\nsecond".utf8))
        // Read until the first line arrives, with stdin still open (a timeout fails the test).
        let got = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var first = Data()
        let reader = Thread {
            while !first.contains(UInt8(ascii: "\n")) {
                let d = out.fileHandleForReading.availableData
                if d.isEmpty { break }
                first += d
            }
            got.signal()
        }
        reader.start()
        let arrived = got.wait(timeout: .now() + 60) == .success
        #expect(arrived, "no output within 60 s while stdin was open")
        #expect(p.isRunning)
        #expect(String(decoding: first, as: UTF8.self) == "first record\n")
        inp.fileHandleForWriting.write(Data(" record\n".utf8))
        try inp.fileHandleForWriting.close()
        let rest = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(String(decoding: rest, as: UTF8.self) == "second record\n")
    }
}

@Suite struct SummarizeTests {
    @Test func shortLongSectionsAndStore() throws {
        // Short: plain attention.
        let short = try longheads(["summarize", "-", "--model", jobsModel, "--max-tokens", "5"], stdin: "A fox met a dog. They became friends.")
        #expect(short.status == 0, "\(short.stderr)")
        #expect(short.stdout.hasSuffix("\n"))
        // Long (past the attention length): through LongHeads, kept in --store.
        let store = temp("jobs-sum-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(atPath: store) }
        let long = try longheads(["summarize", "-", "--model", jobsModel, "--max-tokens", "5", "--chunk", "16", "--attention", "64",
                                  "--store", store], stdin: jobsDocument)
        #expect(long.status == 0, "\(long.stderr)")
        #expect(try longheads(["verify", "--store", store]).status == 0)
        // The kept store is summarized again without FILE (no ingest); with FILE it is not overwritten.
        let again = try longheads(["summarize", "--store", store, "--model", jobsModel, "--max-tokens", "5"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout == long.stdout)
        #expect(try longheads(["summarize", "-", "--store", store, "--model", jobsModel], stdin: "x").status == 64)
        // Sections: one line per heading, then the overall line.
        let md = "# Foxes\nThe fox is quick.\n\n# Dogs\nThe dog is lazy.\n## Puppies\nSmall dogs.\n"
        let s = try longheads(["summarize", "-", "--model", jobsModel, "--max-tokens", "4", "--sections"], stdin: md)
        #expect(s.status == 0, "\(s.stderr)")
        let lines = s.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == 4, "\(s.stdout)")
        #expect(lines.map { $0.prefix(while: { $0 != ":" }) } == ["Foxes", "Dogs", "Puppies", "Overall"])
        // Without headings: parts of --section-tokens tokens.
        let parts = try longheads(["summarize", "-", "--model", jobsModel, "--max-tokens", "3", "--sections", "--section-tokens", "400"],
                                  stdin: String(jobsDocument.prefix(2000)))
        #expect(parts.status == 0, "\(parts.stderr)")
        #expect(parts.stdout.split(separator: "\n").count == 6, "\(parts.stdout)")  // 2000 bytes ≈ 2000 tokens: 5 parts + overall
        // Empty input.
        expectCleanFailure(try longheads(["summarize", "-", "--model", jobsModel], stdin: " \n"), code: 65, mentions: "empty")
    }

    /// A document is streamed into the store after only its head was read to decide how: a short one held
    /// whole in that head, and a long one, both give what `ingest` + `summarize --store` give.
    @Test func streamedDocumentsSummarizeAsTheirStores() throws {
        let lh = ["--model", jobsModel, "--max-tokens", "5", "--chunk", "16", "--attention", "64"]
        for text in [String(jobsDocument.prefix(60)), jobsDocument] {
            let store = temp("jobs-sum-\(UUID().uuidString.prefix(6))")
            defer { try? FileManager.default.removeItem(atPath: store) }
            let direct = try longheads(["summarize", "-"] + lh, stdin: text)
            #expect(direct.status == 0, "\(direct.stderr)")
            let ingest = try longheads(["ingest", "-", "--store", store, "--model", jobsModel, "--chunk", "16", "--attention", "64"], stdin: text)
            #expect(ingest.status == 0, "\(ingest.stderr)")
            let viaStore = try longheads(["summarize", "--store", store, "--model", jobsModel, "--max-tokens", "5"])
            #expect(viaStore.status == 0 && viaStore.stdout == direct.stdout, "\(viaStore.stdout) vs \(direct.stdout)")
        }
        // Invalid UTF-8 past the head is named with its offset, as `ingest` names it.
        var bytes = Array(jobsDocument.utf8)
        bytes.insert(0xFF, at: 3000)
        let bad = try longheads(["summarize", "-"] + lh, stdinBytes: bytes)
        #expect(bad.status == 65 && bad.stdout.isEmpty && bad.stderr.contains("standard input: invalid UTF-8 at byte offset 3000"), "\(bad.stderr)")
    }
}

/// The default model end to end on short inputs (skipped when it is not cached).
@Suite(.enabled(if: defaultModel != nil, "the default model is not cached")) struct RealModelJobsTests {
    @Test func summarizeAndFilterAShortInput() throws {
        let text = "Foxes are small omnivorous mammals found on every continent except Antarctica. They have pointed ears, "
            + "a narrow snout and a bushy tail. Most foxes live in dens and hunt at night."
        let s = try longheads(["summarize", "-", "--model", defaultModel!, "--max-tokens", "24"], stdin: text)
        #expect(s.status == 0, "\(s.stderr)")
        #expect(s.stdout.lowercased().contains("fox"), "\(s.stdout)")
        let f = try longheads(["filter", "Is the text about an animal?", "--model", defaultModel!, "--score", "--threshold", "0"],
                              stdin: "A cat was sleeping on the warm windowsill.\nRevenue grew by four percent.\n")
        #expect(f.status == 0, "\(f.stderr)")
        let rows = f.stdout.split(separator: "\n")
        #expect(rows.count == 2)
        #expect(rows.allSatisfy { Double($0.split(separator: "\t")[0]).map { (0...1).contains($0) } == true })
    }
}
