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
}

