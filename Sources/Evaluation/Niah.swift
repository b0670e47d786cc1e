import Foundation
import Generation
import KVStore
import LongHeads
import Model
import Pipeline
import Tokenization

/// The haystack tasks of `bench niah`.
public enum NiahTask: String, CaseIterable, Sendable {
    /// Varied template prose with one needle sentence ("The secret ingredient of the festival soup is WORD.").
    case prose
    /// RULER's multi-key needle: four "special magic number" needles with distinct keys; one is asked for.
    case multikey
    /// `bench passkey`'s prompt (repeated filler, a five-digit key).
    case passkey
}

/// A generated needle-in-a-haystack prompt and where its needles sit.
public struct NiahPrompt {
    /// The prompt text (raw completion: it ends with the start of the answer sentence).
    public var text: String
    /// Its tokens (no BOS, as `bench passkey`).
    public var ids: [Int32]
    /// What the continuation must contain to count as correct (case-insensitive).
    public var expected: String
    /// Token span of the asked needle (a boundary token shared with the prose counts as needle).
    public var needleSpan: Range<Int>
    /// Token spans of every needle, in text order (multikey: four, one of them `needleSpan`).
    public var allNeedleSpans: [Range<Int>]
    /// Index in `ids` of the question's first token (its leading newline): the haystack ends before it.
    public var questionStart: Int
    /// The asked needle's depth: share of the haystack's tokens before it.
    public var depth: Double
    /// Multikey: the four keys in text order; otherwise empty.
    public var keys: [String] = []
    /// Multikey: the asked key; otherwise nil.
    public var asked: String?

    /// The prompt cut down to the chunks holding the asked needle, then the question: what
    /// `bench niah --policy needle-chunk` reads. Its needle span is relative to the cut.
    public func needleWindow(chunkSize: Int) -> (haystack: [Int32], question: [Int32], needleSpan: Range<Int>) {
        let chunks = SelectionTally.chunks(of: needleSpan, chunkSize: chunkSize)
        let lo = chunks.lowerBound * chunkSize, hi = min((chunks.upperBound + 1) * chunkSize, questionStart)
        return (Array(ids[lo..<hi]), Array(ids[questionStart...]), (needleSpan.lowerBound - lo)..<(needleSpan.upperBound - lo))
    }
}

/// Deterministic haystack generation for `bench niah`: varied sentences from templates (names, nouns,
/// places, verbs, numbers), so that a needle cannot be found by spotting the one sentence that differs
/// from a repeated filler, and the answer words never occur in the prose.
public enum Haystack {
    /// Needle words (prose answers, multikey keys): concrete nouns that the filler never uses.
    public static let needleWords = [
        "anchor", "apricot", "avocado", "banjo", "beetroot", "biscuit", "cactus", "canoe", "carrot", "cherry",
        "chestnut", "coconut", "compass", "crayon", "cucumber", "dolphin", "feather", "giraffe", "glacier", "harmonica",
        "hazelnut", "kangaroo", "lantern", "lemon", "lobster", "magnet", "mango", "marble", "meteor", "mushroom",
        "nutmeg", "octopus", "onion", "oyster", "parsley", "peacock", "pebble", "pelican", "penguin", "pineapple",
        "pretzel", "pumpkin", "raisin", "saffron", "sardine", "seashell", "telescope", "tomato", "trumpet", "tulip",
        "turnip", "walnut", "zucchini",
    ]
    /// Filler names.
    public static let names = ["Mara", "Tobias", "Ines", "Rafael", "Greta", "Yusuf", "Lena", "Oskar", "Priya", "Daniel",
                        "Hana", "Felix", "Amara", "Jonas", "Sofia", "Milo", "Nadia", "Theo", "Elif", "Bruno"]
    /// Filler nouns; all pluralize with "s".
    public static let nouns = ["chair", "basket", "ladder", "bucket", "blanket", "bottle", "hammer", "window", "pencil", "candle",
                        "wagon", "barrel", "kettle", "mirror", "bicycle", "umbrella", "notebook", "cart", "drum", "bell",
                        "shovel", "clock", "jar", "map", "boot", "coin", "fence", "flag", "gate", "glove",
                        "helmet", "lamp", "net", "pillow", "plate", "ribbon", "saddle", "sack", "spoon", "stool",
                        "tent", "towel", "tray", "trunk", "violin", "whistle"]
    /// Filler places.
    public static let places = ["harbor", "bakery", "library", "market", "train station", "old mill", "school", "post office",
                         "orchard", "workshop", "museum", "town hall", "ferry dock", "greenhouse", "barn", "stadium",
                         "hospital", "lighthouse", "bridge", "village square", "warehouse", "garden", "hotel", "chapel", "quarry"]
    /// Filler verbs, past tense.
    public static let verbs = ["repaired", "painted", "moved", "cleaned", "measured", "polished", "inspected", "borrowed", "returned",
                        "wrapped", "carried", "sold", "weighed", "hid", "found", "sorted", "labeled", "stacked",
                        "photographed", "sketched"]
    /// Filler adjectives.
    public static let adjectives = ["old", "heavy", "narrow", "bright", "wooden", "rusty", "tall", "quiet", "crooked", "dusty",
                             "small", "enormous", "faded", "shiny", "broken", "round", "sturdy", "pale", "wide", "clumsy"]
    /// Filler colours.
    public static let colors = ["red", "blue", "green", "yellow", "grey", "white", "orange", "purple", "brown", "black"]
    /// Filler materials (smells).
    public static let materials = ["smoke", "fresh paint", "bread", "wet wool", "pine", "soap", "tar", "coffee", "sawdust", "salt"]
    /// Filler times of day.
    public static let times = ["noon", "dawn", "midnight", "sunset", "lunch", "breakfast", "the evening bell", "the first train"]
    /// Filler weekdays.
    public static let weekdays = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

