import ArgumentParser
import Foundation
import Generation
import KVStore
import LongHeads
import Model
import Pipeline
import Tokenization

/// The haystack tasks of `bench niah`.
enum NiahTask: String, CaseIterable, Sendable {
    /// Varied template prose with one needle sentence ("The secret ingredient of the festival soup is WORD.").
    case prose
    /// RULER's multi-key needle: four "special magic number" needles with distinct keys; one is asked for.
    case multikey
    /// `bench passkey`'s prompt (repeated filler, a five-digit key).
    case passkey
}

/// A generated needle-in-a-haystack prompt and where its needles sit.
struct NiahPrompt {
    /// The prompt text (raw completion: it ends with the start of the answer sentence).
    var text: String
    /// Its tokens (no BOS, as `bench passkey`).
    var ids: [Int32]
    /// What the continuation must contain to count as correct (case-insensitive).
    var expected: String
    /// Token span of the asked needle (a boundary token shared with the prose counts as needle).
    var needleSpan: Range<Int>
    /// Token spans of every needle, in text order (multikey: four, one of them `needleSpan`).
    var allNeedleSpans: [Range<Int>]
    /// Index in `ids` of the question's first token (its leading newline): the haystack ends before it.
    var questionStart: Int
    /// The asked needle's depth: share of the haystack's tokens before it.
    var depth: Double
    /// Multikey: the four keys in text order; otherwise empty.
    var keys: [String] = []
    /// Multikey: the asked key; otherwise nil.
    var asked: String?

    /// The prompt cut down to the chunks holding the asked needle, then the question: what
    /// `bench niah --policy needle-chunk` reads. Its needle span is relative to the cut.
    func needleWindow(chunkSize: Int) -> (haystack: [Int32], question: [Int32], needleSpan: Range<Int>) {
        let chunks = SelectionTally.chunks(of: needleSpan, chunkSize: chunkSize)
        let lo = chunks.lowerBound * chunkSize, hi = min((chunks.upperBound + 1) * chunkSize, questionStart)
        return (Array(ids[lo..<hi]), Array(ids[questionStart...]), (needleSpan.lowerBound - lo)..<(needleSpan.upperBound - lo))
    }
}

/// Deterministic haystack generation for `bench niah`: varied sentences from templates (names, nouns,
/// places, verbs, numbers), so that a needle cannot be found by spotting the one sentence that differs
/// from a repeated filler, and the answer words never occur in the prose.
enum Haystack {
    /// Needle words (prose answers, multikey keys): concrete nouns that the filler never uses.
    static let needleWords = [
        "anchor", "apricot", "avocado", "banjo", "beetroot", "biscuit", "cactus", "canoe", "carrot", "cherry",
        "chestnut", "coconut", "compass", "crayon", "cucumber", "dolphin", "feather", "giraffe", "glacier", "harmonica",
        "hazelnut", "kangaroo", "lantern", "lemon", "lobster", "magnet", "mango", "marble", "meteor", "mushroom",
        "nutmeg", "octopus", "onion", "oyster", "parsley", "peacock", "pebble", "pelican", "penguin", "pineapple",
        "pretzel", "pumpkin", "raisin", "saffron", "sardine", "seashell", "telescope", "tomato", "trumpet", "tulip",
        "turnip", "walnut", "zucchini",
    ]
    static let names = ["Mara", "Tobias", "Ines", "Rafael", "Greta", "Yusuf", "Lena", "Oskar", "Priya", "Daniel",
                        "Hana", "Felix", "Amara", "Jonas", "Sofia", "Milo", "Nadia", "Theo", "Elif", "Bruno"]
    /// Filler nouns; all pluralize with "s".
    static let nouns = ["chair", "basket", "ladder", "bucket", "blanket", "bottle", "hammer", "window", "pencil", "candle",
                        "wagon", "barrel", "kettle", "mirror", "bicycle", "umbrella", "notebook", "cart", "drum", "bell",
                        "shovel", "clock", "jar", "map", "boot", "coin", "fence", "flag", "gate", "glove",
                        "helmet", "lamp", "net", "pillow", "plate", "ribbon", "saddle", "sack", "spoon", "stool",
                        "tent", "towel", "tray", "trunk", "violin", "whistle"]
    static let places = ["harbor", "bakery", "library", "market", "train station", "old mill", "school", "post office",
                         "orchard", "workshop", "museum", "town hall", "ferry dock", "greenhouse", "barn", "stadium",
                         "hospital", "lighthouse", "bridge", "village square", "warehouse", "garden", "hotel", "chapel", "quarry"]
    static let verbs = ["repaired", "painted", "moved", "cleaned", "measured", "polished", "inspected", "borrowed", "returned",
                        "wrapped", "carried", "sold", "weighed", "hid", "found", "sorted", "labeled", "stacked",
                        "photographed", "sketched"]
    static let adjectives = ["old", "heavy", "narrow", "bright", "wooden", "rusty", "tall", "quiet", "crooked", "dusty",
                             "small", "enormous", "faded", "shiny", "broken", "round", "sturdy", "pale", "wide", "clumsy"]
    static let colors = ["red", "blue", "green", "yellow", "grey", "white", "orange", "purple", "brown", "black"]
    static let materials = ["smoke", "fresh paint", "bread", "wet wool", "pine", "soap", "tar", "coffee", "sawdust", "salt"]
    static let times = ["noon", "dawn", "midnight", "sunset", "lunch", "breakfast", "the evening bell", "the first train"]
    static let weekdays = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

