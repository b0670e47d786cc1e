import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The input of `RecordFilter.run(fileDescriptor:name:)` failed: it could not be read (exit 66), or a
/// record in it is unusable (`RecordError`, exit 65). Both name the input.
public enum RecordInputError: Error, CustomStringConvertible {
    /// A read failed (a closed descriptor, an I/O error).
    case unreadable(name: String, reason: String)
    /// A record cannot be cut from the input (`RecordSplitter`).
    case badRecord(name: String, error: RecordError)

    /// Whether the input could not be read at all (rather than holding a bad record).
    public var unreadable: Bool { if case .unreadable = self { true } else { false } }

    public var description: String {
        switch self {
        case .unreadable(let n, let r): "\(n): \(r)"
        case .badRecord(let n, let e): "\(n): \(e)"
        }
    }
}

extension RecordFilter {
    /// Filters the input of descriptor `fd` (standard input for `filter`) as it arrives, until its end
    /// (`feed`, then `finish`). Records waiting for a batch are scored before any read that would wait
    /// (`tail -f | longheads filter`: a record is written as soon as its input is there), and when the
    /// batch is full. A read failure decides what is waiting, then throws `RecordInputError.unreadable`
    /// (EBADF: "standard input is closed"; `StandardStreams` parks a write-only /dev/null there).
    public func run(fileDescriptor fd: Int32, name: String) throws {
        func inputWaiting() -> Bool {
            var fds = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            return poll(&fds, 1, 0) > 0
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            if hasWaiting && !inputWaiting() { try flush() }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = errno == EBADF ? "\(name) is closed" : "read failed: \(String(cString: strerror(errno)))"
                try flush()
                throw RecordInputError.unreadable(name: name, reason: reason)
            }
            if n == 0 { break }
            do { try feed(buffer[0..<n]) } catch let e as RecordError { throw RecordInputError.badRecord(name: name, error: e) }
        }
        try finish()
    }
}
