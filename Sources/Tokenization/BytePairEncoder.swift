// Byte-level BPE as llama.cpp's llm_tokenizer_bpe_session: a pre-token's bytes start as one symbol each;
// the adjacent pair with the lowest merge rank (leftmost on ties) is merged until no ranked pair is left.
// Symbols are interned ids rather than strings: every vocabulary token keeps its id, and strings that only
// appear in merges get ids past the vocabulary, so a merge is one hash lookup on (left, right).

struct MergeRule: Sendable {
    let rank: Int32
    let result: Int32
}

/// (left, right) symbol pair → merge rule: open addressing with a multiplicative hash. Looked up for every
/// adjacent pair of every new word, where a SipHash-keyed Dictionary showed up in profiles.
struct MergeTable: Sendable {
    private static let empty = UInt64.max
    private var keys: [UInt64]
    private var rules: [MergeRule]
    private let shift: UInt64

    init(capacity: Int) {
        var bits = 4
        while (1 << bits) < capacity * 2 { bits += 1 }
        keys = [UInt64](repeating: Self.empty, count: 1 << bits)
        rules = [MergeRule](repeating: MergeRule(rank: 0, result: 0), count: 1 << bits)
        shift = UInt64(64 - bits)
    }

    @inline(__always)
    static func key(_ l: Int32, _ r: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: l)) << 32 | UInt64(UInt32(bitPattern: r))
    }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// Inserts unless the pair is already present (the first merge listed wins, as llama.cpp's emplace).
    mutating func insertIfAbsent(_ key: UInt64, _ rule: MergeRule) {
        let mask = keys.count - 1
        var i = slot(key)
        while keys[i] != Self.empty {
            if keys[i] == key { return }
            i = (i + 1) & mask
        }
        keys[i] = key
        rules[i] = rule
    }

    @inline(__always)
    func find(_ key: UInt64) -> MergeRule? {
        keys.withUnsafeBufferPointer { k in
            let mask = k.count - 1
            var i = slot(key)
            while true {
                let x = k[i]
                if x == key { return rules[i] }
                if x == Self.empty { return nil }
                i = (i + 1) & mask
            }
        }
    }
}

struct BytePairModel: Sendable {
    let vocabularySize: Int
    /// Symbol of each raw byte (the vocabulary id of its byte-level character when present).
    let byteSymbol: [Int32]
    /// (left, right) → rank and merged symbol.
    let merges: MergeTable
    /// Byte-level strings of symbols that are not vocabulary tokens (id - vocabularySize).
    let extraSymbols: [String]
    /// Vocabulary id of each single-character ASCII token, for llama.cpp's fallback on unknown symbols.
    let asciiToken: [Int32]

    init(tokens: [String], tokenIndex: [String: Int32], merges mergeList: [String]) {
        vocabularySize = tokens.count
        var extras = [String]()
        var extraIndex = [String: Int32]()
        func intern(_ s: String) -> Int32 {
            if let id = tokenIndex[s] { return id }
            if let id = extraIndex[s] { return id }
            let id = Int32(tokens.count + extras.count)
            extras.append(s)
            extraIndex[s] = id
            return id
        }
        var bs = [Int32](repeating: 0, count: 256)
        for b in 0..<256 { bs[b] = intern(ByteLevel.string(forByte: UInt8(b))) }
        byteSymbol = bs
        var table = MergeTable(capacity: mergeList.count)
        for (rank, m) in mergeList.enumerated() {
            // Split at the first space after the first character, as llama.cpp (a token may start with
            // a space byte only in non-byte-level vocabularies, but the rule is the same).
            let u = Array(m.utf8)
            guard u.count >= 3, let sp = u[1...].firstIndex(of: 0x20) else { continue }
            let left = String(decoding: u[..<sp], as: UTF8.self)
            let right = String(decoding: u[(sp + 1)...], as: UTF8.self)
            let l = intern(left), r = intern(right)
            table.insertIfAbsent(MergeTable.key(l, r), MergeRule(rank: Int32(rank), result: intern(left + right)))
        }
        merges = table
        extraSymbols = extras
        var ascii = [Int32](repeating: -1, count: 128)
        for b in 0..<128 { if let id = tokenIndex[String(UnicodeScalar(UInt8(b)))] { ascii[b] = id } }
        asciiToken = ascii
    }

    @inline(__always)
    func rule(_ l: Int32, _ r: Int32) -> MergeRule? {
        merges.find(MergeTable.key(l, r))
    }

    /// Appends the ids of a symbol; a symbol outside the vocabulary falls back, as llama.cpp, to the
    /// single-byte tokens of its byte-level string (only ASCII bytes can be such tokens).
    func emit(_ sym: Int32, into out: inout [Int32]) {
        if Int(sym) < vocabularySize { out.append(sym); return }
        for b in extraSymbols[Int(sym) - vocabularySize].utf8 where b < 128 {
            let id = asciiToken[Int(b)]
            if id >= 0 { out.append(id) }
        }
    }
}

/// Scratch buffers for merging one pre-token, reused across pre-tokens of one encode call.
struct BPEWorkspace {
    struct Pair {
        var key: UInt64    // rank << 32 | left index: lowest rank first, then leftmost
        var right: Int32
        var leftSym: Int32
        var rightSym: Int32
        var result: Int32
    }
    var sym: [Int32] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var alive: [Bool] = []
    var heap: [Pair] = []

    mutating func push(_ p: Pair) {
        heap.append(p)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) >> 1
            if heap[parent].key <= heap[i].key { break }
            heap.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> Pair? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            let n = heap.count
            while true {
                let l = 2 * i + 1
                if l >= n { break }
                var c = l
                if l + 1 < n && heap[l + 1].key < heap[l].key { c = l + 1 }
                if heap[i].key <= heap[c].key { break }
                heap.swapAt(i, c)
                i = c
            }
        }
        return top
    }

    @inline(__always)
    mutating func addPair(_ model: BytePairModel, _ l: Int, _ r: Int) {
        guard l >= 0, r >= 0, let rule = model.rule(sym[l], sym[r]) else { return }
        push(Pair(key: UInt64(UInt32(rule.rank)) << 32 | UInt64(UInt32(l)), right: Int32(r),
                  leftSym: sym[l], rightSym: sym[r], result: rule.result))
    }

    /// Merges the raw bytes of one pre-token and appends the resulting ids.
    mutating func encode(_ bytes: UnsafeBufferPointer<UInt8>, model: BytePairModel, into out: inout [Int32]) {
        let n = bytes.count
        if n == 1 { model.emit(model.byteSymbol[Int(bytes[0])], into: &out); return }
        sym.removeAll(keepingCapacity: true)
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        alive.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
        for i in 0..<n {
            sym.append(model.byteSymbol[Int(bytes[i])])
            prev.append(Int32(i - 1))
            next.append(i + 1 < n ? Int32(i + 1) : -1)
            alive.append(true)
        }
        for i in 1..<n { addPair(model, i - 1, i) }
        while let p = pop() {
            let l = Int(UInt32(truncatingIfNeeded: p.key))
            let r = Int(p.right)
            // Stale if either side was merged away or changed since the pair was queued.
            guard alive[l], alive[r], sym[l] == p.leftSym, sym[r] == p.rightSym else { continue }
            sym[l] = p.result
            alive[r] = false
            let rn = Int(next[r])
            next[l] = Int32(rn)
            if rn >= 0 { prev[rn] = Int32(l) }
            addPair(model, Int(prev[l]), l)
            addPair(model, l, rn)
        }
        var i = 0
        while i >= 0 {
            model.emit(sym[i], into: &out)
            i = Int(next[i])
        }
    }
}
