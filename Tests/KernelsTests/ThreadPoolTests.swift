import CKernels
import Kernels
import Synchronization
import Testing

@Suite("ThreadPool")
struct ThreadPoolTests {
    @Test(arguments: [1, 2, 3])
    func everyTaskRunsExactlyOnce(threads: Int) {
        let pool = ThreadPool(threads: threads)
        #expect(pool.threads == threads)
        let maxTasks = 97
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: maxTasks)
        defer { counts.deallocate() }
        for rep in 0..<3000 {
            let tasks = 1 + rep % maxTasks
            counts.initialize(repeating: 0, count: maxTasks)
            // Each task writes only its own slot, so plain increments are race-free.
            pool.run(tasks: tasks) { counts[$0] += 1 }
            var ok = true
            for i in 0..<maxTasks where counts[i] != (i < tasks ? 1 : 0) { ok = false }
            #expect(ok, "rep \(rep)")
            if !ok { break }
        }
    }

    @Test func threadIndicesAreInRangeAndExclusive() {
        let pool = ThreadPool(threads: 2)
        let busy = Atomic<Int>(0)
        let bad = Atomic<Int>(0)
        for _ in 0..<500 {
            pool.runWithThread(tasks: 16) { _, thread in
                if thread < 0 || thread >= 2 { bad.add(1, ordering: .relaxed) }
                // No other task may hold the same thread index at the same time.
                let bit = 1 << thread
                if busy.bitwiseXor(bit, ordering: .acquiringAndReleasing).oldValue & bit != 0 { bad.add(1, ordering: .relaxed) }
                busy.bitwiseXor(bit, ordering: .acquiringAndReleasing)
            }
        }
        #expect(bad.load(ordering: .relaxed) == 0)
    }

    @Test func nestedRunsExecuteInline() {
        let pool = ThreadPool(threads: 2)
        let total = Atomic<Int>(0)
        pool.run(tasks: 4) { _ in
            pool.run(tasks: 5) { j in total.add(j, ordering: .relaxed) }
        }
        #expect(total.load(ordering: .relaxed) == 4 * 10)
    }

    @Test func cCallbackForm() {
        let pool = ThreadPool(threads: 2)
        let sums = UnsafeMutablePointer<Int>.allocate(capacity: 64)
        sums.initialize(repeating: 0, count: 64)
        defer { sums.deallocate() }
        pool.run(tasks: 64, context: UnsafeMutableRawPointer(sums)) { ctx, task, _ in
            ctx!.assumingMemoryBound(to: Int.self)[Int(task)] = Int(task) * 2
        }
        #expect((0..<64).allSatisfy { sums[$0] == $0 * 2 })
    }

    @Test func idleWorkersWakeUp() async throws {
        // Let the workers fall asleep (spin phase is well under this), then use the pool again.
        let pool = ThreadPool(threads: 2)
        let total = Atomic<Int>(0)
        pool.run(tasks: 8) { _ in total.add(1, ordering: .relaxed) }
        try await Task.sleep(for: .milliseconds(30))
        pool.run(tasks: 8) { _ in total.add(1, ordering: .relaxed) }
        #expect(total.load(ordering: .relaxed) == 16)
    }
}
