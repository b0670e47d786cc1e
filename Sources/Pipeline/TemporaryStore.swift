import Dispatch
import Foundation

/// A store directory that exists only while a command runs: removed when `body` returns or throws, and on
/// Ctrl-C, SIGTERM or SIGHUP (the process then exits 128 + the signal, as a shell expects). Its name
/// carries the owning process id (`longheads-LABEL-PID-RANDOM`), so that one left behind by a process
/// that could not clean up (kill -9, a crash) is removed by the next longheads (`TemporaryStores.removeStale`).
public func withTemporaryStore<R>(_ label: String, _ body: (String) throws -> R) throws -> R {
    let dir = TemporaryStores.directory + TemporaryStores.name(label: label, pid: getpid())
    let guardSignals = SignalCleanup(path: dir)
    defer {
        // First: if a signal's removal is under way, this waits for it to end the process (the body may
        // have failed only because the store vanished under it).
        guardSignals.cancel()
        try? FileManager.default.removeItem(atPath: dir)
    }
    return try body(dir)
}

/// Names of temporary stores, and the removal of those whose process is gone.
public enum TemporaryStores {
    /// Labels of the commands that make temporary stores (`bench ingest` without --store uses "bench-ingest").
    public static let labels = ["ask", "filter", "summarize", "generate", "passkey", "niah", "bench-ingest"]

    /// The directory temporary stores live in ($TMPDIR or /tmp), ending in "/".
    public static var directory: String {
        let d = NSTemporaryDirectory()
        return d.hasSuffix("/") ? d : d + "/"
    }

    /// `longheads-LABEL-PID-RANDOM`.
    public static func name(label: String, pid: Int32) -> String {
        "longheads-\(label)-\(pid)-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// The owning process id of a temporary store named `name`, or nil if the name is not one.
    public static func owner(of name: String) -> Int32? {
        for label in labels {
            let prefix = "longheads-\(label)-"
            guard name.hasPrefix(prefix) else { continue }
            let rest = name.dropFirst(prefix.count)
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, digits.count == rest.count || rest.dropFirst(digits.count).first == "-",
                  let pid = Int32(digits), pid > 0 else { continue }
            return pid
        }
        return nil
    }

    /// Whether process `pid` exists. Any live process keeps its stores, whatever program it is: the
    /// Pipeline library makes them too (`YesNoClassifier`, inside test runners), and a store wrongly kept
    /// until a reused pid ends costs disk, one wrongly removed costs a running job. A process of another
    /// user counts as alive (EPERM).
    public static func isAlive(_ pid: Int32) -> Bool {
        !(kill(pid, 0) != 0 && errno == ESRCH)
    }

    /// Removes the temporary stores in `directory` whose owning process is gone (killed, crashed). Only
    /// entries named as temporary stores, owned by this user, are looked at; errors are ignored (another
    /// longheads may be removing the same one).
    public static func removeStale(in directory: String = directory) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        let me = getpid()
        for name in names {
            guard let pid = owner(of: name), pid != me, !isAlive(pid) else { continue }
            let path = (directory.hasSuffix("/") ? directory : directory + "/") + name
            var st = stat()
            guard lstat(path, &st) == 0, st.st_uid == getuid(), (st.st_mode & S_IFMT) == S_IFDIR else { continue }
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}

/// Removes a path when SIGINT, SIGTERM or SIGHUP arrives, then exits. The handlers run on a dispatch
/// queue, so they fire even while the main thread is busy in the model.
final class SignalCleanup: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    static let signals = [SIGINT, SIGTERM, SIGHUP]
    private let lock = NSLock()
    private var firing = false

    init(path: String) {
        for sig in Self.signals {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { [self] in
                lock.lock()
                firing = true
                lock.unlock()
                // The main thread keeps running meanwhile and may create a file in the store (a commit's
                // header.tmp): removing the tree in place could race with it and leave the directory. Renamed
                // first, the store is out of the writer's reach (it opens files by path); the new name still
                // carries the pid, so a removal cut short is finished by the next longheads.
                let doomed = path + "-removing"
                try? FileManager.default.removeItem(atPath: rename(path, doomed) == 0 ? doomed : path)
                exit(128 + sig)
            }
            s.resume()
            sources.append(s)
        }
    }

    /// Stops watching for signals; if a handler is already removing the store, waits for it to exit the
    /// process (with 128 + the signal), so that the command does not end first with an error of its own.
    func cancel() {
        lock.lock()
        let fired = firing
        lock.unlock()
        if fired { while true { pause() } }
        for s in sources { s.cancel() }
        sources.removeAll()
        for sig in Self.signals { signal(sig, SIG_DFL) }
    }
}

/// Ctrl-C or SIGTERM during an ingest: the first asks the chunk loop to commit and stop; a second one
/// ends the process at once (the committed chunks are safe either way).
public final class StopRequest: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var flag = false
    private var received: Int32 = SIGINT

    /// The signal that asked for the stop.
    public var signalNumber: Int32 {
        lock.lock()
        defer { lock.unlock() }
        return received
    }

    /// Watches SIGINT and SIGTERM; `onFirst` runs (on a dispatch queue) when the first one arrives.
    public init(onFirst: @escaping @Sendable () -> Void = {}) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { [self] in
                lock.lock()
                let again = flag
                if !again { received = sig }
                flag = true
                lock.unlock()
                if again { exit(128 + sig) }
                onFirst()
            }
            s.resume()
            sources.append(s)
        }
    }

    /// Whether a stop was asked for.
    public func requested() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return flag
    }

    /// Stops watching; the signals get their default actions again.
    public func cancel() {
        for s in sources { s.cancel() }
        sources.removeAll()
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
