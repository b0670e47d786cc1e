import Foundation
import Generation
import KVStore
import LongHeads
import Pipeline

/// `bench ingest`: ingest throughput, peak RSS and store size of generated prose, then one question cold
/// and warm (JSON line: tokens/s, peak RSS, bytes per token, ask latency, page cache and memory phases).
public enum IngestBenchmark {
    /// Varied sentences from templates, so that chunks differ (as in real documents).
    public static func prose(words: Int, seed: UInt64) -> String {
        var rng = SeededGenerator(seed: seed)
        let subjects = ["The engineer", "A farmer", "The committee", "Our neighbour", "The old captain", "A student", "The council", "The baker"]
        let verbs = ["repaired", "painted", "counted", "described", "sold", "measured", "carried", "inspected"]
        let objects = ["the bridge", "three lanterns", "a wooden boat", "the northern wall", "forty barrels", "the library roof", "a blue kite", "the harbour gate"]
        let tails = ["before the storm arrived.", "on a quiet Tuesday.", "while the market was closing.", "for the spring festival.", "in the valley near the river.", "after a long discussion."]
        var out = ""
        var n = 0
        while n < words {
            let s = "\(subjects[Int(rng.next() % 8)]) \(verbs[Int(rng.next() % 8)]) \(objects[Int(rng.next() % 8)]) \(tails[Int(rng.next() % 6)]) "
            out += s
            n += s.split(separator: " ").count
            if rng.next() % 7 == 0 { out += "\n" }
        }
        return out
    }

    /// The question both phases ask.
    public static let question = "What did the engineer repair?"

    /// Figures of one ask: open the store, read `question`, answer 16 tokens greedily.
    struct AskFigures {
        var seconds: Double, cpuSeconds: Double, decodeMsPerToken: Double
        var cache: [String: Int], rss: [String: Int]
    }

    /// One ask of `question` on the store at `store`, its memory measured as one phase of `sampler`.
    static func ask(_ pipeline: DocumentPipeline, store: String, sampler: MemorySampler) throws -> AskFigures {
        let clock = ContinuousClock()
        sampler.startPhase()
        let c0 = cpuSeconds()
        let a0 = clock.now
        let q = pipeline.questionTokens(question, chat: true, raw: false)
        let (session, logits) = try pipeline.open(store: store, modelFile: pipeline.model.file, then: q, question: true)
        let d0 = clock.now
        let answer = try pipeline.answer(session: session, first: logits, maxTokens: 16, sampling: .greedy) { _ in }
        let decodeMs = 1000 * (clock.now - d0).seconds / Double(max(1, answer.count))
        let cs = session.archive.cache.statistics
        let seconds = (clock.now - a0).seconds, cpu = cpuSeconds() - c0
        return AskFigures(seconds: seconds, cpuSeconds: cpu, decodeMsPerToken: decodeMs,
                          cache: ["hits": cs.hits, "misses": cs.misses, "evictions": cs.evictions, "resident_bytes": cs.residentBytes],
                          rss: sampler.endPhase())
    }

    /// The lexical retrieval of `question` alone (a pass over the stored chunk tokens), whatever the policy.
    static func retrieval(_ pipeline: DocumentPipeline, store: String) throws -> (seconds: Double, chunks: [Int], tokens: Int) {
        let clock = ContinuousClock()
        let r0 = clock.now
        let reader = try StoreReader.open(at: store)
        let retrieved = try pipeline.retrieve(question: pipeline.questionTokens(question, chat: true, raw: false),
                                              reader: reader, info: DocumentPipeline.storeInfo(reader))
        return ((clock.now - r0).seconds, retrieved.map(\.chunk), reader.tokenCount)
    }

    /// Asks the question twice (cold, warm) of the existing store at `store`, then times its retrieval
    /// alone; returns the JSON line.
    public static func askOnly(_ pipeline: DocumentPipeline, store: String) throws -> String {
                let sampler = MemorySampler()
                var o: [String: Any] = ["bench": "ingest --ask-only", "store": store]
                for name in ["cold", "warm"] {
                    let a = try ask(pipeline, store: store, sampler: sampler)
                    o["ask_seconds_\(name)"] = a.seconds
                    o["ask_cpu_seconds_\(name)"] = a.cpuSeconds
                    o["page_cache_ask_\(name)"] = a.cache
                    o["rss_ask_\(name)"] = a.rss
                }
                let r = try retrieval(pipeline, store: store)
                o["retrieval_seconds"] = r.seconds
                o["retrieved_chunks"] = r.chunks
                o["tokens"] = r.tokens
                return String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
    }