    /// Sentence templates; `{x}` slots are filled by `sentence(_:)`.
    static let templates = [
        "{Name} carried {n} {nouns} from the {place} to the {place2} before {time}.",
        "At the {place}, a {adj} {noun} was {verbed} by {Name} while the {noun2} waited outside.",
        "Nobody at the {place} remembered why the {noun} had been painted {color}.",
        "{Name} counted {n} {nouns} near the {place} and wrote the total on a {adj} card.",
        "The {adj} {noun} stood next to the {noun2}, and everyone went back to the {place}.",
        "By {time} the {place} smelled of {material}, and {Name} opened every window.",
        "In {year}, the {noun} at the {place} was replaced by a {color} {noun2}.",
        "{Name} and {Name2} argued about the {noun} for {n} minutes at the {place}.",
        "A {color} {noun} rolled across the floor of the {place}, surprising {Name}.",
        "The {place} kept {n} {nouns} in a {adj} cupboard beside the door.",
        "Every {weekday}, {Name} {verbed} the {noun} behind the {place}.",
        "It took {n} days to fix the {noun} at the {place}, according to {Name}.",
        "{Name} said the {place} had {n} windows, though {Name2} counted only {m}.",
        "The road from the {place} to the {place2} passes a {adj} {noun} and a {color} {noun2}.",
        "When the {noun} broke, {Name} mended it with a strip of {material}.",
        "Rain fell on the {place} for {m} hours, and the {nouns} were moved indoors.",
        "{Name} {verbed} a {adj} {noun} on {weekday} and left it at the {place}.",
        "The children at the {place} drew a {color} {noun} on the wall in {year}.",
    ]

    /// One random element of `xs`.
    static func pick<T>(_ xs: [T], _ rng: inout SeededGenerator) -> T { xs[Int(rng.next() % UInt64(xs.count))] }

