import Foundation

/// Decoded pages of a store, kept within a hard memory budget.
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

    private struct Slot {
        var key: Key?
        var buffer: UnsafeMutablePointer<Float>
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
    /// Bytes of one decoded page.
    public let pageBytes: Int
    private let maxSlots: Int
    private let cond = NSCondition()
    private var slots: [Slot] = []
    private var index: [Key: Int] = [:]
    private var byBuffer: [UnsafeMutablePointer<Float>: Int] = [:]
    private var free: [Int] = []
    private var hand = 0
    private var stats = Statistics(hits: 0, misses: 0, evictions: 0, residentBytes: 0, pinnedBytes: 0)

    /// A cache of pages of `reader` in at most `budgetBytes` bytes (at least one page).
    public init(reader: StoreReader, budgetBytes: Int) throws {
        self.reader = reader
        self.budgetBytes = budgetBytes
        pageBytes = reader.geometry.pageBytes
        maxSlots = budgetBytes / pageBytes
        guard maxSlots >= 1 else { throw StoreError.cacheBudgetExceeded(budgetBytes: budgetBytes, pinnedBytes: 0, neededBytes: pageBytes) }
    }

    deinit {
        for s in slots { LargeAllocation.deallocate(s.buffer, pageBytes) }
    }

    /// Pages the cache can hold.
    public var capacityPages: Int { maxSlots }

    /// Counters and memory in use.
    public var statistics: Statistics {
        cond.lock()
        defer { cond.unlock() }
        return stats
    }

    /// The decoded page (chunk, layer), `floatsPerPage` floats, pinned until `release(_:)`.
    public func page(chunk: Int, layer: Int) throws -> UnsafePointer<Float> {
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
                return UnsafePointer(slots[i].buffer)
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
            try reader.readPage(chunk: chunk, layer: layer, into: UnsafeMutableBufferPointer(start: buffer, count: reader.geometry.floatsPerPage))
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
        return UnsafePointer(buffer)
    }

    /// Unpins a page returned by `page(chunk:layer:)` (once per call); it may be evicted afterwards.
    public func release(_ page: UnsafePointer<Float>) {
        cond.lock()
        defer { cond.unlock() }
        guard let i = byBuffer[UnsafeMutablePointer(mutating: page)], slots[i].pins > 0 else {
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
            let b = LargeAllocation.allocate(pageBytes).bindMemory(to: Float.self, capacity: reader.geometry.floatsPerPage)
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
