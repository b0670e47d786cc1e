import ArgumentParser
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

    static let task = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there."
    static let filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
    static let question = "What is the pass key? The pass key is"

    /// Parses "8k" / "16384".
    static func parseLength(_ s: Substring) -> Int? {
        let t = s.lowercased().trimmingCharacters(in: .whitespaces)
        // Bounded (Limits.tokens) before multiplying: "9999999999999999k" must not overflow.
        if t.hasSuffix("k"), let v = Int(t.dropLast()), v > 0, v <= Limits.tokens.upperBound / 1024 { return v * 1024 }
        guard let v = Int(t), Limits.tokens.contains(v) else { return nil }
        return v
    }

    /// A generated passkey prompt and where its key line sits in its tokens.
    struct Prompt {
        var text: String
        var ids: [Int32]
        /// Token span of the key line in `ids` (a boundary token shared with the filler counts as key).
        var keySpan: Range<Int>
        /// Index in `ids` of the question's first token (its leading newline): the document ends before it.
        var questionStart: Int
    }

    /// A prompt of about `tokens` tokens with the key at `depth` (share of filler before it), filler cut at
    /// a token boundary as in the reference.
    static func prompt(tokens: Int, depth: Double, key: Int, tokenizer: Tokenizer) -> Prompt {
        let keyLine = "The pass key is \(key). Remember it. \(key) is the pass key."
        let fixed = tokenizer.encode(task + "\n" + "\n" + keyLine + "\n" + "\n" + question).count
        let fillerTokens = max(0, tokens - fixed)
        // Joined, a repetition takes one token less than `unit` (the space goes with the next word), so
        // grow until the filler covers `fillerTokens` (a longer repetition keeps the same leading tokens).
        let unit = tokenizer.encode(filler + " ")
        var reps = fillerTokens / max(1, unit.count) + 2
        var ids = tokenizer.encode(Array(repeating: filler, count: reps).joined(separator: " "))
        while ids.count < fillerTokens + 1 {
            reps += reps / 8 + 2
            ids = tokenizer.encode(Array(repeating: filler, count: reps).joined(separator: " "))
        }
        let before = Int(Double(fillerTokens) * depth)
        let pre = tokenizer.decode(Array(ids[0..<before]))
        let post = tokenizer.decode(Array(ids[0..<(fillerTokens - before)]))
        let head = [task, pre].joined(separator: "\n") + "\n"
        let text = head + [keyLine, post, question].joined(separator: "\n")
        let all = tokenizer.encode(text)
        // The key line's tokens: where the encodings of the text up to it and through it stop agreeing
        // with the whole prompt's (a token merged across the boundary is counted as the key's).
        let start = commonPrefixCount(all, tokenizer.encode(head))
        let end = max(start + 1, commonPrefixCount(all, tokenizer.encode(head + keyLine)))
        let document = head + [keyLine, post].joined(separator: "\n")
        return Prompt(text: text, ids: all, keySpan: start..<min(end, all.count),
                      questionStart: commonPrefixCount(all, tokenizer.encode(document)))
    }

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

    var lengthList: [Int] { lengths.split(separator: ",").compactMap(Self.parseLength) }

    func run() throws {
        try guarded {
            let (model, tokenizer) = try modelOptions.load(maxBatch: lh.chunk)
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: lh.memoryBudget << 20)
            let parameters = lh.parameters
            let depthList = depths.flatMap { DepthSchedule.parse($0) }
            var rng = SeededGenerator(seed: seed)
            let list = lengthList
            var grid = PasskeyGrid(lengths: list)
            let (L, H) = (model.config.layers, model.config.heads)
            for length in list {
                var hits = 0
                var seconds = 0.0
                var recalls = [Double](), hitRecalls = [Double](), missRecalls = [Double]()
                for t in 0..<trials {
                    // Draw the random depth even when --depths is given, so a seed gives the same keys either way.
                    let randomDepth = Double(rng.next() % 1000) / 1000
                    let depth = DepthSchedule.depth(trial: t, depths: depthList, random: randomDepth)
                    let key = 10000 + Int(rng.next() % 90000)
                    let p = Self.prompt(tokens: length, depth: depth, key: key, tokenizer: tokenizer)
                    let last = p.ids.count - 1
                    let keyChunks = SelectionTally.chunks(of: p.keySpan, chunkSize: parameters.chunkSize)
                    let tally = SelectionTally(layers: L, heads: H, position: last, keyChunks: keyChunks)
                    let dir = TemporaryStores.directory + "longheads-passkey-\(getpid())-\(t)"
                    defer { try? FileManager.default.removeItem(atPath: dir) }
                    let clock = ContinuousClock()
                    let t0 = clock.now
                    let (session, logits) = try pipeline.run(prompt: p.ids, questionStart: p.questionStart, storeAt: dir, modelFile: model.file,
                                                             parameters: parameters, precision: lh.kvPrecision, chat: false) { attention in
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
                    if json {
                        let o: [String: Any] = [
                            "length": length, "tokens": p.ids.count, "trial": t, "depth": depth, "key": key, "answer": answer,
                            "correct": ok, "seconds": elapsed, "parameters": parameters.description, "precision": lh.precision,
                            "key_span": [p.keySpan.lowerBound, p.keySpan.upperBound], "key_chunk": keyChunks.lowerBound,
                            "key_chunks": Array(keyChunks), "answer_chunk": last / parameters.chunkSize,
                            "key_in_forced_chunk": forced, "selection_recall": recall ?? NSNull(),
                            "selection_per_layer": tally.perLayer,
                        ]
                        try Output.line(try jsonLine(o))
                    } else {
                        log(String(format: "passkey %d tokens depth %.2f: %@ (%@)", p.ids.count, depth, ok ? "ok" : "MISS",
                                   answer.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: "\\n")))
                        log(String(format: "  selection: key chunk %@ of %d%@, recall %.2f, heads/%d per layer: %@",
                                   keyChunks.count == 1 ? "\(keyChunks.lowerBound)" : "\(keyChunks.lowerBound)-\(keyChunks.upperBound)",
                                   last / parameters.chunkSize + 1, forced ? " (forced)" : "", tally.recall, H, tally.countsLine))
                    }
                }
                let line: [String: Any] = [
                    "length": length, "correct": hits, "trials": trials, "accuracy": Double(hits) / Double(trials),
                    "parameters": parameters.description, "chunk": parameters.chunkSize, "attention": parameters.attentionLength,
                    "selective_from": parameters.beginSelective, "precision": lh.precision,
                    "depths": depthList.map { $0 as Any } ?? "random", "seed": seed,
                    "mean_seconds_per_trial": seconds / Double(trials), "peak_rss_bytes": peakRSSBytes(),
                    "mean_selection_recall": mean(recalls) ?? NSNull(),
                    "mean_selection_recall_hits": mean(hitRecalls) ?? NSNull(),
                    "mean_selection_recall_misses": mean(missRecalls) ?? NSNull(),
                ]
                try Output.line(try jsonLine(line))
                if let plot {
                    let title = "Passkey accuracy, \(parameters.description) precision=\(lh.precision)"
                    let subtitle = "\(URL(fileURLWithPath: model.file.path).lastPathComponent), greedy, "
                        + "\(trials) trials per length, depths \(depths ?? "random"), seed \(seed)"
                    try writeAtomically(renderHeatmapSVG(grid: grid, title: title, subtitle: subtitle), to: plot)
                }
            }
        }
    }

    /// One JSON object on one line, keys sorted.
    private func jsonLine(_ o: [String: Any]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
    }
}