    /// One random sentence.
    static func sentence(_ rng: inout SeededGenerator) -> String {
        var s = pick(templates, &rng)
        let n1 = pick(nouns, &rng)
        var n2 = pick(nouns, &rng)
        if n2 == n1 { n2 = nouns[(nouns.firstIndex(of: n1)! + 1) % nouns.count] }
        let p1 = pick(places, &rng)
        var p2 = pick(places, &rng)
        if p2 == p1 { p2 = places[(places.firstIndex(of: p1)! + 1) % places.count] }
        let a1 = pick(names, &rng)
        var a2 = pick(names, &rng)
        if a2 == a1 { a2 = names[(names.firstIndex(of: a1)! + 1) % names.count] }
        let fills: [(String, String)] = [
            ("{Name2}", a2), ("{Name}", a1), ("{nouns}", n1 + "s"), ("{noun2}", n2), ("{noun}", n1),
            ("{place2}", p2), ("{place}", p1), ("{verbed}", pick(verbs, &rng)), ("{adj}", pick(adjectives, &rng)),
            ("{color}", pick(colors, &rng)), ("{material}", pick(materials, &rng)), ("{time}", pick(times, &rng)),
            ("{weekday}", pick(weekdays, &rng)), ("{year}", String(1850 + Int(rng.next() % 170))),
            ("{n}", String(2 + Int(rng.next() % 98))), ("{m}", String(2 + Int(rng.next() % 30))),
        ]
        for (slot, value) in fills { s = s.replacingOccurrences(of: slot, with: value) }
        return withArticles(s)
    }

    /// "a" before a vowel becomes "an" ("a orange whistle" → "an orange whistle").
    static func withArticles(_ s: String) -> String {
        var words = s.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        for i in words.indices.dropLast() where words[i] == "a" || words[i] == "A" {
            if let f = words[i + 1].first, "aeiou".contains(f) { words[i] += "n" }
        }
        return words.joined(separator: " ")
    }

    /// The prose needle and its question, for answer `word`.
    static func proseNeedle(_ word: String) -> String { "The secret ingredient of the festival soup is \(word)." }
    static let proseQuestion = "What is the secret ingredient of the festival soup? The secret ingredient of the festival soup is"
    /// A multikey needle and its question.
    static func multikeyNeedle(key: String, number: Int) -> String { "One of the special magic numbers for \(key) is: \(number)." }
    static func multikeyQuestion(key: String) -> String { "What is the special magic number for \(key)? The special magic number for \(key) is" }

    /// Varied prose ending in `"\n" + question`, about `tokens` tokens long (it stops at the last sentence
    /// that fits), with `needles` inserted between sentences at their depths (share of the prose's tokens
    /// before each). Returns the prompt and each needle's token span, in the order of `needles`.
    static func compose(tokens target: Int, needles: [(text: String, depth: Double)], question: String,
                        rng: inout SeededGenerator, tokenizer: Tokenizer) -> (text: String, ids: [Int32], spans: [Range<Int>], questionStart: Int) {
        // Token counts of the pieces add up (the pre-tokenizer splits at the space or newline that opens
        // each piece), so the budget is met without re-encoding the growing text.
        let fixed = tokenizer.encode("\n" + question).count + needles.reduce(0) { $0 + tokenizer.encode(" " + $1.text).count }
        var pieces = [(sep: String, sentence: String)](), counts = [Int]()
        var used = fixed
        while true {
            // A new paragraph now and then, as in real prose.
            let sep = rng.next() % 7 == 0 ? "\n" : " "
            let s = sentence(&rng)
            let n = tokenizer.encode(sep + s).count
            if used + n > target && !pieces.isEmpty { break }
            pieces.append((sep, s))
            counts.append(n)
            used += n
        }
        let total = counts.reduce(0, +)
        // Needle i goes before the first sentence k whose preceding sentences hold ≥ depth · total tokens.
        var prefix = [0]
        for c in counts { prefix.append(prefix.last! + c) }
        let at = needles.map { n in prefix.firstIndex { Double($0) >= n.depth * Double(total) } ?? pieces.count }
        let order = needles.indices.sorted { (at[$0], $0) < (at[$1], $1) }
        var text = "", starts = [Int: String](), ends = [Int: String]()
        var next = 0
        for k in 0...pieces.count {
            while next < order.count && at[order[next]] == k {
                let i = order[next]
                starts[i] = text
                text += (text.isEmpty ? "" : " ") + needles[i].text
                ends[i] = text
                next += 1
            }
            if k < pieces.count { text += text.isEmpty ? pieces[k].sentence : pieces[k].sep + pieces[k].sentence }
        }
        let haystack = tokenizer.encode(text)
        text += "\n" + question
        let ids = tokenizer.encode(text)
        // The question starts where the two encodings part: at the newline for SmolLM2's pre-tokenizer, one
        // token earlier for Qwen2's, whose vocabulary joins ".\n" into one token (so the haystack's last
        // token is not a prefix of the prompt's).
        let questionStart = commonPrefixCount(ids, haystack)
        let spans = needles.indices.map { i -> Range<Int> in
            let s = commonPrefixCount(ids, tokenizer.encode(starts[i]!))
            let e = max(s + 1, commonPrefixCount(ids, tokenizer.encode(ends[i]!)))
            return s..<min(e, ids.count)
        }
        return (text, ids, spans, questionStart)
    }

