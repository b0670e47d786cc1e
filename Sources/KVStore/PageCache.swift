import Foundation

/// Pages of a store, kept within a hard memory budget: decoded to floats (`Form.floats`), or as stored
/// after LZ4 (`Form.encoded`: the q8/q4 KIVI planes, which the attention dequantizes as it reads them,
/// `lh_attn_update_kivi`; a q4 page takes 0.14 of its floats' bytes, so the same budget holds about 7×
/// the pages).
///
/// The budget is split into page buffers (`budgetBytes / pageBytes` of them, allocated on first use and
/// reused, never more); bookkeeping (a few dozen bytes per buffer) is not counted. Replacement is CLOCK
/// (an approximation of LRU with one reference bit per buffer).
///
/// `page(chunk:layer:)` pins the page: it is never evicted or reused until `release` is called for it,
/// once per `page` call. If every buffer is pinned, `page` throws `cacheBudgetExceeded` instead of
/// exceeding the budget. Pointers are valid until released and while the cache lives. Thread-safe: concurrent callers decode different pages in parallel, and
/// callers asking for a page that is being decoded wait for it instead of decoding it twice.
public final class PageCache: @unchecked Sendable {
    /// Counters since creation.
    public struct Statistics: Sendable, Equatable {
        /// Requests served from memory.
        public var hits: Int
        /// Requests that decoded the page from the store.
        public var misses: Int
        /// Pages dropped to make room.
        public var evictions: Int
        /// Bytes of page buffers allocated (≤ budget).
        public var residentBytes: Int
        /// Bytes of pinned pages.
        public var pinnedBytes: Int
    }

    private struct Key: Hashable {
        var chunk: Int
        var layer: Int
    }

    /// What a cached page holds.
    public enum Form: Sendable, Equatable {
        /// `floatsPerPage` decoded floats (`StoreReader.readPage`).
        case floats
        /// The page's encoding after LZ4, `StoreGeometry.encodedPageBytes` bytes (`StoreReader.readEncodedPage`).
        case encoded
    }

    private struct Slot {
        var key: Key?
        var buffer: UnsafeMutableRawPointer
        var pins = 0
        var loading = false
        var referenced = false
        /// Invalidated while pinned: freed when the last pin goes.
        var stale = false
    }

    /// The store pages come from.
    public let reader: StoreReader
    /// Most bytes of page buffers this cache owns.
    public let budgetBytes: Int
    /// What the pages hold.
    public let form: Form
    /// Bytes of one cached page: decoded floats, or the encoding.
    public let pageBytes: Int
    private let maxSlots: Int
    private let cond = NSCondition()
    private var slots: [Slot] = []
    private var index: [Key: Int] = [:]
    private var byBuffer: [UnsafeMutableRawPointer: Int] = [:]
    private var free: [Int] = []
    private var hand = 0
    private var stats = Statistics(hits: 0, misses: 0, evictions: 0, residentBytes: 0, pinnedBytes: 0)

    /// A cache of pages of `reader` in at most `budgetBytes` bytes (at least one page), decoded to floats
    /// or kept encoded (`form`).
    public init(reader: StoreReader, budgetBytes: Int, form: Form = .floats) throws {
        self.reader = reader
        self.budgetBytes = budgetBytes
        self.form = form
        pageBytes = try Self.pageBytes(reader.geometry, form: form)
        maxSlots = budgetBytes / pageBytes
        guard maxSlots >= 1 else { throw StoreError.cacheBudgetExceeded(budgetBytes: budgetBytes, pinnedBytes: 0, neededBytes: pageBytes) }
    }

    deinit {
        for s in slots { LargeAllocation.deallocate(s.buffer, pageBytes) }
    }

    /// Bytes of one page of `geometry` held in `form`.
    public static func pageBytes(_ geometry: StoreGeometry, form: Form) throws -> Int {
        switch form {
        case .floats: return geometry.pageBytes
        case .encoded:
            guard let bytes = geometry.encodedPageBytes else { throw StoreError.invalidArgument("no \(geometry.precision) encoding of pages of \(geometry)") }
            return bytes
        }
    }

    /// Pages the cache can hold.
    public var capacityPages: Int { maxSlots }

    /// Counters and memory in use.
    public var statistics: Statistics {
        cond.lock()
        defer { cond.unlock() }
        return stats
    }

    /// The decoded page (chunk, layer), `floatsPerPage` floats, pinned until `release(_:)`. A cache of
    /// `.floats` form only.
    public func page(chunk: Int, layer: Int) throws -> UnsafePointer<Float> {
        precondition(form == .floats, "PageCache.page on a cache of encoded pages")
        return try bytes(chunk: chunk, layer: layer).assumingMemoryBound(to: Float.self)
    }

    /// The encoded page (chunk, layer), `pageBytes` bytes, pinned until `release(encoded:)`. A cache
    /// of `.encoded` form only.
    public func encodedPage(chunk: Int, layer: Int) throws -> UnsafeRawPointer {
        precondition(form == .encoded, "PageCache.encodedPage on a cache of decoded pages")
        return try bytes(chunk: chunk, layer: layer)
    }