    /// Ingests `tokens` tokens of generated prose into `store` (nil: a temporary directory under
    /// `scratchDirectory`, removed afterwards), then asks one question cold and warm; returns the JSON line.
    public static func run(_ pipeline: DocumentPipeline, tokens: Int, parameters: LongHeadsParameters, precision: KVPrecision,
                           precisionName: String, memoryBudgetMiB: Int, store: String?, scratchDirectory: String) throws -> String {
            let (model, tokenizer) = (pipeline.model, pipeline.tokenizer)
            var text = prose(words: tokens, seed: 42)
            var ids = tokenizer.encode(text)
            while ids.count < tokens { text += prose(words: tokens - ids.count + 16, seed: UInt64(ids.count)); ids = tokenizer.encode(text) }
            let dir = store ?? scratchDirectory + "longheads-bench-ingest-\(getpid())"
            defer { if store == nil { try? FileManager.default.removeItem(atPath: dir) } }
            let clock = ContinuousClock()
            let sampler = MemorySampler()
            sampler.startPhase()
            let cpu0 = cpuSeconds()
            let t0 = clock.now
            let info = try pipeline.ingest(text: text, to: dir, modelFile: model.file, parameters: parameters,
                                           precision: precision, chat: true)
            let ingestSeconds = (clock.now - t0).seconds
            let ingestCPU = cpuSeconds() - cpu0
            let ingestRSS = peakRSSBytes()
            let ingestPhase = sampler.endPhase()
            let bytes = (try FileManager.default.contentsOfDirectory(atPath: dir)).reduce(0) { sum, f in
                sum + ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + f)[.size] as? Int) ?? 0)
            }
            // One question, twice: cold (just opened) and warm (pages in the OS cache).
            var askSeconds = [Double]()
            var askPhases = [[String: Int]]()
            var askCPU = [Double]()
            var askCache = [[String: Int]]()
            var decodeMs = [Double]()
            for _ in 0..<2 {
                let a = try ask(pipeline, store: dir, sampler: sampler)
                decodeMs.append(a.decodeMsPerToken)
                askCache.append(a.cache)
                askSeconds.append(a.seconds)
                askCPU.append(a.cpuSeconds)
                askPhases.append(a.rss)
            }
            let retrieval = try retrieval(pipeline, store: dir)
            let o: [String: Any] = [
                "bench": "ingest", "retrieval_seconds": retrieval.seconds, "retrieved_chunks": retrieval.chunks,
                "decode_ms_per_token_cold": decodeMs[0], "decode_ms_per_token_warm": decodeMs[1], "tokens": info.tokens, "seconds": ingestSeconds, "tokens_per_second": Double(info.tokens) / ingestSeconds,
                "peak_rss_bytes_ingest": ingestRSS, "peak_rss_bytes": peakRSSBytes(), "store_bytes": bytes,
                "store_bytes_per_token": Double(bytes) / Double(info.tokens), "ask_seconds_cold": askSeconds[0], "ask_seconds_warm": askSeconds[1],
                "ask": "question + 16 answer tokens", "parameters": parameters.description, "precision": precisionName,
                "memory_budget_mib": memoryBudgetMiB, "threads": model.pool.threads,
                "cpu_seconds_ingest": ingestCPU, "cpu_ms_per_token_ingest": 1000 * ingestCPU / Double(info.tokens),
                "ask_cpu_seconds_cold": askCPU[0], "ask_cpu_seconds_warm": askCPU[1],
                "page_cache_ask_cold": askCache[0], "page_cache_ask_warm": askCache[1],
                "rss_ingest": ingestPhase, "rss_ask_cold": askPhases[0], "rss_ask_warm": askPhases[1],
            ]
            return String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
    }
}


/// User + system CPU time of this process so far, seconds (all threads): on a shared machine a steadier
/// measure of work than wall time.
public func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}

/// Peak memory of one phase of the bench, from /proc/self/status: the kernel's high-water mark (VmHWM,
/// reset at the start of each phase through /proc/self/clear_refs, so a phase is not charged with an
/// earlier one's peak) and, sampled every 10 ms by a background thread, the largest anonymous and
/// file-backed resident sizes (which of the two grows tells heap from mapped files).
public final class MemorySampler: @unchecked Sendable {
    private let lock = NSLock()
    private var maxAnon = 0, maxFile = 0, maxRSS = 0
    private var running = true

    /// Starts the sampling thread.
    public init() {
        Thread.detachNewThread { [weak self] in
            while let s = self, s.sample() { usleep(10_000) }
        }
    }

    deinit { running = false }

    /// Reads VmRSS/RssAnon/RssFile/VmHWM in bytes (0 when /proc is missing).
    public static func status() -> [String: Int] {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return [:] }
        var out = [String: Int]()
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let kb = Int(parts[1]) else { continue }
            out[String(parts[0])] = kb * 1024
        }
        return out
    }

    private func sample() -> Bool {
        let s = Self.status()
        lock.lock()
        defer { lock.unlock() }
        maxAnon = max(maxAnon, s["RssAnon"] ?? 0)
        maxFile = max(maxFile, s["RssFile"] ?? 0)
        maxRSS = max(maxRSS, s["VmRSS"] ?? 0)
        return running
    }

    /// Resets the peaks.
    public func startPhase() {
        if let f = fopen("/proc/self/clear_refs", "w") {
            fputs("5", f)  // 5: reset the peak RSS (VmHWM) to the current RSS
            fclose(f)
        }
        lock.lock()
        (maxAnon, maxFile, maxRSS) = (0, 0, 0)
        lock.unlock()
        _ = sample()
    }

    /// Peaks since `startPhase`, bytes.
    public func endPhase() -> [String: Int] {
        _ = sample()
        let s = Self.status()
        lock.lock()
        defer { lock.unlock() }
        return ["peak": s["VmHWM"] ?? 0, "sampled_peak": maxRSS, "anon_peak": maxAnon, "file_peak": maxFile,
                "end_anon": s["RssAnon"] ?? 0, "end_file": s["RssFile"] ?? 0]
    }
}