    /// A prompt of `task` of about `tokens` tokens with the asked needle at `depth`.
    static func prompt(task: NiahTask, tokens: Int, depth: Double, rng: inout SeededGenerator, tokenizer: Tokenizer) -> NiahPrompt {
        switch task {
        case .prose:
            let word = pick(needleWords, &rng)
            let c = compose(tokens: tokens, needles: [(proseNeedle(word), depth)], question: proseQuestion, rng: &rng, tokenizer: tokenizer)
            return NiahPrompt(text: c.text, ids: c.ids, expected: word, needleSpan: c.spans[0], allNeedleSpans: c.spans,
                              questionStart: c.questionStart, depth: depth)
        case .multikey:
            var keys = [String](), numbers = [Int]()
            while keys.count < 4 {
                let k = pick(needleWords, &rng)
                if !keys.contains(k) { keys.append(k) }
            }
            while numbers.count < 4 {
                let n = 1_000_000 + Int(rng.next() % 9_000_000)
                if !numbers.contains(n) { numbers.append(n) }
            }
            // The asked needle (index 0) at `depth`, the others at random depths.
            let depths = [depth] + (1..<4).map { _ in Double(rng.next() % 1000) / 1000 }
            let asked = Int(rng.next() % 4)
            let perm = [asked] + (0..<4).filter { $0 != asked }   // needle j of `needles` is key perm[j]
            let needles = perm.enumerated().map { (multikeyNeedle(key: keys[$0.element], number: numbers[$0.element]), depths[$0.offset]) }
            let c = compose(tokens: tokens, needles: needles, question: multikeyQuestion(key: keys[asked]), rng: &rng, tokenizer: tokenizer)
            let textOrder = c.spans.indices.sorted { c.spans[$0].lowerBound < c.spans[$1].lowerBound }
            return NiahPrompt(text: c.text, ids: c.ids, expected: String(numbers[asked]), needleSpan: c.spans[0],
                              allNeedleSpans: textOrder.map { c.spans[$0] }, questionStart: c.questionStart, depth: depth,
                              keys: textOrder.map { keys[perm[$0]] }, asked: keys[asked])
        case .passkey:
            let key = 10000 + Int(rng.next() % 90000)
            let p = BenchPasskey.prompt(tokens: tokens, depth: depth, key: key, tokenizer: tokenizer)
            return NiahPrompt(text: p.text, ids: p.ids, expected: String(key), needleSpan: p.keySpan, allNeedleSpans: [p.keySpan],
                              questionStart: p.questionStart, depth: depth)
        }
    }

    /// Whether `answer` holds `expected` (case-insensitive).
    static func isCorrect(answer: String, expected: String) -> Bool { answer.lowercased().contains(expected.lowercased()) }

