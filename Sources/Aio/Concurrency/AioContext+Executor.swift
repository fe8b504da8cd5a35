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
        /// Set for jobs that came through the context's ``AioTaskExecutor``
        /// (tasks that prefer the context); nil for jobs of actors on the
        /// context and for `Task.sleep` wake-up jobs. The task keeps its
        /// preferred executor alive while it has a job queued, so an unowned
        /// reference is enough.
        let taskExecutor: UnownedTaskExecutor?
        /// A `Task.sleep` wake-up job whose timer fired (see
        /// `enqueueDelayedJob`): teardown hands these on instead of trapping.
        let isWakeUp: Bool
    }

    /// Newest first. Pushers link their node (`next`) before the releasing
    /// CAS; the drainer's acquiring exchange then sees every link.
    let head = Atomic<UnsafeMutablePointer<Node>?>(nil)

    /// The BH that runs the jobs. Set once in the context's init.
    var bh: BottomHalf!

    /// Owner-only: a drain is running jobs on this thread's stack.
    var draining = false

    /// Owner-only: how many jobs the drain has run. Tests read it (on the
    /// context's thread) to tell an inline actor switch from a hop.
    var jobsRun = 0

    /// Pushes a job; returns true if the stack was empty, i.e. the caller must
    /// schedule the BH. A non-empty stack has a BH scheduled already: the BH
    /// clears its SCHEDULED flag before its callback empties the stack, so a
    /// push that finds the stack non-empty happened before that exchange and
    /// is picked up by it.
    @inline(__always)
    func push(_ job: UnownedJob, taskExecutor: UnownedTaskExecutor?, isWakeUp: Bool = false) -> Bool {
        let node = UnsafeMutablePointer<Node>.allocate(capacity: 1)
        node.initialize(to: Node(next: nil, job: job, taskExecutor: taskExecutor, isWakeUp: isWakeUp))
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

    /// Frees the nodes of a list without running the jobs, except the
    /// `Task.sleep` wake-up jobs, which go to the global executor; returns
    /// how many other jobs there were. Teardown only.
    static func discard(_ list: UnsafeMutablePointer<Node>?) -> Int {
        var node = list
        var count = 0
        while let current = node {
            node = current.pointee.next
            if current.pointee.isWakeUp {
                AioContext.handOffWakeUp(current.pointee.job)
            } else {
                count += 1
            }
            current.deinitialize(count: 1)
            current.deallocate()
        }
        return count
    }
}

extension AioContext {
    /// Creates the BH that drains the job queue. Called once by init.
    func setUpExecutor() {
        jobs.bh = BottomHalf(context: self, name: "\(name)/executor", flags: 0,
                             registered: false,
                             callback: .withHandle(BottomHalf.HandleCallback { [unowned(unsafe) self] _ in self.runJobs() }))
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
        var node = jobs.takeAll()
        while let current = node {
            node = current.pointee.next
            let job = current.pointee.job
            let taskExecutor = current.pointee.taskExecutor
            current.deinitialize(count: 1)
            current.deallocate()
            jobs.jobsRun &+= 1
            // Isolated to the context either way; the task-executor identity
            // only for tasks that asked for it. The runtime switches inline
            // (no enqueue) when the serial executor's identity and the task
            // executor's identity both match the target's, so a job of a
            // task without a preference must run with none: then calls
            // between actors on this context stay on this thread's stack.
            if let taskExecutor {
                job.runSynchronously(isolatedTo: serial, taskExecutor: taskExecutor)
            } else {
                job.runSynchronously(on: serial)
            }
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

/// An ``AioContext`` is a Swift concurrency serial executor: jobs of actors
/// on it run on the context's thread, in its native poll or its GSource
/// dispatch. For tasks that should run their non-isolated code on the context
/// too, prefer its ``taskExecutor``.
///
/// ```swift
/// actor Disk {
///     let ctx: AioContext
///     nonisolated var unownedExecutor: UnownedSerialExecutor {
///         ctx.asUnownedSerialExecutor()
///     }
/// }
/// Task(executorPreference: ctx.taskExecutor) { ... }   // a task that prefers the context
/// ```
///
/// - Enqueueing is lock-free and may happen on any thread: one CAS onto a
///   stack, plus one BH schedule when the stack was empty. Jobs run in FIFO
///   order, a batch per BH run.
/// - Calls between actors on the same context switch inline, on the calling
///   job's stack, with no enqueue (as between default actors, or actors on
///   one SwiftNIO event loop), in tasks without an executor preference (the
///   usual case). A task that prefers the context runs its non-isolated code
///   under the task executor's identity, so its calls from there into actors
///   on the context switch inline too; but a job that comes back through an
///   actor carries no identity (the executor cannot tell which task a job
///   belongs to), so such a task's calls from one actor on the context to
///   another go through the queue, one drain pass each.
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
extension AioContext: SerialExecutor {
    /// Queues `job` to run on the context's thread. Thread-safe, lock-free.
    public func enqueue(_ job: consuming ExecutorJob) {
        enqueueJob(UnownedJob(job), taskExecutor: nil)
    }

    /// Pushes a job and schedules the drain when the queue was empty.
    @inline(__always)
    func enqueueJob(_ job: UnownedJob, taskExecutor: UnownedTaskExecutor?, isWakeUp: Bool = false) {
        // Held across the push: once the job is on the stack, the owner may
        // run it, and the task may drop the last reference to this context
        // before we schedule. The BH keeps the notify state alive (see
        // `NotifyCore`); one retain and release per enqueue.
        let bh: BottomHalf = jobs.bh
        if jobs.push(job, taskExecutor: taskExecutor, isWakeUp: isWakeUp) {
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

    /// The context as a task executor: a task created with
    /// `Task(executorPreference: ctx.taskExecutor)` (or code inside
    /// `withTaskExecutorPreference(ctx.taskExecutor)`) runs its non-isolated
    /// code on the context's thread as well as its calls to actors on the
    /// context.
    ///
    /// The same object while anything holds it (it holds the context, and the
    /// context holds it weakly), so nested preferences for one context match
    /// and switch inline.
    public var taskExecutor: AioTaskExecutor {
        taskExecutorCache.withLock { cache in
            if let existing = cache.executor { return existing }
            let created = AioTaskExecutor(context: self)
            cache.executor = created
            return created
        }
    }
}

/// A context's task executor (``AioContext/taskExecutor``): the jobs of tasks
/// that prefer the context run on the context's thread, in the same FIFO as
/// the context's actors.
///
/// A separate object from the context on purpose. The runtime runs a switch
/// between two actors inline only when the task-executor identities match
/// too; if the context were its own task executor, the jobs of every task
/// would have to run under that identity, and a task without a preference
/// calling from one actor on the context to another would be enqueued and
/// wait for the next drain instead of switching inline. With two objects, a
/// job says by the way it came in which identity it runs under.
public final class AioTaskExecutor: TaskExecutor, CustomStringConvertible {
    /// The context whose thread runs the jobs. Strong: a task that prefers
    /// the context keeps it alive until the task ends.
    public let context: AioContext

    init(context: AioContext) {
        self.context = context
    }

    /// Queues `job` on the context. Thread-safe, lock-free.
    public func enqueue(_ job: consuming ExecutorJob) {
        context.enqueueJob(UnownedJob(job), taskExecutor: asUnownedTaskExecutor())
    }

    /// A one-line description for logs and debugging.
    public var description: String { "AioTaskExecutor('\(context.name)')" }
}

/// The context's weak reference to its task executor.
struct WeakTaskExecutor {
    weak var executor: AioTaskExecutor?
}
