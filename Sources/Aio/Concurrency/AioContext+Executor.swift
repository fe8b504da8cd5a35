import Synchronization

/// Swift concurrency jobs waiting to run on a context: a lock-free stack that
/// any thread pushes onto, emptied in one exchange by the context's thread,
/// which reverses it and runs the jobs in FIFO order from one BH.
/// QEMU: the `scheduled_coroutines` list and `co_schedule_bh` of `aio_co_schedule()`.
final class JobQueue: @unchecked Sendable {
    // @unchecked Sendable: `head` is atomic; `bh` is set once by the context's
    // init before the queue is shared; `draining` is owner-only.

    struct Node {
        var next: UnsafeMutablePointer<Node>?
        let job: UnownedJob
    }

    /// Newest first. Pushers link their node (`next`) before the releasing
    /// CAS; the drainer's acquiring exchange then sees every link.
    let head = Atomic<UnsafeMutablePointer<Node>?>(nil)

    /// The BH that runs the jobs. Set once in the context's init.
    var bh: BottomHalf!

    /// Owner-only: a drain is running jobs on this thread's stack.
    var draining = false

    /// Pushes a job; returns true if the stack was empty, i.e. the caller must
    /// schedule the BH. A non-empty stack has a BH scheduled already: the BH
    /// clears its SCHEDULED flag before its callback empties the stack, so a
    /// push that finds the stack non-empty happened before that exchange and
    /// is picked up by it.
    @inline(__always)
    func push(_ job: UnownedJob) -> Bool {
        let node = UnsafeMutablePointer<Node>.allocate(capacity: 1)
        node.initialize(to: Node(next: nil, job: job))
        var old = head.load(ordering: .relaxed)
        while true {
            node.pointee.next = old
            let (exchanged, current) = head.compareExchange(
                expected: old, desired: node,
                successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { return old == nil }
            old = current
        }
    }

    /// Takes every queued job, oldest first. Owner-only.
    func takeAll() -> UnsafeMutablePointer<Node>? {
        var node = head.exchange(nil, ordering: .acquiring)
        var reversed: UnsafeMutablePointer<Node>? = nil
        while let current = node {
            node = current.pointee.next
            current.pointee.next = reversed
            reversed = current
        }
        return reversed
    }

    var isEmpty: Bool { head.load(ordering: .acquiring) == nil }

    /// Frees the nodes of a list without running the jobs; returns how many
    /// there were. Teardown only.
    static func discard(_ list: UnsafeMutablePointer<Node>?) -> Int {
        var node = list
        var count = 0
        while let current = node {
            node = current.pointee.next
            current.deinitialize(count: 1)
            current.deallocate()
            count += 1
        }
        return count
    }
}

extension AioContext {
    /// Creates the BH that drains the job queue. Called once by init.
    func setUpExecutor() {
        jobs.bh = BottomHalf(context: self, name: "\(name)/executor", flags: 0,
                             registered: false,
                             callback: .withHandle { [unowned(unsafe) self] _ in self.runJobs() })
    }

    /// Runs one snapshot of the job queue, oldest first. Jobs enqueued while
    /// it runs go to the next pass, so fd handlers, timers and other BHs get
    /// their turn between batches.
    ///
    /// Jobs never run nested inside another job: a job that polls the context
    /// (``waitWhile(_:)``, a nested ``poll(blocking:)``) does not run the
    /// jobs queued meanwhile, since they may belong to the same actor and
    /// actor isolation forbids interleaving inside a synchronous stretch. They
    /// run once the outer job returns (libdispatch guards its main queue the
    /// same way).
    func runJobs() {
        if jobs.draining { return }  // the outer drain re-checks the queue
        jobs.draining = true
        defer { jobs.draining = false }
        let serial = asUnownedSerialExecutor()
        let task = asUnownedTaskExecutor()
        var node = jobs.takeAll()
        while let current = node {
            node = current.pointee.next
            let job = current.pointee.job
            current.deinitialize(count: 1)
            current.deallocate()
            job.runSynchronously(isolatedTo: serial, taskExecutor: task)
        }
        // A nested poll inside one of the jobs may have skipped the queue.
        if !jobs.isEmpty { jobs.bh.scheduleUnlessTornDown() }
    }

    /// Tears down the job queue: a job still queued means a task was left
    /// suspended forever, which the program must not do silently.
    func tearDownExecutor() {
        let leftover = JobQueue.discard(jobs.takeAll())
        // Deleted, so the BH list's teardown frees it rather than reporting it.
        jobs.bh.flags.bitwiseOr(BHFlags.deleted, ordering: .relaxed)
        if leftover > 0 {
            fatalError("AioContext '\(name)' torn down with \(leftover) Swift concurrency job(s) queued on it. A context that runs tasks or actors must outlive them (keep it alive until their work is done).")
        }
    }
}

/// An ``AioContext`` is a Swift concurrency executor: jobs run on the
/// context's thread, in its native poll or its GSource dispatch.
///
/// ```swift
/// actor Disk {
///     let ctx: AioContext
///     nonisolated var unownedExecutor: UnownedSerialExecutor {
///         ctx.asUnownedSerialExecutor()
///     }
/// }
/// Task(executorPreference: ctx) { ... }   // a task that prefers the context
/// ```
///
/// - Enqueueing is lock-free and may happen on any thread: one CAS onto a
///   stack, plus one BH schedule when the stack was empty. Jobs run in FIFO
///   order, a batch per BH run.
/// - A task that prefers the context keeps it alive until the task ends; an
///   actor keeps it alive by holding it (a strong `let`, as above). A context
///   that is torn down anyway with jobs queued (through unowned references)
///   traps naming itself, rather than leaving tasks suspended forever.
/// - Jobs never run nested inside another job: a job that polls the context
///   does not run the jobs queued meanwhile (see `runJobs`). A job that
///   blocks waiting for another job of the same context deadlocks, as with
///   any serial executor.
/// - Code isolated to the context runs on the thread that owns it, so the
///   isolation checks (`assumeIsolated`, `preconditionIsolated`) pass exactly
///   when the calling thread owns the context.
extension AioContext: SerialExecutor, TaskExecutor {
    /// Queues `job` to run on the context's thread. Thread-safe, lock-free.
    public func enqueue(_ job: consuming ExecutorJob) {
        // Held across the push: once the job is on the stack, the owner may
        // run it, and the task may drop the last reference to this context
        // before we schedule. The BH keeps the notify state alive (see
        // `NotifyCore`); one retain and release per enqueue.
        let bh: BottomHalf = jobs.bh
        if jobs.push(UnownedJob(job)) {
            bh.scheduleUnlessTornDown()
        }
        withExtendedLifetime(bh) {}
    }

    /// Two contexts are the same execution context only if they are the same
    /// object: each has its own ownership and its own thread.
    public func isSameExclusiveExecutionContext(other: AioContext) -> Bool {
        self === other
    }

    /// Traps unless the calling thread owns the context (it is inside the
    /// context's poll or GSource dispatch, or holds ``acquire()``), the only
    /// place where code isolated to the context may run.
    public func checkIsolated() {
        if !isOwnedByCurrentThread {
            fatalError("AioContext '\(name)': isolation check failed: the calling thread does not own the context (executor rule: code isolated to a context runs only on the thread that owns it, inside its poll or GSource dispatch)")
        }
    }

    /// Whether the calling thread may run code isolated to the context.
    public func isIsolatingCurrentContext() -> Bool? {
        isOwnedByCurrentThread
    }
}