    /// The generator of one trial: fixed by (seed, task, length, trial) alone, so that every policy and
    /// every `--lengths` list sees the same haystacks.
    static func trialGenerator(seed: UInt64, task: NiahTask, length: Int, trial: Int) -> SeededGenerator {
        let t = UInt64(NiahTask.allCases.firstIndex(of: task)!)
        var g = SeededGenerator(seed: seed ^ (t &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(length) &* 0xC2B2_AE3D_27D4_EB4F)
                                    ^ (UInt64(trial) &* 0x1656_67B1_9E37_79F9))
        _ = g.next()
        return g
    }
}

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
    @Option(name: .long, help: "Memory budget of the decompressed-page cache, MiB.") var memoryBudget: Int = 512

    @Option(name: .long, help: """
        How the haystacks are read, comma-separated: ask (the haystack ingested, then the question asked under each \
        --policy, as `ask`), generate (the whole prompt given to `generate`, which takes its last paragraph as the \
        question that retrieves; under the first --policy), generate-no-retrieval (`generate --no-retrieval`).
        """)
    var via: String = "ask"

    static let oracle = "oracle"
    /// `--via` names of the `generate` readings.
    static let viaGenerate = "generate", viaGenerateNoRetrieval = "generate-no-retrieval"
    static let viaNames = ["ask", viaGenerate, viaGenerateNoRetrieval]
    /// The `--via` list, in the order given.
    var vias: [String] { via.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
    /// What answers each trial, in order: the policies of `ask` (with `--via ask`), then the `generate` readings.
    var answerers: [String] { (vias.contains("ask") ? policies : []) + vias.filter { $0 != "ask" } }
    /// Diagnosis: the prompt cut to the needle's chunks and the question, read with plain attention (below
    /// the attention length). Whatever it misses, no selection policy can get right with this model.
    static let needleChunk = "needle-chunk"
    static var policyNames: [String] { SelectionPolicy.allCases.map(\.rawValue) + [oracle, needleChunk] }

    /// The answering policies, in the order given.
    var policies: [String] { policy.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    /// The selection policy behind a policy name (the oracle selects as quest besides its forced chunks;
    /// needle-chunk reads with plain attention, so its policy only names the store it writes).
    static func selection(_ name: String) -> SelectionPolicy { SelectionPolicy(rawValue: name) ?? .quest }

    /// Parameters of the ingest.
    var ingestParameters: LongHeadsParameters { parameters(ingestPolicy ?? policies[0]) }

    /// Parameters under a policy name.
    func parameters(_ name: String) -> LongHeadsParameters {
        if Self.viaNames.contains(name) { return ingestParameters }
        return LongHeadsParameters(chunkSize: chunk, attentionLength: attention, beginSelective: selectiveFrom, policy: Self.selection(name))
    }

    /// The parameters as printed with results; the oracle is named.
    func description(_ name: String) -> String {
        parameters(name).description + (name == Self.oracle ? " oracle=needle" : name == Self.needleChunk ? " read=needle-chunk" : "")
    }

    var kvPrecision: KVPrecision { KVPrecision(name: precision) ?? .default }

    func validate() throws {
        for name in policies + (ingestPolicy.map { [$0] } ?? []) where !Self.policyNames.contains(name) {
            throw ValidationError("--policy and --ingest-policy take \(Self.policyNames.joined(separator: ", ")); got '\(name)'")
        }
        guard !policies.isEmpty, Set(policies).count == policies.count else { throw ValidationError("--policy: give distinct policies") }
        guard !vias.isEmpty, Set(vias).count == vias.count, vias.allSatisfy(Self.viaNames.contains) else {
            throw ValidationError("--via takes distinct names of \(Self.viaNames.joined(separator: ", ")); got '\(via)'")
        }
        try checkOption("chunk", chunk, Limits.chunk)
        try checkOption("attention", attention, Limits.attention)
        if let selectiveFrom { try checkOption("selective-from", selectiveFrom, Limits.attention) }
        if let p = ingestParameters.problem { throw ValidationError(p) }
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

    /// Greedy continuation length: enough for a word or a seven-digit number and some slack.
    static let maxAnswerTokens = 12

    var taskList: [NiahTask]? {
        let parts = task.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let tasks = parts.compactMap(NiahTask.init(rawValue:))
        return tasks.count == parts.count && !tasks.isEmpty ? tasks : nil
    }

    var lengthList: [Int] { lengths.split(separator: ",").compactMap(BenchPasskey.parseLength) }

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

    /// One (task, length, policy) row of the summary.
    struct Summary {
        var task: NiahTask, length: Int, policy: String
        var hits = 0, trials = 0, tokens = 0
        /// Seconds of ingest (shared by the policies) and of question + answer.
        var ingestSeconds = 0.0, askSeconds = 0.0
        var recalls = [Double](), hitRecalls = [Double](), missRecalls = [Double]()
    }

    func run() throws {
        try guarded {
            let (model, tokenizer) = try modelOptions.load(maxBatch: lh.chunk)
            let pipeline = DocumentPipeline(model: model, tokenizer: tokenizer, budgetBytes: lh.memoryBudget << 20)
            let parameters = lh.ingestParameters
            let policies = lh.answerers
            let depthList = depths.flatMap { DepthSchedule.parse($0) }
            let (L, H) = (model.config.layers, model.config.heads)
            var rows = [Summary]()
            for task in taskList! {
                for length in lengthList {
                    var group = policies.map { Summary(task: task, length: length, policy: $0) }
                    for t in 0..<trials {
                        var rng = Haystack.trialGenerator(seed: seed, task: task, length: length, trial: t)
                        // Drawn even when --depths is given, so a seed gives the same needles either way.
                        let randomDepth = Double(rng.next() % 1000) / 1000
                        let depth = DepthSchedule.depth(trial: t, depths: depthList, random: randomDepth)
                        let p = Haystack.prompt(task: task, tokens: length, depth: depth, rng: &rng, tokenizer: tokenizer)
                        let last = p.ids.count - 1
                        let needleChunks = SelectionTally.chunks(of: p.needleSpan, chunkSize: parameters.chunkSize)
                        let forced = SelectionTally.inForcedChunks(needleChunks, position: last, parameters: parameters)
                        let dir = TemporaryStores.directory + "longheads-niah-\(getpid())-\(t)"
                        defer { for d in [dir, dir + "-needle", dir + "-generate"] { try? FileManager.default.removeItem(atPath: d) } }
                        let clock = ContinuousClock()
                        func ingest(_ ids: [Int32], to path: String) throws -> Double {
                            let t0 = clock.now
                            try pipeline.ingest(ids: ids, byteEnds: [Int](repeating: 0, count: ids.count), sourceBytes: 0,
                                                to: path, modelFile: model.file, parameters: parameters, precision: lh.kvPrecision, chat: false)
                            return (clock.now - t0).seconds
                        }
                        // The haystack is ingested once; every policy then asks the question of the same store
                        // (`ask`'s path: open the store, run the question, answer).
                        let haystack = Array(p.ids[..<p.questionStart]), question = Array(p.ids[p.questionStart...])
                        /// One answer of this trial: tallied, and printed as a JSON line or a log line.
                        func record(_ k: Int, name: String, answer: String, tally: SelectionTally, last: Int, needle: ClosedRange<Int>,
                                    ingestSeconds: Double, askSeconds: Double, shared: [Int], questionTokens: Int?) throws {
                            let ok = Haystack.isCorrect(answer: answer, expected: p.expected)
                            // Below the selective length every head reads every chunk, the needle's included.
                            let recall: Double? = tally.complete ? tally.recall : last < parameters.beginSelective ? 1 : nil
                            group[k].trials += 1
                            group[k].tokens += p.ids.count
                            group[k].ingestSeconds += ingestSeconds
                            group[k].askSeconds += askSeconds
                            if ok { group[k].hits += 1 }
                            if let recall {
                                group[k].recalls.append(recall)
                                if ok { group[k].hitRecalls.append(recall) } else { group[k].missRecalls.append(recall) }
                            }
                            if json {
                                var o: [String: Any] = [
                                    "task": task.rawValue, "length": length, "tokens": p.ids.count, "read_tokens": last + 1,
                                    "trial": t, "depth": depth,
                                    "policy": name, "ingest_policy": parameters.policy.rawValue, "parameters": lh.description(name),
                                    "precision": lh.precision, "seed": seed, "expected": p.expected, "answer": answer, "correct": ok,
                                    "ingest_seconds": ingestSeconds, "ask_seconds": askSeconds,
                                    "selection_recall": recall ?? NSNull(), "selection_per_layer": tally.perLayer,
                                    "needle_in_forced_chunk": forced, "needle_span": [p.needleSpan.lowerBound, p.needleSpan.upperBound],
                                    "needle_chunks": Array(needle), "answer_chunk": last / parameters.chunkSize,
                                    "shared_chunks": shared, "question_tokens": questionTokens ?? NSNull(),
                                ]
                                if let asked = p.asked { o["key"] = asked; o["keys"] = p.keys }
                                try Output.line(try jsonLine(o))
                            } else {
                                log(String(format: "%@ %d tokens depth %.2f %@: %@ (expected %@, got \"%@\"), recall %.2f%@, ingest %.1f s, ask %.1f s",
                                           task.rawValue, p.ids.count, depth, name, ok ? "ok" : "MISS", p.expected,
                                           answer.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: "\\n"),
                                           recall ?? 0, forced ? " (forced)" : "", ingestSeconds, askSeconds))
                                log("  selection heads/\(H) per layer: \(tally.countsLine)")
                            }
                        }
                        let ingestSeconds = policies.allSatisfy { $0 == NiahLongHeadsOptions.needleChunk || NiahLongHeadsOptions.viaNames.contains($0) }
                            ? 0 : try ingest(haystack, to: dir)
                        for (k, name) in policies.enumerated() {
                            if NiahLongHeadsOptions.viaNames.contains(name) {
                                // `generate`'s path on the same prompt text: its tokens, its question, its store.
                                let ids = pipeline.promptTokens(p.text, chat: false)
                                let shift = ids.count - p.ids.count  // a BOS the model wants
                                let questionStart = name == NiahLongHeadsOptions.viaGenerate
                                    ? pipeline.questionStart(ofPrompt: p.text, chat: false, ids: ids) : nil
                                let needle = SelectionTally.chunks(of: (p.needleSpan.lowerBound + shift)..<(p.needleSpan.upperBound + shift),
                                                                   chunkSize: parameters.chunkSize)
                                let tally = SelectionTally(layers: L, heads: H, position: ids.count - 1, keyChunks: needle)
                                try? FileManager.default.removeItem(atPath: dir + "-generate")
                                let t1 = clock.now
                                let (session, logits) = try pipeline.run(prompt: ids, questionStart: questionStart, storeAt: dir + "-generate",
                                                                         modelFile: model.file, parameters: parameters, precision: lh.kvPrecision,
                                                                         chat: false) { attention in
                                    attention.selections.observe(tally.observe)
                                }
                                session.attention.selections.removeAll()
                                let t2 = clock.now
                                var answer = ""
                                _ = try pipeline.answer(session: session, first: logits, maxTokens: Self.maxAnswerTokens, sampling: .greedy) { answer += $0 }
                                try record(k, name: name, answer: answer, tally: tally, last: ids.count - 1, needle: needle, ingestSeconds: (t2 - t1).seconds,
                                           askSeconds: (clock.now - t2).seconds, shared: session.attention.sharedChunks,
                                           questionTokens: questionStart.map { ids.count - $0 })
                                continue
                            }
                            // What this policy reads: the haystack's store, or (needle-chunk) a store of the needle's
                            // chunks alone, with the needle's chunks and the answer position counted in it.
                            var reading = (store: dir, question: question, last: last, needle: needleChunks, ingestSeconds: ingestSeconds)
                            if name == NiahLongHeadsOptions.needleChunk {
                                let w = p.needleWindow(chunkSize: parameters.chunkSize)
                                reading = (dir + "-needle", w.question, w.haystack.count + w.question.count - 1,
                                           SelectionTally.chunks(of: w.needleSpan, chunkSize: parameters.chunkSize),
                                           try ingest(w.haystack, to: dir + "-needle"))
                            }
                            let tally = SelectionTally(layers: L, heads: H, position: reading.last, keyChunks: reading.needle)
                            let t1 = clock.now
                            let (session, logits) = try pipeline.open(
                                store: reading.store, modelFile: model.file, then: reading.question, policy: NiahLongHeadsOptions.selection(name),
                                question: true, diagnosisChunks: name == NiahLongHeadsOptions.oracle ? Array(needleChunks) : nil) { attention in
                                attention.selections.observe(tally.observe)
                            }
                            // Only the answer step is diagnosed; shared chunks stay for the answer tokens.
                            session.attention.selections.removeAll()
                            var answer = ""
                            _ = try pipeline.answer(session: session, first: logits, maxTokens: Self.maxAnswerTokens, sampling: .greedy) { answer += $0 }
                            try record(k, name: name, answer: answer, tally: tally, last: reading.last, needle: needleChunks,
                                       ingestSeconds: reading.ingestSeconds, askSeconds: (clock.now - t1).seconds,
                                       shared: session.attention.sharedChunks, questionTokens: reading.question.count)
                        }
                    }
                    for row in group {
                        if json { try Output.line(try jsonLine(summaryObject(row, depthList: depthList))) }
                        rows.append(row)
                    }
                }
            }
            if !json { try Output.write(summaryTable(rows)) }
        }
    }

    /// The JSON summary of one (task, length, policy).
    func summaryObject(_ r: Summary, depthList: [Double]?) -> [String: Any] {
        let p = lh.parameters(r.policy)
        return [
            "task": r.task.rawValue, "length": r.length, "correct": r.hits, "trials": r.trials,
            "accuracy": Double(r.hits) / Double(max(1, r.trials)), "mean_tokens": Double(r.tokens) / Double(max(1, r.trials)),
            "policy": r.policy, "ingest_policy": lh.ingestParameters.policy.rawValue, "parameters": lh.description(r.policy), "chunk": p.chunkSize, "attention": p.attentionLength,
            "selective_from": p.beginSelective, "precision": lh.precision, "seed": seed,
            "depths": depthList.map { $0 as Any } ?? "random",
            "mean_ingest_seconds": r.ingestSeconds / Double(max(1, r.trials)),
            "mean_ask_seconds": r.askSeconds / Double(max(1, r.trials)), "peak_rss_bytes": peakRSSBytes(),
            "mean_selection_recall": mean(r.recalls) ?? NSNull(),
            "mean_selection_recall_hits": mean(r.hitRecalls) ?? NSNull(),
            "mean_selection_recall_misses": mean(r.missRecalls) ?? NSNull(),
        ]
    }

    /// The text-mode summary: a header naming the parameters, then one row per (task, length).
    func summaryTable(_ rows: [Summary]) -> String {
        func f(_ x: Double?) -> String { x.map { String(format: "%.2f", $0) } ?? "-" }
        let header = ["task", "length", "policy", "tokens", "accuracy", "correct", "recall", "recall_hits", "recall_misses",
                      "ingest_s", "ask_s", "peak_rss_MiB"]
        let cells = rows.map { r -> [String] in
            let n = max(1, r.trials)
            return [r.task.rawValue, String(r.length), r.policy, String(r.tokens / n), String(format: "%.2f", Double(r.hits) / Double(n)),
                    "\(r.hits)/\(r.trials)", f(mean(r.recalls)), f(mean(r.hitRecalls)), f(mean(r.missRecalls)),
                    String(format: "%.1f", r.ingestSeconds / Double(n)), String(format: "%.1f", r.askSeconds / Double(n)),
                    String(peakRSSBytes() >> 20)]
        }
        // Columns as wide as their widest cell; the task left-aligned, figures right-aligned.
        let widths = header.indices.map { c in ([header] + cells).map { $0[c].count }.max()! }
        func line(_ row: [String]) -> String {
            row.indices.map { c in
                let pad = String(repeating: " ", count: widths[c] - row[c].count)
                return c == 0 || c == 2 ? row[c] + pad : pad + row[c]
            }.joined(separator: "  ") + "\n"
        }
        return "niah \(lh.ingestParameters.description.replacingOccurrences(of: "policy=", with: "ingest_policy=")) precision=\(lh.precision) seed=\(seed) depths=\(depths ?? "random")\n"
            + line(header) + cells.map(line).joined()
    }

    /// One JSON object on one line, keys sorted.
    private func jsonLine(_ o: [String: Any]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
    }
}
