import Foundation
import Generation
import KVStore
import LongHeads
import Model
import Pipeline
import Tokenization

/// How `bench niah` reads a trial's prompt (`--via`).
public enum NiahVia: String, CaseIterable, Sendable {
    /// `ask`'s path: the haystack ingested once, then the question asked of that store under every policy.
    case ask
    /// `generate`'s path (issue 15, part 6): the whole prompt text through a temporary store, its last
    /// paragraph (`PromptQuestion`) read as a question whose tokens retrieve a chunk; under the ingest policy.
    case generate
    /// `generate --no-retrieval`: the whole prompt read without a question (the path before issue 15).
    case generateNoRetrieval = "generate-no-retrieval"

    /// The readings named in a comma-separated list, in the order given; nil when a name is unknown,
    /// repeated or the list is empty.
    public static func list(_ s: String) -> [NiahVia]? {
        let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let vias = parts.compactMap(NiahVia.init(rawValue:))
        return vias.count == parts.count && !vias.isEmpty && Set(vias).count == vias.count ? vias : nil
    }
}

/// What `bench niah` runs: tasks × lengths × trials, each haystack asked under every policy.
public struct NiahConfiguration: Sendable {
    /// Quest with the needle's chunks forced into every selective head's selection from the question on.
    public static let oracle = "oracle"
    /// Diagnosis: the prompt cut to the needle's chunks and the question, read with plain attention (below
    /// the attention length). Whatever it misses, no selection policy can get right with this model.
    public static let needleChunk = "needle-chunk"
    /// Every policy name: the selection policies, `oracle` and `needle-chunk`.
    public static var policyNames: [String] { SelectionPolicy.allCases.map(\.rawValue) + [oracle, needleChunk] }

    /// What is wrong with answering `policies` and ingesting with `ingestPolicy` (`bench niah --policy`,
    /// `--ingest-policy`): a name not in `policyNames`, no policy, or one given twice. Nil when nothing is.
    public static func policyProblem(policies: [String], ingestPolicy: String?) -> String? {
        for name in policies + (ingestPolicy.map { [$0] } ?? []) where !policyNames.contains(name) {
            return "--policy and --ingest-policy take \(policyNames.joined(separator: ", ")); got '\(name)'"
        }
        return policies.isEmpty || Set(policies).count != policies.count ? "--policy: give distinct policies" : nil
    }

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
    /// How each prompt is read, in order (`NiahVia`); `ask` answers under every policy, the others once.
    public var vias: [NiahVia]

    /// A configuration; `policies` and `vias` must not be empty.
    public init(tasks: [NiahTask], lengths: [Int], trials: Int, depths: [Double]?, seed: UInt64, policies: [String],
                ingestPolicy: String?, chunk: Int, attention: Int, selectiveFrom: Int?, precision: KVPrecision, vias: [NiahVia] = [.ask]) {
        precondition(!policies.isEmpty && !vias.isEmpty)
        (self.tasks, self.lengths, self.trials, self.depths, self.seed) = (tasks, lengths, trials, depths, seed)
        (self.policies, self.ingestPolicy, self.chunk, self.attention, self.selectiveFrom, self.precision, self.vias) =
            (policies, ingestPolicy, chunk, attention, selectiveFrom, precision, vias)
    }

