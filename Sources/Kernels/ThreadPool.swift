import CKernels

/// A fixed set of threads (the caller plus `threads - 1` workers) that runs batches of tasks with
/// about a microsecond of dispatch overhead. Workers spin briefly between batches, then sleep.
///
/// `run` is meant to be called from one thread at a time; calls from a task of the same pool
/// run inline, calls from other threads wait for the running batch.
public final class ThreadPool: @unchecked Sendable {
    /// C callback type for `run(tasks:context:_:)`: (context, task, thread index).
    public typealias TaskFunction = @convention(c) (UnsafeMutableRawPointer?, Int32, Int32) -> Void

    /// Number of threads, including the calling thread.
    public let threads: Int
    /// The underlying C pool, for kernels that take one.
    public let handle: OpaquePointer

    /// Creates a pool of `threads` threads (at least 1); the caller of `run` is one of them.
    public init(threads: Int) {
        let n = max(1, min(threads, 256))
        guard let p = lh_pool_create(Int32(n)) else { fatalError("ThreadPool: cannot start \(n) threads") }
        self.threads = n
        handle = p
    }

    deinit { lh_pool_destroy(handle) }

    /// Runs `body(task)` for every task in 0..<tasks exactly once, in parallel, and returns when
    /// all are done.
    public func run(tasks: Int, _ body: (Int) -> Void) {
        if tasks <= 0 { return }
        if tasks == 1 || threads == 1 {
            for i in 0..<tasks { body(i) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var closure = escapable
            withUnsafeMutablePointer(to: &closure) { ptr in
                lh_pool_run(handle, { ctx, task, _ in
                    ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(task))
                }, UnsafeMutableRawPointer(ptr), Int32(tasks))
            }
        }
    }

    /// Like `run(tasks:_:)`, also passing the index (0..<threads) of the executing thread, e.g.
    /// to pick per-thread scratch memory. Two tasks never run at once with the same index.
    public func runWithThread(tasks: Int, _ body: (_ task: Int, _ thread: Int) -> Void) {
        if tasks <= 0 { return }
        if tasks == 1 || threads == 1 {
            for i in 0..<tasks { body(i, 0) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var closure = escapable
            withUnsafeMutablePointer(to: &closure) { ptr in
                lh_pool_run(handle, { ctx, task, thread in
                    ctx!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(Int(task), Int(thread))
                }, UnsafeMutableRawPointer(ptr), Int32(tasks))
            }
        }
    }

    /// Lowest-overhead form: calls the C function `fn(context, task, thread)` for every task.
    public func run(tasks: Int, context: UnsafeMutableRawPointer?, _ fn: TaskFunction) {
        if tasks <= 0 { return }
        lh_pool_run(handle, fn, context, Int32(tasks))
    }
}
