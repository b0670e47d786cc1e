import Foundation
import Generation
import KVStore
import LongHeads
import Model
import Pipeline
import Tokenization

/// What `bench niah` runs: tasks × lengths × trials, each haystack asked under every policy.
public struct NiahConfiguration: Sendable {
    /// Quest with the needle's chunks forced into every selective head's selection from the question on.
    public static let oracle = "oracle"
    /// Diagnosis: the prompt cut to the needle's chunks and the question, read with plain attention (below
    /// the attention length). Whatever it misses, no selection policy can get right with this model.
    public static let needleChunk = "needle-chunk"
    /// Every policy name: the selection policies, `oracle` and `needle-chunk`.
    public static var policyNames: [String] { SelectionPolicy.allCases.map(\.rawValue) + [oracle, needleChunk] }

    /// The selection policy behind a policy name (the oracle selects as quest besides its forced chunks;
    /// needle-chunk reads with plain attention, so its policy only names the store it writes).
    public static func selection(_ name: String) -> SelectionPolicy { SelectionPolicy(rawValue: name) ?? .quest }

    /// Tasks, prompt lengths (tokens) and trials per (task, length).
    public var tasks: [NiahTask]
    /// Prompt lengths in tokens.
    public var lengths: [Int]
    /// Trials per task and length.
    public var trials: Int
    /// Depths cycled through; nil: a random depth per trial.
    public var depths: [Double]?
    /// Seed: a trial's haystack depends on seed, task, length and trial only.
    public var seed: UInt64
    /// The answering policies (`policyNames`), in order.
    public var policies: [String]
    /// The policy that ingests (nil: the first of `policies`).
    public var ingestPolicy: String?
    /// LongHeads chunk size, attention length and selective start (nil: the attention length).
    public var chunk: Int, attention: Int, selectiveFrom: Int?
    /// KV precision of the stores.
    public var precision: KVPrecision

    /// A configuration; `policies` must not be empty.
    public init(tasks: [NiahTask], lengths: [Int], trials: Int, depths: [Double]?, seed: UInt64, policies: [String],
                ingestPolicy: String?, chunk: Int, attention: Int, selectiveFrom: Int?, precision: KVPrecision) {
        precondition(!policies.isEmpty)
        (self.tasks, self.lengths, self.trials, self.depths, self.seed) = (tasks, lengths, trials, depths, seed)
        (self.policies, self.ingestPolicy, self.chunk, self.attention, self.selectiveFrom, self.precision) =
            (policies, ingestPolicy, chunk, attention, selectiveFrom, precision)
    }

    /// Parameters of the ingest.
    public var ingestParameters: LongHeadsParameters { parameters(ingestPolicy ?? policies[0]) }

    /// Parameters under a policy name.
    public func parameters(_ name: String) -> LongHeadsParameters {
        LongHeadsParameters(chunkSize: chunk, attentionLength: attention, beginSelective: selectiveFrom, policy: Self.selection(name),
                            summary: summaryContents)
    }

    /// The summary rows the stores keep: the full summaries when any policy that answers (or ingests) reads them.
    public var summaryContents: ChunkSummaryContents {
        (policies + (ingestPolicy.map { [$0] } ?? [])).contains { Self.selection($0).needsFullSummary } ? .full : .bounds
    }

    /// The parameters as printed with results; the oracle is named.
    public func description(_ name: String) -> String {
        parameters(name).description + (name == Self.oracle ? " oracle=needle" : name == Self.needleChunk ? " read=needle-chunk" : "")
    }
}

/// `bench niah`: needle-in-a-haystack retrieval in generated prose (one needle, or RULER's multi-key
/// variant) or the passkey prompt, with the selection diagnostic of `bench passkey`.
public struct NiahBenchmark {
    /// Greedy continuation length: enough for a word or a seven-digit number and some slack.
    public static let maxAnswerTokens = 12

    /// What runs.
    public let configuration: NiahConfiguration
    /// The model that reads.
    public let pipeline: DocumentPipeline
    /// Directory of the trials' stores (removed after each trial).
    public let scratchDirectory: String