    /// What answers each trial, in order: with `ask`, every policy; each `generate` reading under the
    /// ingest parameters' selection policy (`generate` has one policy, and no oracle to force).
    public var answerers: [(via: NiahVia, policy: String)] {
        vias.flatMap { via in via == .ask ? policies.map { (via, $0) } : [(via, ingestParameters.policy.rawValue)] }
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

    /// Runs every trial; `trial` receives each (task, length, trial, answerer) as it ends, `summary` each
    /// (task, length, answerer) after its trials (answerers: `NiahConfiguration.answerers`). Returns the summaries.
    @discardableResult
    public func run(trial onTrial: (NiahTrial) throws -> Void, summary onSummary: (NiahSummary) throws -> Void) throws -> [NiahSummary] {
        let cfg = configuration
        let parameters = cfg.ingestParameters
        var rows = [NiahSummary]()
        for task in cfg.tasks {
            for length in cfg.lengths {
                var group = cfg.answerers.map { Accumulator(via: $0.via, policy: $0.policy) }
                for t in 0..<cfg.trials {
                    var rng = Haystack.trialGenerator(seed: cfg.seed, task: task, length: length, trial: t)
                    // Drawn even when depths are given, so a seed gives the same needles either way.
                    let randomDepth = Double(rng.next() % 1000) / 1000
                    let depth = DepthSchedule.depth(trial: t, depths: cfg.depths, random: randomDepth)
                    let p = Haystack.prompt(task: task, tokens: length, depth: depth, rng: &rng, tokenizer: pipeline.tokenizer)
                    let dir = (scratchDirectory as NSString).appendingPathComponent("longheads-niah-\(getpid())-\(t)")
                    defer { for d in [dir, dir + "-needle", dir + "-generate"] { try? FileManager.default.removeItem(atPath: d) } }
                    // The haystack is ingested once; every policy then asks the question of the same store
                    // (`ask`'s path: open the store, run the question, answer).
                    let askStore = cfg.vias.contains(.ask) && !cfg.policies.allSatisfy { $0 == NiahConfiguration.needleChunk }
                    let ingestSeconds = askStore ? try ingest(Array(p.ids[..<p.questionStart]), to: dir) : 0
                    for (k, answerer) in cfg.answerers.enumerated() {
                        let r = answerer.via == .ask
                            ? try askReading(p, policy: answerer.policy, store: dir, ingestSeconds: ingestSeconds)
                            : try generateReading(p, retrieval: answerer.via == .generate, store: dir + "-generate")
                        let ok = Haystack.isCorrect(answer: r.answer, expected: p.expected)
                        // Below the selective length every head reads every chunk, the needle's included.
                        let recall: Double? = r.tally.complete ? r.tally.recall : r.last < parameters.beginSelective ? 1 : nil
                        group[k].add(tokens: p.ids.count, ingestSeconds: r.ingestSeconds, askSeconds: r.askSeconds, correct: ok, recall: recall)
                        try onTrial(NiahTrial(
                            task: task.rawValue, length: length, tokens: p.ids.count, readTokens: r.last + 1, trial: t, depth: depth,
                            via: answerer.via.rawValue, policy: answerer.policy, ingestPolicy: parameters.policy.rawValue,
                            parameters: cfg.description(answerer.policy), precision: cfg.precision.description, seed: cfg.seed,
                            expected: p.expected, answer: r.answer, correct: ok, ingestSeconds: r.ingestSeconds, askSeconds: r.askSeconds,
                            selectionRecall: Nullable(recall), selectionPerLayer: r.tally.perLayer, needleInForcedChunk: r.forced,
                            needleSpan: [p.needleSpan.lowerBound, p.needleSpan.upperBound], needleChunks: Array(r.needleChunks),
                            answerChunk: r.answerChunk, sharedChunks: r.sharedChunks, questionTokens: Nullable(r.questionTokens),
                            key: p.asked, keys: p.asked == nil ? nil : p.keys, countsLine: r.tally.countsLine))
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

    /// What one answerer read and answered in one trial.
    struct Reading {
        /// The continuation and the selection diagnostic at the answer step.
        var answer: String, tally: SelectionTally
        /// Position of the last token read (the answer step), its chunk, and the chunks holding the needle.
        var last: Int, answerChunk: Int, needleChunks: ClosedRange<Int>
        /// Whether the needle sits in a chunk every head reads at the answer step.
        var forced: Bool
        /// Seconds of ingest and of question + answer; chunks shared by every head; tokens read as the question (nil: none).
        var ingestSeconds: Double, askSeconds: Double, sharedChunks: [Int], questionTokens: Int?
    }

    /// Ingests `ids` into a new store at `path` with the ingest parameters; returns the seconds.
    func ingest(_ ids: [Int32], to path: String) throws -> Double {
        let clock = ContinuousClock(), t0 = clock.now
        try pipeline.ingest(ids: ids, byteEnds: [Int](repeating: 0, count: ids.count), sourceBytes: 0, to: path,
                            modelFile: pipeline.model.file, parameters: configuration.ingestParameters,
                            precision: configuration.precision, chat: false)
        return (clock.now - t0).seconds
    }

    /// `ask`'s path under policy `name`: the question asked of the haystack's store at `store` (ingested
    /// in `ingestSeconds`), or (needle-chunk) of a store of the needle's chunks alone, with the needle's
    /// chunks and the answer position counted in it.
    func askReading(_ p: NiahPrompt, policy name: String, store: String, ingestSeconds: Double) throws -> Reading {
        let parameters = configuration.ingestParameters
        let (L, H) = (pipeline.model.config.layers, pipeline.model.config.heads)
        let last = p.ids.count - 1
        let needleChunks = SelectionTally.chunks(of: p.needleSpan, chunkSize: parameters.chunkSize)
        let forced = SelectionTally.inForcedChunks(needleChunks, position: last, parameters: parameters)
        var reading = (store: store, question: Array(p.ids[p.questionStart...]), last: last, needle: needleChunks, ingestSeconds: ingestSeconds)
        if name == NiahConfiguration.needleChunk {
            let w = p.needleWindow(chunkSize: parameters.chunkSize)
            reading = (store + "-needle", w.question, w.haystack.count + w.question.count - 1,
                       SelectionTally.chunks(of: w.needleSpan, chunkSize: parameters.chunkSize), try ingest(w.haystack, to: store + "-needle"))
        }
        let tally = SelectionTally(layers: L, heads: H, position: reading.last, keyChunks: reading.needle)
        let clock = ContinuousClock(), t1 = clock.now
        let (session, logits) = try pipeline.open(
            store: reading.store, modelFile: pipeline.model.file, then: reading.question, policy: NiahConfiguration.selection(name),
            question: true, diagnosisChunks: name == NiahConfiguration.oracle ? Array(needleChunks) : nil) { attention in
            attention.selections.observe(tally.observe)
        }
        // Only the answer step is diagnosed; shared chunks stay for the answer tokens.
        session.attention.selections.removeAll()
        var answer = ""
        _ = try pipeline.answer(session: session, first: logits, maxTokens: Self.maxAnswerTokens, sampling: .greedy) { answer += $0 }
        return Reading(answer: answer, tally: tally, last: reading.last, answerChunk: last / parameters.chunkSize, needleChunks: needleChunks,
                       forced: forced, ingestSeconds: reading.ingestSeconds, askSeconds: (clock.now - t1).seconds,
                       sharedChunks: session.attention.sharedChunks, questionTokens: reading.question.count)
    }

    /// `generate`'s path on the same prompt text (`generate --prompt-file`, raw): its tokens (after a BOS
    /// the model wants), with `retrieval` its last paragraph as the question (`questionStart(ofPrompt:)`),
    /// through a new store at `store`. The ingest counts as ingest seconds, the question and answer as ask seconds.
    func generateReading(_ p: NiahPrompt, retrieval: Bool, store: String) throws -> Reading {
        let parameters = configuration.ingestParameters
        let (L, H) = (pipeline.model.config.layers, pipeline.model.config.heads)
        let ids = pipeline.promptTokens(p.text, chat: false)
        let shift = ids.count - p.ids.count  // a BOS the model wants
        let questionStart = retrieval ? pipeline.questionStart(ofPrompt: p.text, chat: false, ids: ids) : nil
        let needle = SelectionTally.chunks(of: (p.needleSpan.lowerBound + shift)..<(p.needleSpan.upperBound + shift),
                                           chunkSize: parameters.chunkSize)
        let last = ids.count - 1
        let tally = SelectionTally(layers: L, heads: H, position: last, keyChunks: needle)
        try? FileManager.default.removeItem(atPath: store)
        let clock = ContinuousClock(), t1 = clock.now
        let (session, logits) = try pipeline.run(prompt: ids, questionStart: questionStart, storeAt: store, modelFile: pipeline.model.file,
                                                 parameters: parameters, precision: configuration.precision, chat: false) { attention in
            attention.selections.observe(tally.observe)
        }
        session.attention.selections.removeAll()
        let t2 = clock.now
        var answer = ""
        _ = try pipeline.answer(session: session, first: logits, maxTokens: Self.maxAnswerTokens, sampling: .greedy) { answer += $0 }
        return Reading(answer: answer, tally: tally, last: last, answerChunk: last / parameters.chunkSize, needleChunks: needle,
                       forced: SelectionTally.inForcedChunks(needle, position: last, parameters: parameters),
                       ingestSeconds: (t2 - t1).seconds, askSeconds: (clock.now - t2).seconds,
                       sharedChunks: session.attention.sharedChunks, questionTokens: questionStart.map { ids.count - $0 })
    }

    /// Totals of one (task, length, policy).
    struct Accumulator {
        var via: NiahVia
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
                meanTokens: Double(tokens) / n, via: via.rawValue, policy: policy, ingestPolicy: cfg.ingestParameters.policy.rawValue,
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
