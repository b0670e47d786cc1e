import ArgumentParser
import Evaluation
import Foundation
import GGUF
import KVStore
import Pipeline
import Generation
import Model
import ModelCache
import Tokenization

/// Exit codes (sysexits.h), documented in `longheads --help` and Docs/CLI.md.
enum Exit {
    static let internalError: Int32 = 1
    static let usage: Int32 = 64
    static let dataError: Int32 = 65
    static let noInput: Int32 = 66
    static let unavailable: Int32 = 69
    static let badModel: Int32 = 70
    static let cannotCreate: Int32 = 73
    static let ioError: Int32 = 74
}

/// Writes one line to stderr.
func log(_ message: String) {
    writeStandardError(message + "\n")
}

/// Reports `message` as `longheads: error: …` on stderr and exits with `code`.
func fail(_ message: String, code: Int32) -> ExitCode {
    log("longheads: error: " + message)
    return ExitCode(code)
}

/// Maps any error to its one-line message and exit code.
func exitCode(for error: Error) -> ExitCode {
    switch error {
    case let e as ExitCode: return e
    // The reader of our output went away (`… | head`): end quietly, as a process killed by SIGPIPE reports.
    case OutputError.brokenPipe: return ExitCode(128 + SIGPIPE)
    case let e as OutputError: return fail(e.description, code: Exit.ioError)
    case let e as GGUFError:
        if case .cannotOpen = e { return fail(e.description, code: Exit.noInput) }
        return fail(e.description, code: Exit.badModel)
    case let e as ModelError: return fail(e.description, code: Exit.badModel)
    case let e as TokenizerError: return fail("\(e)", code: Exit.badModel)
    case let e as ModelCacheError:
        if case .unknownModel = e { return fail(e.description, code: Exit.usage) }
        if case .noSuchModel = e { return fail(e.description, code: Exit.noInput) }
        return fail(e.description, code: Exit.unavailable)
    case let e as GenerationError: return fail(e.description, code: Exit.dataError)
    case let e as InputError: return fail(e.description, code: e.code)
    case let e as RecordTextError: return fail(e.description, code: Exit.dataError)
    case let e as RecordInputError: return fail(e.description, code: e.unreadable ? Exit.noInput : Exit.dataError)
    case let e as StoreError:
        return fail(e.description, code: e.isDiskFull ? Exit.ioError : e.isRefusedCreation ? Exit.cannotCreate : Exit.dataError)
    case let e as EvaluationError: return fail(e.description, code: Exit.ioError)
    case let e as PipelineError:
        if case .cannotReadSource = e { return fail(e.description, code: Exit.noInput) }
        return fail(e.description, code: Exit.dataError)
    default: return fail("\(error)", code: Exit.internalError)
    }
}

/// Runs `body`, turning every thrown error into a message on stderr and an exit code.
func guarded(_ body: () throws -> Void) throws {
    do { try body() } catch { throw exitCode(for: error) }
}

/// Numeric option limits. Bounded so that everything computed from them stays far from overflow and from
/// absurd allocations (MiB << 20 bytes, prompt + generated positions, chunk buffers).
enum Limits {
    static let memoryBudgetMiB = 16...(1 << 20)
    static let tokens = 1...(1 << 24)
    static let chunk = 16...8192
    static let attention = 16...(1 << 22)
    static let repetitions = 1...100_000
}

/// Checks that the option `--name` is in `range` (exit 64 naming it).
func checkOption<T: Comparable>(_ name: String, _ value: T, _ range: ClosedRange<T>) throws {
    guard range.contains(value) else {
        throw ValidationError("--\(name) must be in \(range.lowerBound)...\(range.upperBound) (got \(value))")
    }
}

/// Problems with the user's input.
struct InputError: Error, CustomStringConvertible {
    var description: String
    var code: Int32 = Exit.dataError
}

/// Reads a whole file (or stdin for "-") as UTF-8 text. A missing, unreadable or closed input, or a
/// directory, is named (exit 66), through the same checks as a streamed document (`DocumentSource`).
func readText(path: String) throws -> String { try openSource(path).readText() }

/// Reads a whole file (or stdin for "-"); returns its bytes and its name for messages.
func readBytes(path: String) throws -> (bytes: [UInt8], name: String) {
    let source = try openSource(path)
    return (try source.readAll(), source.name)
}

/// Opens a file (or stdin for "-") to read whole; one that cannot be opened is named (exit 66).
func openSource(_ path: String) throws -> DocumentSource {
    do { return try DocumentSource(path: path) } catch let e as PipelineError { throw InputError(description: e.description, code: Exit.noInput) }
}

/// Options every model-using command takes.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "A model name, fetched and verified on first use (\(PublishedModel.catalog.map(\.name).joined(separator: ", ")); default \(PublishedModel.defaultModel.name); see `longheads model list`), or a GGUF path.",
        valueName: "name|path"))
    var model: String?

    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    func validate() throws {
        guard threads >= 1 && threads <= 256 else { throw ValidationError("--threads must be 1...256") }
    }

    /// The model path: a catalog name resolves to the cache (fetched and verified on first use),
    /// anything else is a file path; no `--model` means the default model.
    func resolvePath() throws -> String {
        try ModelCache().resolve(model, log: log)
    }

    /// Opens the GGUF and builds its tokenizer (no weights loaded).
    func openTokenizer() throws -> (GGUFFile, Tokenizer) {
        let file = try GGUFFile(path: resolvePath())
        return (file, try Tokenizer(gguf: file))
    }

    /// Loads model and tokenizer.
    func load(maxBatch: Int = 256) throws -> (LlamaModel, Tokenizer) {
        let (file, tok) = try openTokenizer()
        return (try LlamaModel(file: file, threads: threads, maxBatch: maxBatch), tok)
    }
}