    /// A benchmark of `configuration` with `pipeline`'s model, its stores under `scratchDirectory`.
    public init(configuration: NiahConfiguration, pipeline: DocumentPipeline, scratchDirectory: String) {
        self.configuration = configuration
        self.pipeline = pipeline
        self.scratchDirectory = scratchDirectory
    }

    /// Runs every trial; `trial` receives each (task, length, trial, policy) as it ends, `summary` each
    /// (task, length, policy) after its trials. Returns the summaries.
    @discardableResult
    public func run(trial onTrial: (NiahTrial) throws -> Void, summary onSummary: (NiahSummary) throws -> Void) throws -> [NiahSummary] {
        let cfg = configuration
        let model = pipeline.model
        let parameters = cfg.ingestParameters
        let (L, H) = (model.config.layers, model.config.heads)
        var rows = [NiahSummary]()
        for task in cfg.tasks {
            for length in cfg.lengths {
                var group = cfg.policies.map { Accumulator(policy: $0) }
                for t in 0..<cfg.trials {
                    var rng = Haystack.trialGenerator(seed: cfg.seed, task: task, length: length, trial: t)
                    // Drawn even when depths are given, so a seed gives the same needles either way.
                    let randomDepth = Double(rng.next() % 1000) / 1000
                    let depth = DepthSchedule.depth(trial: t, depths: cfg.depths, random: randomDepth)
                    let p = Haystack.prompt(task: task, tokens: length, depth: depth, rng: &rng, tokenizer: pipeline.tokenizer)
                    let last = p.ids.count - 1
                    let needleChunks = SelectionTally.chunks(of: p.needleSpan, chunkSize: parameters.chunkSize)
                    let forced = SelectionTally.inForcedChunks(needleChunks, position: last, parameters: parameters)
                    let dir = (scratchDirectory as NSString).appendingPathComponent("longheads-niah-\(getpid())-\(t)")
                    defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: dir + "-needle") }
                    let clock = ContinuousClock()
                    func ingest(_ ids: [Int32], to path: String) throws -> Double {
                        let t0 = clock.now
                        try pipeline.ingest(ids: ids, byteEnds: [Int](repeating: 0, count: ids.count), sourceBytes: 0,
                                            to: path, modelFile: model.file, parameters: parameters, precision: cfg.precision, chat: false)
                        return (clock.now - t0).seconds
                    }
                    // The haystack is ingested once; every policy then asks the question of the same store
                    // (`ask`'s path: open the store, run the question, answer).
                    let haystack = Array(p.ids[..<p.questionStart]), question = Array(p.ids[p.questionStart...])
                    let ingestSeconds = cfg.policies.allSatisfy { $0 == NiahConfiguration.needleChunk } ? 0 : try ingest(haystack, to: dir)
                    for (k, name) in cfg.policies.enumerated() {
                        // What this policy reads: the haystack's store, or (needle-chunk) a store of the needle's
                        // chunks alone, with the needle's chunks and the answer position counted in it.
                        var reading = (store: dir, question: question, last: last, needle: needleChunks, ingestSeconds: ingestSeconds)
                        if name == NiahConfiguration.needleChunk {
                            let w = p.needleWindow(chunkSize: parameters.chunkSize)
                            reading = (dir + "-needle", w.question, w.haystack.count + w.question.count - 1,
                                       SelectionTally.chunks(of: w.needleSpan, chunkSize: parameters.chunkSize),
                                       try ingest(w.haystack, to: dir + "-needle"))
                        }
                        let tally = SelectionTally(layers: L, heads: H, position: reading.last, keyChunks: reading.needle)
                        let t1 = clock.now
                        let (session, logits) = try pipeline.open(
                            store: reading.store, modelFile: model.file, then: reading.question, policy: NiahConfiguration.selection(name),
                            question: true, diagnosisChunks: name == NiahConfiguration.oracle ? Array(needleChunks) : nil) { attention in
                            attention.selections.observe(tally.observe)
                        }
                        // Only the answer step is diagnosed; shared chunks stay for the answer tokens.
                        session.attention.selections.removeAll()
                        var answer = ""
                        _ = try pipeline.answer(session: session, first: logits, maxTokens: Self.maxAnswerTokens, sampling: .greedy) { answer += $0 }
                        let askSeconds = (clock.now - t1).seconds
                        let ok = Haystack.isCorrect(answer: answer, expected: p.expected)
                        // Below the selective length every head reads every chunk, the needle's included.
                        let recall: Double? = tally.complete ? tally.recall : reading.last < parameters.beginSelective ? 1 : nil
                        group[k].add(tokens: p.ids.count, ingestSeconds: reading.ingestSeconds, askSeconds: askSeconds, correct: ok, recall: recall)
                        try onTrial(NiahTrial(
                            task: task.rawValue, length: length, tokens: p.ids.count, readTokens: reading.last + 1, trial: t, depth: depth,
                            policy: name, ingestPolicy: parameters.policy.rawValue, parameters: cfg.description(name),
                            precision: cfg.precision.description, seed: cfg.seed, expected: p.expected, answer: answer, correct: ok,
                            ingestSeconds: reading.ingestSeconds, askSeconds: askSeconds, selectionRecall: Nullable(recall),
                            selectionPerLayer: tally.perLayer, needleInForcedChunk: forced,
                            needleSpan: [p.needleSpan.lowerBound, p.needleSpan.upperBound], needleChunks: Array(needleChunks),
                            answerChunk: last / parameters.chunkSize, sharedChunks: session.attention.sharedChunks,
                            key: p.asked, keys: p.asked == nil ? nil : p.keys, countsLine: tally.countsLine))
                    }
                }
                for acc in group {
                    let row = acc.summary(task: task, length: length, configuration: cfg)
                    try onSummary(row)
                    rows.append(row)
                }
            }
        }
        return rows
    }

    /// Totals of one (task, length, policy).
    struct Accumulator {
        var policy: String
        var hits = 0, trials = 0, tokens = 0
        /// Seconds of ingest (shared by the policies) and of question + answer.
        var ingestSeconds = 0.0, askSeconds = 0.0
        var recalls = [Double](), hitRecalls = [Double](), missRecalls = [Double]()

        mutating func add(tokens n: Int, ingestSeconds: Double, askSeconds: Double, correct: Bool, recall: Double?) {
            trials += 1
            tokens += n
            self.ingestSeconds += ingestSeconds
            self.askSeconds += askSeconds
            if correct { hits += 1 }
            if let recall {
                recalls.append(recall)
                if correct { hitRecalls.append(recall) } else { missRecalls.append(recall) }
            }
        }

        func summary(task: NiahTask, length: Int, configuration cfg: NiahConfiguration) -> NiahSummary {
            let p = cfg.parameters(policy)
            let n = Double(max(1, trials))
            return NiahSummary(
                task: task.rawValue, length: length, correct: hits, trials: trials, accuracy: Double(hits) / n,
                meanTokens: Double(tokens) / n, policy: policy, ingestPolicy: cfg.ingestParameters.policy.rawValue,
                parameters: cfg.description(policy), chunk: p.chunkSize, attention: p.attentionLength, selectiveFrom: p.beginSelective,
                precision: cfg.precision.description, seed: cfg.seed, depths: DepthsField(cfg.depths),
                meanIngestSeconds: ingestSeconds / n, meanAskSeconds: askSeconds / n, peakRssBytes: peakRSSBytes(),
                meanSelectionRecall: Nullable(mean(recalls)), meanSelectionRecallHits: Nullable(mean(hitRecalls)),
                meanSelectionRecallMisses: Nullable(mean(missRecalls)))
        }
    }
}