    /// Page (chunk, layer) in the cache's form, pinned.
    private func bytes(chunk: Int, layer: Int) throws -> UnsafeRawPointer {
        let key = Key(chunk: chunk, layer: layer)
        cond.lock()
        var slot: Int
        while true {
            if let i = index[key] {
                if slots[i].loading {
                    cond.wait()  // another thread decodes it; look again (it may have failed)
                    continue
                }
                pin(i)
                slots[i].referenced = true
                stats.hits += 1
                cond.unlock()
                return UnsafeRawPointer(slots[i].buffer)
            }
            do { slot = try takeSlot() } catch {
                cond.unlock()
                throw error
            }
            break
        }
        slots[slot].key = key
        slots[slot].loading = true
        slots[slot].referenced = true
        pin(slot)
        index[key] = slot
        stats.misses += 1
        let buffer = slots[slot].buffer
        cond.unlock()

        do {
            switch form {
            case .floats:
                try reader.readPage(chunk: chunk, layer: layer, into: UnsafeMutableBufferPointer(start: buffer.assumingMemoryBound(to: Float.self),
                                                                                               count: reader.geometry.floatsPerPage))
            case .encoded:
                try reader.readEncodedPage(chunk: chunk, layer: layer, into: UnsafeMutableRawBufferPointer(start: buffer, count: pageBytes))
            }
        } catch {
            cond.lock()
            if index[key] == slot { index[key] = nil }
            slots[slot].loading = false
            slots[slot].stale = false
            slots[slot].pins = 0
            stats.pinnedBytes -= pageBytes
            slots[slot].key = nil
            free.append(slot)
            cond.broadcast()
            cond.unlock()
            throw error
        }
        cond.lock()
        slots[slot].loading = false
        cond.broadcast()
        cond.unlock()
        return UnsafeRawPointer(buffer)
    }

    /// Unpins a page returned by `page(chunk:layer:)` (once per call); it may be evicted afterwards.
    public func release(_ page: UnsafePointer<Float>) { release(encoded: UnsafeRawPointer(page)) }

    /// Unpins a page returned by `encodedPage(chunk:layer:)` (once per call).
    public func release(encoded page: UnsafeRawPointer) {
        cond.lock()
        defer { cond.unlock() }
        guard let i = byBuffer[UnsafeMutableRawPointer(mutating: page)], slots[i].pins > 0 else {
            preconditionFailure("PageCache.release of a page that is not pinned")
        }
        slots[i].pins -= 1
        if slots[i].pins == 0 {
            stats.pinnedBytes -= pageBytes
            if slots[i].stale {
                slots[i].stale = false
                slots[i].key = nil
                free.append(i)
            }
        }
    }

    /// Runs `body` with the page pinned.
    public func withPage<R>(chunk: Int, layer: Int, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        let p = try page(chunk: chunk, layer: layer)
        defer { release(p) }
        return try body(UnsafeBufferPointer(start: p, count: reader.geometry.floatsPerPage))
    }

    /// Runs `body` with the encoded page pinned (`pageBytes` bytes).
    public func withEncodedPage<R>(chunk: Int, layer: Int, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let p = try encodedPage(chunk: chunk, layer: layer)
        defer { release(encoded: p) }
        return try body(UnsafeRawBufferPointer(start: p, count: pageBytes))
    }

    /// Forgets pages of chunks `chunk...` (after `StoreWriter.truncate`). Pinned ones stay valid for
    /// their holders and are dropped on release; later requests decode the new pages.
    public func invalidate(fromChunk chunk: Int) {
        cond.lock()
        defer { cond.unlock() }
        for i in slots.indices {
            guard let k = slots[i].key, k.chunk >= chunk, !slots[i].stale else { continue }
            if index[k] == i { index[k] = nil }
            if slots[i].pins > 0 {
                slots[i].stale = true
            } else {
                slots[i].key = nil
                free.append(i)
            }
        }
    }

    private func pin(_ i: Int) {
        if slots[i].pins == 0 { stats.pinnedBytes += pageBytes }
        slots[i].pins += 1
    }

    /// A slot for a new page: a free one, a new one within the budget, or a CLOCK victim. Lock held.
    private func takeSlot() throws -> Int {
        if let i = free.popLast() { return i }
        if slots.count < maxSlots {
            // Straight from the kernel, so that the memory goes back exactly when the cache goes.
            let b = LargeAllocation.allocate(pageBytes)
            slots.append(Slot(key: nil, buffer: b))
            byBuffer[b] = slots.count - 1
            stats.residentBytes += pageBytes
            return slots.count - 1
        }
        // Two sweeps: the first may only clear reference bits.
        for _ in 0..<(2 * slots.count) {
            let i = hand
            hand = (hand + 1) % slots.count
            if slots[i].pins > 0 || slots[i].loading { continue }
            if slots[i].referenced {
                slots[i].referenced = false
                continue
            }
            if let k = slots[i].key, index[k] == i { index[k] = nil }
            slots[i].key = nil
            stats.evictions += 1
            return i
        }
        throw StoreError.cacheBudgetExceeded(budgetBytes: budgetBytes, pinnedBytes: stats.pinnedBytes, neededBytes: pageBytes)
    }
}
