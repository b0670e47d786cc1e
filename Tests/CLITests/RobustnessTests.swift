import Foundation
import Testing
import TestSupport

/// The reproductions of issue 14 (CLI side): each must end with its documented exit code, one line on
/// stderr, and nothing left on disk. Docs/ROBUSTNESS.md lists them.

/// The built `longheads` binary.
let longheadsBinary: String = {
    URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("longheads").path
}()

/// Runs `script` under /bin/sh with `$LH` set to the binary, in `cwd`, so that a test can close or redirect
/// the standard streams (`<&-`, `>&-`, `> /dev/full`, `| head -1`). stdout and stderr go to files unless
/// the script redirects them; `$?` of the last command is the status.
func shell(_ script: String, cwd: String? = nil, timeout: Double = 120) throws -> CLIRun {
    let id = UUID().uuidString.prefix(8)
    let out = temp("sh-out-\(id)"), err = temp("sh-err-\(id)")
    FileManager.default.createFile(atPath: out, contents: nil)
    FileManager.default.createFile(atPath: err, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: out); try? FileManager.default.removeItem(atPath: err) }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", script]
    var e = ProcessInfo.processInfo.environment
    e["LONGHEADS_HOME"] = NSTemporaryDirectory() + "longheads-cli-tests-home"
    e["LH"] = longheadsBinary
    p.environment = e
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(10_000) }
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    return CLIRun(status: p.terminationStatus, stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                  stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
}

