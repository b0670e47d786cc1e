import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Standard output failed: `brokenPipe` when the reader went away (EPIPE), `failed` otherwise (a full disk,
/// a closed stdout, an I/O error).
enum OutputError: Error, CustomStringConvertible {
    case brokenPipe
    case failed(reason: String)

    var description: String {
        switch self {
        case .brokenPipe: "standard output: broken pipe"
        case .failed(let r): "standard output: cannot write: \(r)"
        }
    }
}

/// The one writer of the command's data on stdout: unbuffered `write(2)` calls, each checked, so that a
/// failure is an error where it happens (exit 74, or a quiet exit 141 for a closed pipe), never a trap
/// and never an exit 0 with the output lost. SIGPIPE is ignored (`Main`), so a closed pipe shows up here
/// as EPIPE and the command unwinds, removing its temporary stores, before it exits.
enum Output {
    /// Writes `bytes` whole.
    static func write(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress! + done, $0.count - done) }
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EPIPE { throw OutputError.brokenPipe }
            throw OutputError.failed(reason: n < 0 ? describe(errno) : "write returned 0")
        }
    }

    /// Writes `text` as UTF-8.
    static func write(_ text: String) throws { try write(Array(text.utf8)) }

    /// Writes `text` and a newline (what `print` did, checked).
    static func line(_ text: String) throws { try write(Array((text + "\n").utf8)) }

    /// The message of an errno, as the user reads it (a stdout parked on /dev/null read-only is "closed").
    static func describe(_ code: Int32) -> String {
        code == EBADF ? "standard output is closed" : String(cString: strerror(code))
    }
}

/// Writes a diagnostic to stderr. A stderr that cannot be written (closed, full) is not an error of the
/// command: diagnostics are dropped, the exit code still tells (Docs/CLI.md).
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress!, $0.count) }
        if n > 0 { bytes = bytes.dropFirst(n); continue }
        if n < 0 && errno == EINTR { continue }
        return
    }
}
