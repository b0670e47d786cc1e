import ArgumentParser
import Evaluation
import Foundation
import Generation
import KVStore
import LongHeads
import Model
import Pipeline
import Tokenization

/// LongHeads options of `bench niah`: those of `LongHeadsOptions`, with several policies and `oracle`.
struct NiahLongHeadsOptions: ParsableArguments {
    @Option(name: .long, help: "LongHeads chunk size (tokens).") var chunk: Int = LongHeadsParameters.default.chunkSize
    @Option(name: .long, help: "LongHeads attention length: tokens one head reads per query.") var attention: Int = LongHeadsParameters.default.attentionLength
    @Option(name: .long, help: "Plain causal attention below this many tokens (default: the attention length).") var selectiveFrom: Int?
    @Option(name: .long, help: """
        Policies that answer, comma-separated: quest-lexical (default), quest, quest-sub, quest-exact, paper, \
        oracle (quest with the needle's chunks forced into every selective head's selection from the question \
        on: what perfect selection reaches), needle-chunk (the model reads only the needle's chunks and the \
        question: its reading ceiling, no selection). All but needle-chunk answer the same stores.
        """)
    var policy: String = SelectionPolicy.default.rawValue
    @Option(name: .long, help: "Policy that ingests the haystacks (default: the first of --policy, quest for oracle).")
    var ingestPolicy: String?
    @Option(name: [.customLong("kv"), .customLong("precision")],
            help: "KV format of a new store: f16, q8 or q4 (KIVI 8/4-bit; default \(KVPrecision.default)). --precision is an alias.")
    var precision: String = KVPrecision.default.description
    @Option(name: .long, help: "Memory budget of the KV page cache, MiB.") var memoryBudget: Int = 512
    @Option(name: .long, help: """
        How the prompts are read, comma-separated: ask (the haystack ingested, then the question asked under each \
        --policy, as `ask`), generate (the whole prompt given to `generate`, which takes its last paragraph as the \
        question that retrieves; under the ingest policy), generate-no-retrieval (`generate --no-retrieval`).
        """)
    var via: String = NiahVia.ask.rawValue

    /// The answering policies, in the order given.
    var policies: [String] { policy.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    /// The run's configuration (tasks, lengths, trials and seed from the command).
    func configuration(tasks: [NiahTask], lengths: [Int], trials: Int, depths: [Double]?, seed: UInt64) -> NiahConfiguration {
        NiahConfiguration(tasks: tasks, lengths: lengths, trials: trials, depths: depths, seed: seed, policies: policies,
                          ingestPolicy: ingestPolicy, chunk: chunk, attention: attention, selectiveFrom: selectiveFrom, precision: kvPrecision,
                          vias: NiahVia.list(via) ?? [.ask])
    }

    var kvPrecision: KVPrecision { KVPrecision(name: precision) ?? .default }

    func validate() throws {
        if let p = NiahConfiguration.policyProblem(policies: policies, ingestPolicy: ingestPolicy) { throw ValidationError(p) }
        guard NiahVia.list(via) != nil else {
            throw ValidationError("--via takes distinct names of \(NiahVia.allCases.map(\.rawValue).joined(separator: ", ")); got '\(via)'")
        }
        try checkOption("chunk", chunk, Limits.chunk)
        try checkOption("attention", attention, Limits.attention)
        if let selectiveFrom { try checkOption("selective-from", selectiveFrom, Limits.attention) }
        if let p = configuration(tasks: [], lengths: [], trials: 1, depths: nil, seed: 0).ingestParameters.problem { throw ValidationError(p) }
        guard KVPrecision(name: precision) != nil else { throw ValidationError("--kv must be f16, q8 or q4, not '\(precision)'") }
        try checkOption("memory-budget", memoryBudget, Limits.memoryBudgetMiB)
    }
}

/// `longheads bench niah`: needle-in-a-haystack retrieval in generated prose (one needle, or RULER's
/// multi-key variant) or the passkey prompt, with the selection diagnostic of `bench passkey`.
struct BenchNiah: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "niah",
        abstract: "Needle-in-a-haystack accuracy per task and length (greedy, ≤ 12 tokens); JSON lines with --json.",
        discussion: """
            Haystacks are generated from the seed: varied template prose with a needle sentence (prose: "The \
            secret ingredient of the festival soup is WORD."; multikey: four "special magic number" needles, one \
            asked) or the passkey prompt, ending in the question in raw completion form. A trial is correct when \
            the continuation contains the answer (case-insensitive). The selection diagnostic counts the \
            (layer, head) pairs whose chunk selection at the last prompt token holds the asked needle's chunks \
            (selection_recall). --policy oracle forces those chunks into every selective head's selection; \
            --policy needle-chunk cuts the prompt to the needle's chunks and the question (read_tokens), which \
            the model reads with plain attention: the most any selection can reach with this model. \
            With --json, one line per trial and one per (task, length); otherwise trial lines go to stderr and \
            a summary table to stdout.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var lh: NiahLongHeadsOptions
    @Option(name: .long, help: "Tasks, comma-separated: prose, multikey, passkey.") var task: String = "prose"
    @Option(name: .long, help: "Prompt lengths in tokens, e.g. 8k,16k,32k.") var lengths: String = "8k,16k,32k"
    @Option(name: .long, help: "Trials per task and length.") var trials: Int = 5
    @Option(name: .long, help: "Needle depths to cycle through, e.g. 0.1,0.5,0.9 (default: a random depth per trial).") var depths: String?
    @Option(name: .long, help: "Random seed (a trial's haystack depends on seed, task, length and trial only).") var seed: UInt64 = 1
    @Flag(name: .long, help: "One JSON line per trial and per (task, length).") var json = false

    var taskList: [NiahTask]? {
        let parts = task.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let tasks = parts.compactMap(NiahTask.init(rawValue:))
        return tasks.count == parts.count && !tasks.isEmpty ? tasks : nil
    }

    var lengthList: [Int] { lengths.split(separator: ",").compactMap(Passkey.parseLength) }

    func validate() throws {
        guard taskList != nil else {
            throw ValidationError("--task must be one or more of \(NiahTask.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        try checkOption("trials", trials, Limits.repetitions)
        guard !lengthList.isEmpty, lengthList.count == lengths.split(separator: ",").count else {
            throw ValidationError("--lengths: give positive lengths, e.g. 8k,16k or 2048")
        }
        if let depths, DepthSchedule.parse(depths) == nil {
            throw ValidationError("--depths: give depths in 0...1, e.g. 0.1,0.5,0.9")
        }
    }

    func run() throws {
        try guarded {
            let (model, tokenizer) = try modelOptions.load(maxBatch: lh.chunk)
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: lh.memoryBudget << 20)
            let cfg = lh.configuration(tasks: taskList!, lengths: lengthList, trials: trials, depths: depths.flatMap { DepthSchedule.parse($0) },
                                       seed: seed)
            let H = model.config.heads
            let rows = try NiahBenchmark(configuration: cfg, pipeline: pipeline, scratchDirectory: TemporaryStores.directory).run(trial: { t in
                if json { return try Output.line(try jsonLine(t)) }
                for line in t.logLines(heads: H) { log(line) }
            }, summary: { row in
                if json { try Output.line(try jsonLine(row)) }
            })
            if !json {
                let title = "niah \(cfg.ingestParameters.description.replacingOccurrences(of: "policy=", with: "ingest_policy=")) "
                    + "precision=\(lh.precision) seed=\(seed) depths=\(depths ?? "random")"
                try Output.write(NiahSummary.table(rows, header: title))
            }
        }
    }
}
