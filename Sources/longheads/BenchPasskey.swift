import ArgumentParser
import Foundation
import Generation
import LongHeads
import Model
import Pipeline
import Tokenization

/// `longheads bench passkey`: the LongHeads authors' passkey test (format of shared/reference/passkey).
struct BenchPasskey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passkey",
        abstract: "Passkey retrieval accuracy per length (greedy), with the LongHeads parameters; JSON lines with --json.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var lh: LongHeadsOptions
    @Option(name: .long, help: "Prompt lengths in tokens, e.g. 8k,16k,32k.") var lengths: String = "8k,16k,32k"
    @Option(name: .long, help: "Trials per length (random depth and key).") var trials: Int = 5
    @Option(name: .long, help: "Random seed.") var seed: UInt64 = 1
    @Flag(name: .long, help: "One JSON line per trial and per length.") var json = false

    static let task = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there."
    static let filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."

    /// Parses "8k" / "16384".
    static func parseLength(_ s: Substring) -> Int? {
        let t = s.lowercased()
        if t.hasSuffix("k"), let v = Int(t.dropLast()) { return v * 1024 }
        return Int(t)
    }

    /// A prompt of about `tokens` tokens with the key at `depth` (share of filler before it), filler cut at
    /// a token boundary as in the reference.
    static func prompt(tokens: Int, depth: Double, key: Int, tokenizer: Tokenizer) -> String {
        let keyLine = "The pass key is \(key). Remember it. \(key) is the pass key."
        let question = "What is the pass key? The pass key is"
        let fixed = tokenizer.encode(task + "\n" + "\n" + keyLine + "\n" + "\n" + question).count
        let fillerTokens = max(0, tokens - fixed)
        let unit = tokenizer.encode(filler + " ")
        let reps = fillerTokens / max(1, unit.count) + 2
        let ids = tokenizer.encode(Array(repeating: filler, count: reps).joined(separator: " "))
        let before = Int(Double(fillerTokens) * depth)
        let pre = tokenizer.decode(Array(ids[0..<before]))
        let post = tokenizer.decode(Array(ids[0..<(fillerTokens - before)]))
        return [task, pre, keyLine, post, question].joined(separator: "\n")
    }

    func run() throws {
        try guarded {
            let (model, tokenizer) = try modelOptions.load(maxBatch: lh.chunk)
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: lh.memoryBudget << 20)
            var rng = SeededGenerator(seed: seed)
            let list = lengths.split(separator: ",").compactMap(Self.parseLength)
            guard !list.isEmpty else { throw ValidationError("--lengths: give e.g. 8k,16k") }
            var summary = [(Int, Int, Int)]()
            for length in list {
                var hits = 0
                for t in 0..<trials {
                    let depth = Double(rng.next() % 1000) / 1000
                    let key = 10000 + Int(rng.next() % 90000)
                    let text = Self.prompt(tokens: length, depth: depth, key: key, tokenizer: tokenizer)
                    let ids = tokenizer.encode(text)
                    let dir = NSTemporaryDirectory() + "longheads-passkey-\(getpid())-\(t)"
                    defer { try? FileManager.default.removeItem(atPath: dir) }
                    let clock = ContinuousClock()
                    let t0 = clock.now
                    let (session, logits) = try pipeline.run(prompt: ids, storeAt: dir, modelFile: model.file,
                                                             parameters: lh.parameters, precision: lh.kvPrecision, chat: false)
                    var answer = ""
                    _ = try pipeline.answer(session: session, first: logits, maxTokens: 10, sampling: .greedy) { answer += $0 }
                    let ok = answer.contains(String(key))
                    if ok { hits += 1 }
                    if json {
                        let o: [String: Any] = ["length": length, "tokens": ids.count, "depth": depth, "key": key, "answer": answer,
                                                "correct": ok, "seconds": (clock.now - t0).seconds, "parameters": lh.parameters.description]
                        print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
                    } else {
                        log(String(format: "passkey %d tokens depth %.2f: %@ (%@)", ids.count, depth, ok ? "ok" : "MISS", answer.trimmingCharacters(in: .whitespacesAndNewlines)))
                    }
                }
                summary.append((length, hits, trials))
                let line: [String: Any] = ["length": length, "correct": hits, "trials": trials, "accuracy": Double(hits) / Double(max(trials, 1)),
                                           "parameters": lh.parameters.description, "precision": lh.precision, "peak_rss_bytes": peakRSSBytes()]
                print(String(decoding: try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]), as: UTF8.self))
            }
        }
    }
}
