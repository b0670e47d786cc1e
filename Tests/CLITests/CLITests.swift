import Foundation
import GGUF
import ModelCache
import TestSupport
import Testing

/// Runs the built `longheads` binary (next to the test bundle) and captures its output.
struct CLIRun {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// The `longheads` binary built beside the tests, as a process not yet started. Never lets a test fetch
/// the model: the cache points somewhere empty unless `env` says otherwise.
func longheadsProcess(_ args: [String], env: [String: String] = [:]) -> Process {
    let dir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    let p = Process()
    p.executableURL = dir.appendingPathComponent("longheads")
    p.arguments = args
    var e = ProcessInfo.processInfo.environment
    e["LONGHEADS_HOME"] = NSTemporaryDirectory() + "longheads-cli-tests-home"
    for (k, v) in env { e[k] = v }
    p.environment = e
    return p
}

func longheads(_ args: [String], stdin: String? = nil, env: [String: String] = [:]) throws -> CLIRun {
    let r = try longheads(args, stdinBytes: Array((stdin ?? "").utf8), env: env)
    return CLIRun(status: r.status, stdout: String(decoding: r.stdout, as: UTF8.self), stderr: r.stderr)
}

/// Runs the binary with raw bytes on stdin (records may hold NUL or invalid UTF-8). Stdin is written and
/// both pipes are read concurrently, so that no pipe can fill and block the child or the test.
func longheads(_ args: [String], stdinBytes: [UInt8], env: [String: String] = [:]) throws -> (status: Int32, stdout: [UInt8], stderr: String) {
    let p = longheadsProcess(args, env: env)
    let out = Pipe(), err = Pipe(), inp = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = inp
    try p.run()
    nonisolated(unsafe) var errData = Data()
    let t = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
    t.start()
    let w = Thread {
        inp.fileHandleForWriting.write(Data(stdinBytes))
        try? inp.fileHandleForWriting.close()
    }
    w.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    while !t.isFinished || !w.isFinished { usleep(1000) }
    return (p.terminationStatus, [UInt8](outData), String(decoding: errData, as: UTF8.self))
}

let defaultModel: String? = {
    if let p = ProcessInfo.processInfo.environment["LONGHEADS_MODEL"], FileManager.default.fileExists(atPath: p) { return p }
    return ModelCache().cachedPath(of: .smolLM2)
}()

func fixture(_ name: String) throws -> [[String: Any]] {
    let url = Bundle.module.url(forResource: "Fixtures/" + name, withExtension: nil)!
    return try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
        try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
}

func temp(_ name: String) -> String { NSTemporaryDirectory() + "cli-\(getpid())-\(name)" }

/// One line on stderr, naming the problem, and the expected exit code.
func expectCleanFailure(_ r: CLIRun, code: Int32, mentions: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == code, "exit \(r.status), stderr: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stdout.isEmpty, sourceLocation: sourceLocation)
    let lines = r.stderr.split(separator: "\n")
    #expect(lines.count == 1, "stderr: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stderr.contains(mentions), "stderr: \(r.stderr)", sourceLocation: sourceLocation)
}

@Suite struct BadInputTests {
    @Test func nonGGUFModel() throws {
        let p = temp("notgguf")
        try Data("this is not a model".utf8).write(to: URL(fileURLWithPath: p))
        defer { try? FileManager.default.removeItem(atPath: p) }
        expectCleanFailure(try longheads(["generate", "--model", p, "--prompt", "hi"]), code: 70, mentions: "not a GGUF file")
    }

    @Test func truncatedModel() throws {
        let full = try TinyModel().gguf().0.serialized()
        let p = temp("trunc.gguf")
        try Data(full[0..<(full.count * 2 / 3)]).write(to: URL(fileURLWithPath: p))
        defer { try? FileManager.default.removeItem(atPath: p) }
        expectCleanFailure(try longheads(["generate", "--model", p, "--prompt", "hi"]), code: 70, mentions: "truncated")
    }

    @Test func unsupportedTensorType() throws {
        // One matrix as Q2_K: a type the reader knows but the engine does not compute with.
        var (w, weights) = TinyModel().gguf()
        let dims = weights.tensors["blk.0.attn_q.weight"]!.dims
        w.replaceTensor("blk.0.attn_q.weight", dims: dims, type: .q2_K,
                        data: [UInt8](repeating: 0, count: TensorType.q2_K.byteCount(elements: dims.reduce(1, *))!))
        let p = temp("q2k.gguf")
        try w.write(to: p)
        defer { try? FileManager.default.removeItem(atPath: p) }
        expectCleanFailure(try longheads(["generate", "--model", p, "--prompt", "hi"]), code: 70, mentions: "Q2_K")
    }

    @Test func missingModelAndEmptyPrompt() throws {
        expectCleanFailure(try longheads(["generate", "--model", "/nonexistent/m.gguf", "--prompt", "hi"]), code: 66, mentions: "/nonexistent/m.gguf")
        let p = try TinyModel().write(name: "cli-empty")
        defer { try? FileManager.default.removeItem(atPath: p) }
        expectCleanFailure(try longheads(["generate", "--model", p, "--prompt", ""]), code: 65, mentions: "empty")
        expectCleanFailure(try longheads(["generate", "--model", p], stdin: ""), code: 65, mentions: "empty")
    }

    @Test func invalidUTF8Prompt() throws {
        let model = try TinyModel().write(name: "cli-utf8")
        let p = temp("bad-utf8.txt")
        try Data([0x68, 0x69, 0x20, 0xC3, 0x28, 0x21]).write(to: URL(fileURLWithPath: p))
        defer { for f in [model, p] { try? FileManager.default.removeItem(atPath: f) } }
        expectCleanFailure(try longheads(["generate", "--model", model, "--prompt-file", p]), code: 65, mentions: "byte offset 3")
    }

    @Test func tinyModelGeneratesAndTokenizes() throws {
        let p = try TinyModel().write(name: "cli-ok")
        defer { try? FileManager.default.removeItem(atPath: p) }
        let r = try longheads(["generate", "--model", p, "--prompt", "hello", "--max-tokens", "5"])
        #expect(r.status == 0, "\(r.stderr)")
        let t = try longheads(["tokenize", "--model", p, "hi!"])
        #expect(t.stdout == "104 105 33\n")
    }
}

@Suite(.enabled(if: defaultModel != nil, "default model not fetched (run Scripts/test.sh)"))
struct DefaultModelCLITests {
    @Test func tokenizeMatchesReference() throws {
        for case let row in try fixture("tokenizer.jsonl").prefix(4) {
            let r = try longheads(["tokenize", "--model", defaultModel!, row["text"] as! String])
            #expect(r.status == 0)
            #expect(r.stdout == (row["ids"] as! [Int]).map(String.init).joined(separator: " ") + "\n", "\(row["name"]!)")
        }
    }

    /// Passkey prompts of ~1k and ~2k tokens (shared/reference/passkey), greedy: the answer must appear.
    @Test func passkeyAt1kAnd2k() throws {
        for case let row in try fixture("passkey.jsonl") {
            let p = temp("pk-\(row["id"]!).txt")
            try (row["prompt"] as! String).write(toFile: p, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: p) }
            let r = try longheads(["generate", "--model", defaultModel!, "--prompt-file", p, "--temperature", "0", "--max-tokens", "12"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains(row["answer"] as! String), "\(row["id"]!): \(r.stdout)")
        }
    }
}
