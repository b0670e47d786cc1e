// SentencePiece BPE as llama.cpp's llm_tokenizer_spm_session: the (space-escaped) text starts as one symbol
// per UTF-8 character; the adjacent pair whose concatenation is a vocabulary token with the highest score
// (leftmost on ties) is merged until none is left. Symbols that are not tokens become <0xNN> byte tokens.

struct SentencePieceModel: Sendable {
    /// Every token's UTF-8 text → id.
    let lookup: ByteKeyTable
    let scores: [Float]
    /// Token for each byte: "<0xNN>", else the single-character token, else unk (-1 if none).
    let byteToken: [Int32]
}

struct SPMWorkspace {
    struct Pair {
        var score: Float
        var left: Int32
        var right: Int32
        var size: Int32
        /// Max-heap order: higher score first, then lower left index.
        @inline(__always) func before(_ o: Pair) -> Bool {
            score > o.score || (score == o.score && left < o.left)
        }
    }
    var start: [Int32] = []
    var length: [Int32] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var heap: [Pair] = []

    mutating func push(_ p: Pair) {
        heap.append(p)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) >> 1
            if !heap[i].before(heap[parent]) { break }
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
                if l + 1 < n && heap[l + 1].before(heap[l]) { c = l + 1 }
                if !heap[c].before(heap[i]) { break }
                heap.swapAt(i, c)
                i = c
            }
        }
        return top
    }

    mutating func encode(_ text: UnsafeBufferPointer<UInt8>, model: SentencePieceModel, into out: inout [Int32]) {
        start.removeAll(keepingCapacity: true)
        length.removeAll(keepingCapacity: true)
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
        var off = 0
        var index: Int32 = 0
        while off < text.count {
            let lead = text[off]
            let len = min(lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4, text.count - off)
            start.append(Int32(off))
            length.append(Int32(len))
            off += len
            prev.append(index - 1)
            next.append(off == text.count ? -1 : index + 1)
            index += 1
        }
        if start.isEmpty { return }

        func tryPair(_ l: Int, _ r: Int) {
            guard l >= 0, r >= 0 else { return }
            let s = Int(start[l])
            let n = Int(length[l] + length[r])
            guard let id = model.lookup.find(UnsafeBufferPointer(rebasing: text[s..<(s + n)])) else { return }
            push(Pair(score: model.scores[Int(id)], left: Int32(l), right: Int32(r), size: Int32(n)))
        }
        for i in 1..<start.count { tryPair(i - 1, i) }
        while let p = pop() {
            let l = Int(p.left), r = Int(p.right)
            guard length[l] > 0, length[r] > 0, length[l] + length[r] == p.size else { continue }
            length[l] += length[r]
            length[r] = 0
            let rn = Int(next[r])
            next[l] = Int32(rn)
            if rn >= 0 { prev[rn] = Int32(l) }
            tryPair(Int(prev[l]), l)
            tryPair(l, rn)
        }
        var i = 0
        while i >= 0 {
            let s = Int(start[i])
            let span = UnsafeBufferPointer(rebasing: text[s..<(s + Int(length[i]))])
            if let id = model.lookup.find(span) {
                out.append(id)
            } else {
                for b in span {
                    let id = model.byteToken[Int(b)]
                    if id >= 0 { out.append(id) }
                }
            }
            i = Int(next[i])
        }
    }
}