/// `bench passkey`: the passkey test per length, with the selection diagnostic (which heads selected the
/// key's chunk at the answer step) and a length × depth grid for the heatmap.
public struct PasskeyBenchmark {
    /// Prompt lengths, trials per length, depths cycled through (nil: random) and the seed.
    public var lengths: [Int], trials: Int, depths: [Double]?, seed: UInt64
    /// LongHeads parameters and KV precision of the stores.
    public var parameters: LongHeadsParameters, precision: KVPrecision
    /// The model that reads.
    public let pipeline: DocumentPipeline
    /// Directory of the trials' stores (removed after each trial).
    public let scratchDirectory: String

    /// A benchmark with `pipeline`'s model, its stores under `scratchDirectory`.
    public init(lengths: [Int], trials: Int, depths: [Double]?, seed: UInt64, parameters: LongHeadsParameters, precision: KVPrecision,
                pipeline: DocumentPipeline, scratchDirectory: String) {
        (self.lengths, self.trials, self.depths, self.seed, self.parameters, self.precision) = (lengths, trials, depths, seed, parameters, precision)
        self.pipeline = pipeline
        self.scratchDirectory = scratchDirectory
    }

    /// Runs every trial; `trial` receives each as it ends, `summary` each length after its trials, with
    /// the grid of all trials so far. Returns the grid.
    @discardableResult
    public func run(trial onTrial: (PasskeyTrial) throws -> Void,
                    summary onSummary: (PasskeySummary, PasskeyGrid) throws -> Void) throws -> PasskeyGrid {
        let model = pipeline.model
        var rng = SeededGenerator(seed: seed)
        var grid = PasskeyGrid(lengths: lengths)
        let (L, H) = (model.config.layers, model.config.heads)
        for length in lengths {
            var hits = 0
            var seconds = 0.0
            var recalls = [Double](), hitRecalls = [Double](), missRecalls = [Double]()
            for t in 0..<trials {
                // Draw the random depth even when depths are given, so a seed gives the same keys either way.
                let randomDepth = Double(rng.next() % 1000) / 1000
                let depth = DepthSchedule.depth(trial: t, depths: depths, random: randomDepth)
                let key = 10000 + Int(rng.next() % 90000)
                let p = Passkey.prompt(tokens: length, depth: depth, key: key, tokenizer: pipeline.tokenizer)
                let last = p.ids.count - 1
                let keyChunks = SelectionTally.chunks(of: p.keySpan, chunkSize: parameters.chunkSize)
                let tally = SelectionTally(layers: L, heads: H, position: last, keyChunks: keyChunks)
                let dir = (scratchDirectory as NSString).appendingPathComponent("longheads-passkey-\(getpid())-\(t)")
                defer { try? FileManager.default.removeItem(atPath: dir) }
                let clock = ContinuousClock()
                let t0 = clock.now
                let (session, logits) = try pipeline.run(prompt: p.ids, questionStart: p.questionStart, storeAt: dir, modelFile: model.file,
                                                         parameters: parameters, precision: precision, chat: false) { attention in
                    attention.selections.observe(tally.observe)
                }
                // Only the answer step is diagnosed; the answer tokens' selections are not.
                session.attention.selections.removeAll()
                var answer = ""
                _ = try pipeline.answer(session: session, first: logits, maxTokens: 10, sampling: .greedy) { answer += $0 }
                let elapsed = (clock.now - t0).seconds
                seconds += elapsed
                let ok = answer.contains(String(key))
                if ok { hits += 1 }
                grid.record(length: length, depth: depth, correct: ok)
                let forced = SelectionTally.inForcedChunks(keyChunks, position: last, parameters: parameters)
                let recall: Double? = tally.complete ? tally.recall : nil
                if let recall {
                    recalls.append(recall)
                    if ok { hitRecalls.append(recall) } else { missRecalls.append(recall) }
                }
                try onTrial(PasskeyTrial(
                    length: length, tokens: p.ids.count, trial: t, depth: depth, key: key, answer: answer, correct: ok, seconds: elapsed,
                    parameters: parameters.description, precision: precision.description,
                    keySpan: [p.keySpan.lowerBound, p.keySpan.upperBound], keyChunk: keyChunks.lowerBound, keyChunks: Array(keyChunks),
                    answerChunk: last / parameters.chunkSize, keyInForcedChunk: forced, selectionRecall: Nullable(recall),
                    selectionPerLayer: tally.perLayer, countsLine: tally.countsLine))
            }
            try onSummary(PasskeySummary(
                length: length, correct: hits, trials: trials, accuracy: Double(hits) / Double(trials),
                parameters: parameters.description, chunk: parameters.chunkSize, attention: parameters.attentionLength,
                selectiveFrom: parameters.beginSelective, precision: precision.description, depths: DepthsField(depths), seed: seed,
                meanSecondsPerTrial: seconds / Double(trials), peakRssBytes: peakRSSBytes(),
                meanSelectionRecall: Nullable(mean(recalls)), meanSelectionRecallHits: Nullable(mean(hitRecalls)),
                meanSelectionRecallMisses: Nullable(mean(missRecalls))), grid)
        }
        return grid
    }
}
