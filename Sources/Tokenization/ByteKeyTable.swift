// An open-addressing hash map from byte strings to Int32, with keys stored in one arena.
// Used for the token-text lookup (any byte span, no String allocation) and for the per-call cache of
// pre-token → ids, where Swift's Dictionary would need a fresh [UInt8] or String key for every lookup.

struct ByteKeyTable: Sendable {
    private var slots: [Int32]          // entry index + 1; 0 = empty
    private var hashes: [UInt64] = []
    private var keyStart: [Int32] = []
    private var keyLength: [Int32] = []
    private var values: [Int32] = []
    private var arena: [UInt8] = []

    var count: Int { values.count }
    var arenaBytes: Int { arena.count }

    init(capacity: Int = 16) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = [Int32](repeating: 0, count: n)
    }

    /// FNV-1a with a final avalanche; keys are short (a pre-token or a token), so simplicity wins.
    @inline(__always)
    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        h ^= h >> 29
        h = h &* 0xbf58_476d_1ce4_e5b9
        h ^= h >> 32
        return h
    }

    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        find(key, hash: Self.hash(key))
    }

    @inline(__always)
    func find(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64) -> Int32? {
        slots.withUnsafeBufferPointer { sl in
            hashes.withUnsafeBufferPointer { hs in
                arena.withUnsafeBufferPointer { ar in
                    let mask = sl.count - 1
                    var i = Int(truncatingIfNeeded: hash) & mask
                    while true {
                        let e = Int(sl[i])
                        if e == 0 { return nil }
                        if hs[e - 1] == hash && Int(keyLength[e - 1]) == key.count {
                            let st = Int(keyStart[e - 1])
                            var same = true
                            var j = 0
                            while j < key.count {
                                if ar[st + j] != key[j] { same = false; break }
                                j += 1
                            }
                            if same { return values[e - 1] }
                        }
                        i = (i + 1) & mask
                    }
                }
            }
        }
    }

    /// Inserts `key` (which must be absent) with `value`.
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64, value: Int32) {
        if (values.count + 1) * 2 > slots.count { grow() }
        let e = Int32(values.count + 1)
        hashes.append(hash)
        keyStart.append(Int32(arena.count))
        keyLength.append(Int32(key.count))
        values.append(value)
        arena.append(contentsOf: key)
        place(e, hash: hash)
    }

    mutating func insert(_ key: [UInt8], value: Int32) {
        key.withUnsafeBufferPointer { insert($0, hash: Self.hash($0), value: value) }
    }

    func find(_ key: [UInt8]) -> Int32? {
        key.withUnsafeBufferPointer { find($0) }
    }

    private mutating func place(_ e: Int32, hash: UInt64) {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while slots[i] != 0 { i = (i + 1) & mask }
        slots[i] = e
    }

    private mutating func grow() {
        slots = [Int32](repeating: 0, count: slots.count * 2)
        for k in 0..<hashes.count { place(Int32(k + 1), hash: hashes[k]) }
    }
}
