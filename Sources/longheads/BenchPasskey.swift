import ArgumentParser
import Evaluation
import Foundation
import Generation
import LongHeads
import Model
import Pipeline
import Tokenization

/// `longheads bench passkey`: the LongHeads authors' passkey test (format of shared/reference/passkey),
/// with a selection diagnostic (which heads selected the key's chunk at the answer step) and an optional
/// length × depth heatmap.
struct BenchPasskey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passkey",
        abstract: "Passkey retrieval accuracy per length (greedy), with the LongHeads parameters; JSON lines with --json.",
        discussion: """
            Per trial, the selection diagnostic counts per layer the query heads whose chunk selection at the \
            last prompt token holds a chunk overlapping the key line (selection_recall, selection_per_layer; \
            key_in_forced_chunk when the key sits in chunk 0, the previous or the current chunk, which every \
            head reads anyway). With --json, one line per trial and one summary line per length; otherwise \
            trial lines go to stderr and only the summary lines to stdout.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var lh: LongHeadsOptions
    @Option(name: .long, help: "Prompt lengths in tokens, e.g. 8k,16k,32k.") var lengths: String = "8k,16k,32k"
    @Option(name: .long, help: "Trials per length (random key; random depth unless --depths).") var trials: Int = 5
    @Option(name: .long, help: "Key depths to cycle through, e.g. 0.1,0.5,0.9 (default: a random depth per trial).") var depths: String?
    @Option(name: .long, help: "Random seed.") var seed: UInt64 = 1
    @Option(name: .long, help: "Write a length × depth accuracy heatmap here (SVG), rewritten after each length.") var plot: String?
    @Flag(name: .long, help: "One JSON line per trial and per length.") var json = false

    func validate() throws {
        try checkOption("trials", trials, Limits.repetitions)
        guard !lengthList.isEmpty, lengthList.count == lengths.split(separator: ",").count else {
            throw ValidationError("--lengths: give positive lengths, e.g. 8k,16k or 2048")
        }
        if let depths, DepthSchedule.parse(depths) == nil {
            throw ValidationError("--depths: give depths in 0...1, e.g. 0.1,0.5,0.9")
        }
        if let plot, plot.isEmpty { throw ValidationError("--plot: give a file name") }
    }

    var lengthList: [Int] { lengths.split(separator: ",").compactMap(Passkey.parseLength) }

    func run() throws {
        try guarded {
            let (model, tokenizer) = try modelOptions.load(maxBatch: lh.chunk)
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: lh.memoryBudget << 20)
            let parameters = lh.parameters
            let H = model.config.heads
            let bench = PasskeyBenchmark(lengths: lengthList, trials: trials, depths: depths.flatMap { DepthSchedule.parse($0) }, seed: seed,
                                         parameters: parameters, precision: lh.kvPrecision, pipeline: pipeline,
                                         scratchDirectory: TemporaryStores.directory)
            try bench.run(trial: { t in
                if json { return try Output.line(try jsonLine(t)) }
                for line in t.logLines(heads: H) { log(line) }
            }, summary: { line, grid in
                try Output.line(try jsonLine(line))
                if let plot {
                    let title = "Passkey accuracy, \(parameters.description) precision=\(lh.precision)"
                    let subtitle = "\(URL(fileURLWithPath: model.file.path).lastPathComponent), greedy, "
                        + "\(trials) trials per length, depths \(depths ?? "random"), seed \(seed)"
                    try writeAtomically(renderHeatmapSVG(grid: grid, title: title, subtitle: subtitle), to: plot)
                }
            })
        }
    }
}