/// A fresh empty directory for one test.
func scratchDirectory(_ name: String) throws -> String {
    let d = temp("\(name)-\(UUID().uuidString.prefix(6))")
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// Entries of a directory, sorted.
func entries(_ dir: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

@Suite struct RobustnessTests {
    static let common = "--chunk 16 --attention 64 --progress none"

    /// Issue 14: `ingest doc.txt --store x` trapped (SIGILL) in `deletingLastPathComponent`.
    @Test func oneCharacterRelativeStoreName() throws {
        let dir = try scratchDirectory("onechar")
        let model = try TinyModel().write(name: "rb-onechar")
        defer { for p in [dir, model] { try? FileManager.default.removeItem(atPath: p) } }
        try "The quick brown fox jumps over the lazy dog.".write(toFile: dir + "/doc.txt", atomically: true, encoding: .utf8)
        let r = try shell("\"$LH\" ingest doc.txt --store x --model '\(model)' \(Self.common)", cwd: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir + "/x/header"))
        let v = try shell("\"$LH\" verify --store x", cwd: dir)
        #expect(v.status == 0, "\(v.stderr)")
    }

    /// Issue 14: a directory as input, or a closed stdin, was a double free in `BlockReader.init` (SIGSEGV).
    @Test func directoryOrClosedStdinAsInput() throws {
        let dir = try scratchDirectory("dirinput")
        let model = try TinyModel().write(name: "rb-dirinput")
        defer { for p in [dir, model] { try? FileManager.default.removeItem(atPath: p) } }
        try FileManager.default.createDirectory(atPath: dir + "/D", withIntermediateDirectories: false)
        let m = "--model '\(model)'"
        for cmd in ["ingest D --store s \(Self.common)", "ask D 'What?'", "summarize D", "generate --prompt-file D",
                    "ask --store s --questions D"] {
            let r = try shell("\"$LH\" \(cmd) \(m)", cwd: dir)
            expectCleanFailure(r, code: 66, mentions: "D: cannot read the document: is a directory")
        }
        for cmd in ["ingest - --store s \(Self.common)", "ask - 'What?'", "summarize -", "generate", "tokenize -"] {
            let r = try shell("\"$LH\" \(cmd) \(m) <&-", cwd: dir)
            expectCleanFailure(r, code: 66, mentions: "standard input is closed")
        }
        #expect(entries(dir) == ["D"])
    }

    /// Issue 14: a full or closed stdout trapped in a forced `try!` or exited 0 with the output lost; a reader
    /// that goes away (SIGPIPE) must end the command quietly (exit 141, nothing on stderr).
    @Test func fullClosedAndBrokenStandardOutput() throws {
        let dir = try scratchDirectory("stdout")
        let model = try TinyModel().write(name: "rb-stdout")
        defer { for p in [dir, model] { try? FileManager.default.removeItem(atPath: p) } }
        try String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 40)
            .write(toFile: dir + "/doc.txt", atomically: true, encoding: .utf8)
        let m = "--model '\(model)'"
        for (cmd, store) in [("ingest doc.txt --store s1 \(Self.common)", "s1"), ("tokenize hello", nil),
                             ("generate --prompt hello --max-tokens 4", nil), ("verify --store s0", nil)] {
            if cmd.hasPrefix("verify") {
                _ = try shell("\"$LH\" ingest doc.txt --store s0 \(m) \(Self.common)", cwd: dir)
            }
            let verb = cmd.hasPrefix("verify") ? cmd : "\(cmd) \(m)"
            expectCleanFailure(try shell("\"$LH\" \(verb) > /dev/full", cwd: dir), code: 74, mentions: "standard output: cannot write: No space left on device")
            if let store { try? FileManager.default.removeItem(atPath: dir + "/" + store) }
            expectCleanFailure(try shell("\"$LH\" \(verb) >&-", cwd: dir), code: 74, mentions: "standard output is closed")
            if let store { try? FileManager.default.removeItem(atPath: dir + "/" + store) }
        }
        // A closed stderr is not a failure of the command: the data still arrives, exit 0.
        let quiet = try shell("\"$LH\" tokenize hi \(m) 2>&-", cwd: dir)
        #expect(quiet.status == 0 && quiet.stdout == "104 105\n", "\(quiet.status) \(quiet.stdout)")
        // Broken pipe: the status of longheads itself, in a pipeline, is 141 and stderr stays empty.
        let broken = try shell("(\"$LH\" tokenize - \(m) < big.txt; echo $? > status) | head -c1 > /dev/null; cat status",
                               cwd: try bigInput(dir))
        #expect(broken.stdout == "141\n", "\(broken.stdout) \(broken.stderr)")
        #expect(broken.stderr.isEmpty, "\(broken.stderr)")
        #expect(entries(dir).filter { !["doc.txt", "s0", "big.txt", "status"].contains($0) }.isEmpty, "\(entries(dir))")
    }

    /// Writes `big.txt` (1 MB, more than a pipe holds) into `dir`; returns `dir`.
    func bigInput(_ dir: String) throws -> String {
        try String(repeating: "hello ", count: 200_000).write(toFile: dir + "/big.txt", atomically: true, encoding: .utf8)
        return dir
    }

    /// Issue 14: `bench prefill --repetitions 0` and `--tokens 0` trapped, `--memory-budget 2^44` overflowed;
    /// every numeric option is range-checked before anything runs (exit 64, the option named).
    @Test func numericOptionsOutOfRange() throws {
        let cases: [([String], String)] = [
            (["bench", "prefill", "--repetitions", "0"], "--repetitions"), (["bench", "prefill", "--tokens", "0"], "--tokens"),
            (["bench", "decode", "--tokens", "0"], "--tokens"), (["bench", "prefill", "--warmup", "-1"], "--warmup"),
            (["ingest", "d", "--store", "s", "--memory-budget", "\(1 << 44)"], "--memory-budget"),
            (["ingest", "d", "--store", "s", "--chunk", "\(1 << 40)"], "--chunk"),
            (["generate", "--prompt", "hi", "--max-tokens", "\(Int.max)"], "--max-tokens"),
            (["generate", "--prompt", "hi", "--temperature", "inf"], "--temperature"),
            (["ask", "--store", "s", "q", "--max-tokens", "0"], "--max-tokens"),
            (["bench", "passkey", "--lengths", "99999999999999k"], "--lengths"),
        ]
        for (args, option) in cases {
            let r = try longheads(args)
            #expect(r.status == 64, "\(args): \(r.status) \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").first?.contains(option) == true, "\(args): \(r.stderr)")
            #expect(r.stdout.isEmpty)
        }
    }

    /// A temporary store left by a process that is gone (kill -9, a crash) is removed by the next longheads,
    /// whatever it runs; other entries of the temporary directory are left alone.
    @Test func staleTemporaryStoreOfADeadProcessIsRemoved() throws {
        let tmp = try scratchDirectory("stale")
        let model = try TinyModel().write(name: "rb-stale")
        defer { for p in [tmp, model] { try? FileManager.default.removeItem(atPath: p) } }
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run()
        gone.waitUntilExit()
        let dead = gone.processIdentifier
        for name in ["longheads-generate-\(dead)-42", "longheads-filter-\(dead)-7"] {
            try FileManager.default.createDirectory(atPath: "\(tmp)/\(name)/store", withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: "\(tmp)/\(name)/store/pages", contents: Data(count: 4096))
        }
        // A live process keeps its store (this test runner: the Pipeline library makes them in-process too).
        for keep in ["longheads-ask-\(getpid())-1", "longheads-notes", "longheads-generate-x-1", "other"] {
            try FileManager.default.createDirectory(atPath: "\(tmp)/\(keep)", withIntermediateDirectories: true)
        }
        let r = try longheads(["tokenize", "--model", model, "hi"], env: ["TMPDIR": tmp])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(entries(tmp) == ["longheads-ask-\(getpid())-1", "longheads-generate-x-1", "longheads-notes", "other"])
    }

    /// Issue 14: interrupting `generate` on a long prompt left its temporary store behind (18 MB after 6 s).
    @Test(arguments: [SIGINT, SIGTERM]) func interruptedGenerateLeavesNothing(signal: Int32) throws {
        let tmp = try scratchDirectory("gen-int")
        let model = try TinyModel().write(name: "rb-gen-int-\(signal)")
        defer { for p in [tmp, model] { try? FileManager.default.removeItem(atPath: p) } }
        let prompt = tmp + "/prompt.txt"
        try String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 2000).write(toFile: prompt, atomically: true, encoding: .utf8)
        let p = longheadsProcess(["generate", "--model", model, "--prompt-file", prompt, "--max-tokens", "100000",
                                  "--chunk", "16", "--attention", "64"], env: ["TMPDIR": tmp])
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Signal once the temporary store exists.
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline && !entries(tmp).contains(where: { $0.hasPrefix("longheads-generate-") }) { usleep(5000) }
        #expect(p.isRunning, "generate ended before its temporary store was seen")
        usleep(200_000)
        kill(p.processIdentifier, signal)
        p.waitUntilExit()
        #expect(p.terminationStatus == 128 + signal)
        #expect(entries(tmp) == ["prompt.txt"])
    }

    /// Issue 14: `ingest` of invalid UTF-8 exited 65 but left an unfinished store, so a retry said "already
    /// exists"; and `verify` printed ok for a store whose ingest never finished.
    @Test func failedIngestLeavesNoStoreAndVerifyNamesAnUnfinishedOne() throws {
        let dir = try scratchDirectory("badutf8")
        let model = try TinyModel().write(name: "rb-badutf8")
        defer { for p in [dir, model] { try? FileManager.default.removeItem(atPath: p) } }
        try Data(Array("Hello wörld, ".utf8) + [0xC3, 0x28] + Array(" more".utf8)).write(to: URL(fileURLWithPath: dir + "/bad.txt"))
        let m = "--model '\(model)' \(Self.common)"
        expectCleanFailure(try shell("\"$LH\" ingest bad.txt --store s \(m)", cwd: dir), code: 65, mentions: "invalid UTF-8 at byte offset 14")
        #expect(entries(dir) == ["bad.txt"])
        // The retry meets the same error, not "already exists".
        expectCleanFailure(try shell("\"$LH\" ingest bad.txt --store s \(m)", cwd: dir), code: 65, mentions: "invalid UTF-8")
        // A directory the user made is kept (emptied of the store's files), never deleted.
        try FileManager.default.createDirectory(atPath: dir + "/mine", withIntermediateDirectories: false)
        expectCleanFailure(try shell("\"$LH\" ingest bad.txt --store mine \(m)", cwd: dir), code: 65, mentions: "invalid UTF-8")
        #expect(entries(dir) == ["bad.txt", "mine"] && entries(dir + "/mine").isEmpty)

        // An ingest stopped after committing chunks: verify names it unfinished, with the resume command.
        try String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 3000)
            .write(toFile: dir + "/long.txt", atomically: true, encoding: .utf8)
        let p = longheadsProcess(["ingest", dir + "/long.txt", "--store", dir + "/u", "--model", model, "--chunk", "16",
                                  "--attention", "64", "--progress", "none"])
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        usleep(1_500_000)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let v = try shell("\"$LH\" verify --store u", cwd: dir)
        expectCleanFailure(v, code: 65, mentions: "u: the ingest of this store did not finish")
        #expect(v.stderr.contains("longheads ingest --resume --store u"), "\(v.stderr)")
    }

    /// A pathological record (no terminator for longer than --max-record-bytes) ends the filter with exit 65
    /// naming the record and its offset; its temporary directory is gone.
    @Test func filterRecordLongerThanTheLimit() throws {
        let tmp = try scratchDirectory("maxrecord")
        let model = try TinyModel().write(name: "rb-maxrecord")
        defer { for p in [tmp, model] { try? FileManager.default.removeItem(atPath: p) } }
        let input = Array("short\n".utf8) + [UInt8](repeating: 0x61, count: 100)
        let r = try longheads(["filter", "--model", model, "--threshold", "2", "--max-record-bytes", "50", "Is it short?"],
                              stdinBytes: input, env: ["TMPDIR": tmp])
        expectCleanFailure(CLIRun(status: r.status, stdout: String(decoding: r.stdout, as: UTF8.self), stderr: r.stderr), code: 65,
                           mentions: "standard input: record 2 (byte 6): longer than 50 bytes")
        #expect(entries(tmp).isEmpty)
        let zero = try longheads(["filter", "--max-record-bytes", "0", "q"])
        #expect(zero.status == 64 && zero.stderr.contains("--max-record-bytes"))
    }

    /// `filter … | head -1`: the reader goes away; filter stops quietly with 141 and its temporary directory
    /// is gone. A closed stdin is named (66).
    @Test func filterIntoAClosedPipeAndFromAClosedStdin() throws {
        let dir = try scratchDirectory("filterpipe")
        let model = try TinyModel().write(name: "rb-filterpipe")
        defer { for p in [dir, model] { try? FileManager.default.removeItem(atPath: p) } }
        try FileManager.default.createDirectory(atPath: dir + "/tmp", withIntermediateDirectories: false)
        try (1...3000).map { "record \($0) about foxes" }.joined(separator: "\n").write(toFile: dir + "/in.txt", atomically: true, encoding: .utf8)
        let m = "--model '\(model)'"
        let r = try shell("(TMPDIR=\"$PWD/tmp\" \"$LH\" filter 'Is it about foxes?' --threshold 0 \(m) < in.txt; echo $? > status) | head -1; cat status",
                          cwd: dir)
        #expect(r.stdout == "record 1 about foxes\n141\n", "\(r.stdout)")
        #expect(r.stderr.isEmpty, "\(r.stderr)")
        #expect(entries(dir + "/tmp").isEmpty)
        expectCleanFailure(try shell("\"$LH\" filter 'Is it?' \(m) <&-", cwd: dir), code: 66, mentions: "standard input is closed")
    }
}