    /// Sentence templates; `{x}` slots are filled by `sentence(_:)`.
    public static let templates = [
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
    public static func pick<T>(_ xs: [T], _ rng: inout SeededGenerator) -> T { xs[Int(rng.next() % UInt64(xs.count))] }

    /// One random sentence.
    public static func sentence(_ rng: inout SeededGenerator) -> String {
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
    public static func withArticles(_ s: String) -> String {
        var words = s.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        for i in words.indices.dropLast() where words[i] == "a" || words[i] == "A" {
            if let f = words[i + 1].first, "aeiou".contains(f) { words[i] += "n" }
        }
        return words.joined(separator: " ")
    }

    /// The prose needle and its question, for answer `word`.
    public static func proseNeedle(_ word: String) -> String { "The secret ingredient of the festival soup is \(word)." }
    /// The prose question, in raw completion form.
    public static let proseQuestion = "What is the secret ingredient of the festival soup? The secret ingredient of the festival soup is"
    /// A multikey needle and its question.
    public static func multikeyNeedle(key: String, number: Int) -> String { "One of the special magic numbers for \(key) is: \(number)." }
    /// The multikey question for `key`, in raw completion form.
    public static func multikeyQuestion(key: String) -> String { "What is the special magic number for \(key)? The special magic number for \(key) is" }

    /// Varied prose ending in `"\n" + question`, about `tokens` tokens long (it stops at the last sentence
    /// that fits), with `needles` inserted between sentences at their depths (share of the prose's tokens
    /// before each). Returns the prompt and each needle's token span, in the order of `needles`.
    public static func compose(tokens target: Int, needles: [(text: String, depth: Double)], question: String,
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
    public static func prompt(task: NiahTask, tokens: Int, depth: Double, rng: inout SeededGenerator, tokenizer: Tokenizer) -> NiahPrompt {
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
            let p = Passkey.prompt(tokens: tokens, depth: depth, key: key, tokenizer: tokenizer)
            return NiahPrompt(text: p.text, ids: p.ids, expected: String(key), needleSpan: p.keySpan, allNeedleSpans: [p.keySpan],
                              questionStart: p.questionStart, depth: depth)
        }
    }

    /// Whether `answer` holds `expected` (case-insensitive).
    public static func isCorrect(answer: String, expected: String) -> Bool { answer.lowercased().contains(expected.lowercased()) }

    /// The generator of one trial: fixed by (seed, task, length, trial) alone, so that every policy and
    /// every `--lengths` list sees the same haystacks.
    public static func trialGenerator(seed: UInt64, task: NiahTask, length: Int, trial: Int) -> SeededGenerator {
        let t = UInt64(NiahTask.allCases.firstIndex(of: task)!)
        var g = SeededGenerator(seed: seed ^ (t &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(length) &* 0xC2B2_AE3D_27D4_EB4F)
                                    ^ (UInt64(trial) &* 0x1656_67B1_9E37_79F9))
        _ = g.next()
        return g
    }
}

