import CGLibShim
import Glibc
import Logging
import Synchronization

/// An event loop that runs bottom halves (and, as it grows, fd handlers and
/// timers) on one thread at a time, and that is also a GLib event source.
///
/// Drive it natively with ``poll(blocking:)``, or attach it to a
/// `GMainContext` with ``attach(to:priority:)`` and let GLib iterate it; both
/// may happen at once from different threads, which is what the wake-up
/// protocol (``notify()``) is built for.
///
/// ## Threads
/// - The **home thread** is the thread that created the context (or called
///   ``setHomeThread()``). It may block in `poll(blocking: true)`.
/// - **Ownership** (``acquire()``/``release()``) is a recursive lock held
///   while the loop prepares, checks, dispatches and polls, and released
///   around the actual wait. A thread that holds it may also block in poll.
///   GLib's callbacks only try to take it: if another thread owns the
///   context they report "not ready" and that thread dispatches (lock order:
///   ownership, then GMainContext; see the README's threading contract).
/// - Any thread may schedule BHs, call ``notify()``, and run
///   `poll(blocking: false)` (which takes ownership for its duration).
///
/// ## Lifetime
/// The context lives while you hold it and, when attached, while GLib holds
/// its source: ``detach()`` lets go of GLib's reference. At teardown every BH
/// made with ``makeBottomHalf(name:_:)`` must have been deleted and no one-shot
/// may still be pending; otherwise the program stops naming them.
///
/// QEMU: `AioContext` (`util/async.c`, `util/aio-posix.c`).
public final class AioContext: @unchecked Sendable, CustomStringConvertible {
    // @unchecked Sendable: every stored property is immutable after init, atomic,
    // protected by a named lock, or owner-only (touched only while holding
    // `ownership`); each says which below.

    /// The name given at creation; it appears in traps, leak reports and the
    /// GSource name.
    public let name: String

    /// Keeps the fields schedulers read (`core`, `oneshots`, `bhList`) off
    /// the line of the object's header, whose reference count retains write.
    let padBeforeSchedulersFields = CacheLinePadding()

    /// The wake-up state and the BH list, kept in an object of their own so
    /// that a thread still inside `BottomHalf.schedule()` (which retains the
    /// core through its BH) can finish its notify even if the owner ran the
    /// BH, deleted it and dropped the context meanwhile. See `NotifyCore`.
    let core: NotifyCore
    /// One-shot BHs that ran, for `scheduleOneshot` to use again.
    let oneshots = OneshotPool()
    /// Pending BHs; see `NotifyCore`.
    let bhList: BHList
    // `core`, `oneshots` and `bhList` are what a scheduling thread reads
    // here; the owner writes fields below once per pass (`dispatchDepth`,
    // the epochs). Padding keeps those writes off the schedulers' line.
    let padAfterSchedulersFields = CacheLinePadding()

    /// Owner-only: the notify generation each polling thread last saw.
    let notifyMemory = NotifyMemory()

    /// Counts handler dispatches (owner-only writes, load + store; read by
    /// any poll before it looks at the fds). See `ReadyList.epoch`.
    let handlerEpoch = Atomic<UInt64>(0)

    /// `handlerEpoch` when GLib's last prepare ran, i.e. before GLib's poll
    /// looked at the fds. Written by the thread iterating the attached
    /// GMainContext, possibly without ownership; GLib lets one thread at a
    /// time iterate, and hands the GMainContext over under its own mutex,
    /// which ThreadSanitizer cannot see (GMutex is a futex): so an atomic,
    /// relaxed.
    let glibPollEpoch = Atomic<UInt64>(0)
    /// `glibPollEpoch` of the iteration whose check last recorded the
    /// handlers' revents: a dispatch may collect revents from an earlier
    /// iteration's check (GLib skips check after a ready prepare), and must
    /// compare against the epoch of the poll that saw them. Written by check
    /// and read by dispatch, both under ownership.
    @exclusivity(unchecked) var glibReventsEpoch: UInt64 = 0
    /// Whether GLib's check ran since its prepare (GLib skips it after a
    /// ready prepare). The GLib thread's (as `glibPollEpoch`): reset at the
    /// top of prepare, even when prepare cannot take ownership. Relaxed: one
    /// GLib thread at a time, handed over under GLib's own mutex.
    let glibChecked = Atomic<Bool>(false)
    /// How many `dispatchAll` passes the owner is in (nested polls count).
    /// Owner-only writes; read by the owner thread only (`queue`).
    @exclusivity(unchecked) var dispatchDepth = 0

    /// The recursive ownership lock.
    let ownership = OwnershipLock()

    /// The home thread's id. Relaxed: it changes only through `setHomeThread`,
    /// which must happen before the thread starts polling.
    let homeThread: Atomic<UInt>

    /// Named BHs that are alive (made and not yet freed), for leak reports.
    /// Protected by its lock; touched at creation and when a deleted BH is freed.
    let liveBottomHalves = Locked<[ObjectIdentifier: BottomHalf]>([:])

    /// The GSource while attached. Protected by its lock.
    let attachment = Locked<UnsafeMutablePointer<GSource>?>(nil)
    /// The attached GSource's address (0: detached), readable without the
    /// lock: a hook of a source detached meanwhile leaves bit 0 alone.
    /// Written under `attachment`'s lock; read (relaxed) only by a prepare
    /// that owns the context. Relaxed suffices there: a new source's prepare
    /// can have set bit 0 only under ownership, after its attach stored the
    /// new address, and our acquire of ownership follows that prepare's
    /// release, so a reader that could clear the new source's bit sees the
    /// new address. (Read stale, an old address only skips a clear.)
    let attachedSourceAddress = Atomic<UInt>(0)

    #if DEBUG
    /// Tests: see `setDebugHookAfterGLibAdvertise`.
    let debugHookAfterGLibAdvertise = Locked<(@Sendable () -> Void)?>(nil)
    /// Debug builds: one-shots scheduled, and one-shots the dispatch ran
    /// (`debugState` shows both, so a watchdog's dump tells a post that
    /// never ran from a waiter that never looked).
    let debugOneshotsPosted = Atomic<Int>(0)
    let debugOneshotsRun = Atomic<Int>(0)
    #endif

    // The core's parts, also held here as stored references: reading a
    // stored `let` borrows it, while a computed property would retain and
    // release it on every access of the hot path.
    /// Counters for ``statistics``. Written with relaxed atomics.
    let stats: Counters
    /// Private wake-up fds of native waiters; see `NotifyCore`.
    let waiters: WaiterRegistry
    /// The timerfd GLib polls for sub-millisecond timers. Immutable reference.
    let glibTimer: GLibTimerFD

    /// fd handlers and the fd monitor. Thread-safe (own lock).
    let handlers: HandlerTable

    /// One timer list per clock, indexed by `AioClock.rawValue`. Thread-safe.
    let timerLists: [TimerList]

    /// Armed timers over every clock. Thread-safe.
    let armedTimers = ArmedTimers()

    /// The context's virtual clock. Thread-safe.
    public let virtualClock: VirtualClock

    /// Busy-polling parameters (``pollMaxNs``, ``pollGrow``, ``pollShrink``).
    let pollParameters = PollParameters()

    /// Owner-only: adaptive busy polling's state.
    @exclusivity(unchecked) var pollMode = PollMode()

    /// Swift concurrency jobs queued on the context. Thread-safe push; the
    /// drain is owner-only.
    let jobs = JobQueue()

    /// The context's task executor while anything holds it (see
    /// ``taskExecutor``). Weak: the task executor holds the context. Protected
    /// by its lock.
    let taskExecutorCache = Locked<WeakTaskExecutor>(WeakTaskExecutor())

    /// `Task.sleep` wake-up jobs waiting for their timers, by timer.
    /// Protected by its lock.
    let delayedJobs = Locked<[ObjectIdentifier: DelayedJob]>([:])

    /// Async waits on descriptors, by fd. Protected by its lock.
    let fdWaiters = Locked<[Int32: FDWaiters]>([:])

    /// The thread pool, once created. Protected by its lock.
    let poolStorage = Locked<ThreadPool?>(nil)

    /// Where the context logs; see ``logger``. Protected by its lock.
    private let loggerStorage: Locked<Logger>

    /// Creates a context whose home thread is the calling thread.
    ///
    /// It also sets the calling thread's timer slack to 1 ns (as QEMU does for
    /// its loop threads), so timed waits wake at their deadline.
    ///
    /// `fdMonitor` forces a backend (see ``FDMonitorKind``); nil chooses:
    /// the `AIO_FDMON` environment variable if set, else io_uring when the
    /// kernel gives the process a ring, else ppoll with epoll from 64 fds.
    /// When the choice falls back, the first context of the process says
    /// why in a warning (``fdMonitorFallbackReason`` keeps it).
    ///
    /// `logger` receives the context's log messages (see ``logger``); nil
    /// makes one with the label `aio`. Either way the context adds its name
    /// as the metadata `aio.context`.
    ///
    /// Throws if the kernel refuses its eventfds, or the forced monitor.
    /// QEMU: `aio_context_new()`.
    public convenience init(name: String = "aio", fdMonitor: FDMonitorKind? = nil,
                            logger: Logger? = nil) throws(AioError) {
        try self.init(name: name, fdMonitor: fdMonitor, logger: logger, simulatedRingErrno: 0)
    }

    /// `simulatedRingErrno`: tests make the ring's setup fail with it.
    init(name: String, fdMonitor: FDMonitorKind?, logger: Logger? = nil,
         simulatedRingErrno: Int32) throws(AioError) {
        self.name = name
        self.loggerStorage = Locked(Self.contextLogger(logger, name: name))
        self.handlers = try HandlerTable(preference: fdMonitor, simulatedRingErrno: simulatedRingErrno)
        do {
            self.glibTimer = try GLibTimerFD()
        } catch {
            throw .system(error)
        }
        let core = try NotifyCore(contextName: name)
        self.core = core
        self.stats = core.stats
        self.waiters = core.waiters
        self.bhList = core.bhList
        self.timerLists = AioClock.allCases.map { TimerList(clock: $0, contextName: name) }
        self.homeThread = Atomic(currentThreadID())
        self.virtualClock = VirtualClock(contextName: name)
        // Back-references for the parts that need the context; each is owned
        // by the context, so none outlives it.
        handlers.ownerRef = self
        virtualClock.link.connect(self)
        for list in timerLists {
            list.link = virtualClock.link
            list.total = armedTimers
            list.virtualClock = virtualClock
        }
        setUpExecutor()
        #if DEBUG
        ownership.beforeWaiting = { [unowned(unsafe) self] in self.checkLockOrderBeforeWaiting() }
        #endif
        Self.tightenTimerSlack()
        if let ring = handlers.ring {
            let weakSelf = WeakContext(self)
            ring.onBacklog = { weakSelf.value?.notify() }
        }
        if let reason = handlers.fallbackReason,
           !Self.fallbackReported.exchange(true, ordering: .relaxed) {
            warn("AioContext '\(name)': fd monitor: \(reason) (said once per process)")
        }
    }

    /// The first fallback of the process was reported.
    private static let fallbackReported = Atomic<Bool>(false)

    /// Why this context's automatic monitor choice is not io_uring (nil if
    /// it is, or if the monitor was forced).
    public var fdMonitorFallbackReason: String? { handlers.fallbackReason }

    #if DEBUG
    /// Debug builds: a thread about to wait for ownership must not hold the
    /// GMainContext this context is attached to. The lock order is ownership,
    /// then GMainContext: the owner may be waiting for that GMainContext (a
    /// BH that iterates GLib), and then neither ever gets what it waits for.
    /// GLib's hooks never wait (they defer); this catches user code inside a
    /// GLib callback, and a nested native poll inside a GSource dispatch that
    /// takes ownership back after its sleep. Called only on the contended
    /// path. The closure is owned by the context's ownership lock, so
    /// `unowned(unsafe)` cannot outlive the context.
    func checkLockOrderBeforeWaiting() {
        let held: Bool = attachment.withLock { source in
            guard let source, let mainContext = g_source_get_context(source) else { return false }
            return g_main_context_is_owner(mainContext) != 0
        }
        if held {
            fatalError("AioContext '\(name)': lock order violation: this thread holds the GMainContext the context is attached to and waits for the context's ownership, which another thread holds. The order is ownership first, then GMainContext (the owner may be waiting for this GMainContext: a deadlock). From inside a GLib callback, schedule a BH (or scheduleOneshot) instead of taking ownership; do not block in the context's poll from inside its own GSource dispatch.")
        }
    }
    #endif

    /// Timed waits on the home thread wake at their deadline, not up to 50 µs
    /// later (the kernel's default timer slack). QEMU does the same.
    static func tightenTimerSlack() {
        _ = aio_shim_set_timer_slack_ns(1)
    }

    deinit {
        tearDown()
        #if AIO_FAULT_NOTIFY_AFTER_TEARDOWN
        core.faultTornDown.store(true, ordering: .relaxed)
        #endif
    }

    /// A one-line description for logs and debugging.
    public var description: String { "AioContext('\(name)')" }

    /// Makes the calling thread the context's home thread: the thread that may
    /// block in ``poll(blocking:)`` without holding ownership.
    ///
    /// Call it once, on the thread that will run the loop, before it polls.
    /// QEMU: `qemu_set_current_aio_context()`.
    public func setHomeThread() {
        homeThread.store(currentThreadID(), ordering: .relaxed)
        Self.tightenTimerSlack()
    }

    /// Whether the calling thread is the context's home thread. Thread-safe.
    public var isHomeThread: Bool {
        homeThread.load(ordering: .relaxed) == currentThreadID()
    }

    // MARK: Ownership

    /// Takes ownership of the context (recursive). While held, this thread may
    /// block in ``poll(blocking:)``; native polls on other threads wait, and
    /// GLib's hooks report "not ready" (GLib runs its other sources).
    ///
    /// Thread-safe: may be called from any thread; blocks while another thread
    /// owns the context outside a wait. Never call it while holding the
    /// GMainContext the context is attached to (inside a GLib callback) if
    /// another thread may own the context: the lock order is ownership, then
    /// GMainContext, and debug builds trap on the wait.
    /// QEMU: `aio_context_acquire()`.
    public func acquire() {
        ownership.acquire()
    }

    /// Gives back one level of ownership taken by the library itself (a
    /// poll, a GSource hook). A GLib deferral is not woken here: a busy
    /// native loop releases after every pass and would write GLib's eventfd
    /// each time; GLib looks again within 1 ms anyway (see `gsourcePrepare`).
    /// The releases that end a stretch of ownership do wake it: the public
    /// ``release()`` and the release around a native sleep. Owner-only.
    @inline(__always)
    func releaseOwnership() {
        _ = ownership.release()
    }

    /// Wakes GLib for a hook that was deferred, once per pending wake-up
    /// (the same flag as notify's GLib write). Any thread.
    @inline(__always)
    func wakeDeferredGLib() {
        core.wakeGLibUnlessPending()
    }

    /// Gives back one level of ownership taken with ``acquire()``.
    ///
    /// Must be called on the thread that acquired; traps otherwise.
    /// QEMU: `aio_context_release()`.
    public func release() {
        guard let deferred = ownership.release() else {
            fatalError("AioContext '\(name)': release() on a thread that does not own the context (ownership rule: release on the thread that called acquire())")
        }
        if deferred { wakeDeferredGLib() }
    }

    /// Runs `body` while owning the context.
    public func withOwnership<R>(_ body: () throws -> R) rethrows -> R {
        acquire()
        defer { release() }
        return try body()
    }

    /// Whether the calling thread owns the context. Thread-safe.
    public var isOwnedByCurrentThread: Bool { ownership.isHeldByCurrentThread }

    // MARK: Bottom halves

    /// Creates a bottom half bound to this context. It is not scheduled.
    ///
    /// Delete it with ``BottomHalf/delete()`` before the context goes away.
    /// Thread-safe: may be called from any thread. QEMU: `aio_bh_new_full()`.
    public func makeBottomHalf(
        name: String, _ callback: @escaping @Sendable (BottomHalf) -> Void
    ) -> BottomHalf {
        let bh = BottomHalf(context: self, name: name, flags: 0, registered: true,
                            callback: .withHandle(BottomHalf.HandleCallback(callback)))
        liveBottomHalves.withLock { $0[ObjectIdentifier(bh)] = bh }
        return bh
    }

    /// Runs `callback` once on the context's thread, as a BH that frees itself.
    /// The recommended way to run code on another thread's context.
    ///
    /// Thread-safe: may be called from any thread. No allocation in the
    /// steady state: the BH is taken from the context's pool of one-shots
    /// that ran, so a call allocates only when more one-shots are in flight
    /// than the pool has nodes. The pool grows with a flood that outruns the
    /// loop and keeps 1,024 nodes once its demand falls. Swift allocates a
    /// closure's context when it captures more than one reference or any
    /// value; a closure that captures nothing or one object allocates nothing.
    /// QEMU: `aio_bh_schedule_oneshot_full()`.
    public func scheduleOneshot(name: String = "oneshot",
                                _ callback: @escaping @Sendable () -> Void) {
        let flags = BHFlags.pending | BHFlags.scheduled | BHFlags.oneshot
        let node: Unmanaged<BottomHalf>
        if let recycled = oneshots.take() {
            // Ours alone until the push publishes it (releasing).
            recycled._withUnsafeGuaranteedRef { bh in
                bh.name = name
                bh.callback = .plain(callback)
                bh.flags.store(flags | BHFlags.pooled, ordering: .relaxed)
            }
            node = recycled
        } else {
            node = Unmanaged.passRetained(BottomHalf(
                context: self, name: name, flags: flags,
                registered: false, callback: .plain(callback)))
            oneshots.madeNode()
        }
        #if DEBUG
        debugOneshotsPosted.wrappingAdd(1, ordering: .relaxed)
        #endif
        bhList.pushRetained(node)
        notify()
    }

    /// Runs `body` once on the main actor, as a one-shot BH of a context
    /// whose callbacks run on the main thread: one attached to the default
    /// `GMainContext` that the main thread iterates, or driven natively there.
    ///
    /// ```swift
    /// io.context.scheduleOneshot {                  // the pool is used from its context's thread
    ///     io.context.threadPool.submit({ try compute() }) { result in
    ///         home.scheduleOneshot(onMainActor: { model.results.append(result) })
    ///     }
    /// }
    /// ```
    ///
    /// Any thread may schedule it. When it runs, the context checks that it
    /// runs on the main thread and traps, naming the context and the BH, if
    /// not: a context driven by another thread cannot run main-actor code.
    ///
    /// It runs wherever the context's BHs run, nested polls included: main
    /// actor code that polls this context (`waitWhile`, a nested `poll`, a
    /// nested GLib iteration) runs the one-shots queued meanwhile inside it,
    /// as a nested `g_main_context_iteration` would run a GLib idle. Do not
    /// poll while main-actor state is borrowed.
    public func scheduleOneshot(name: String = "oneshot",
                                onMainActor body: @escaping @MainActor @Sendable () -> Void) {
        let contextName = self.name
        scheduleOneshot(name: name) {
            guard MainQueuePump.isMainThread else {
                fatalError("AioContext '\(contextName)': the main-actor one-shot '\(name)' ran on a thread that is not the main thread; scheduleOneshot(onMainActor:) needs a context whose callbacks run on the main thread (its home is the main thread, and no other thread drives it)")
            }
            MainActor.assumeIsolated { body() }
        }
    }

    // MARK: Statistics

    /// A snapshot of the context's counters.
    public struct Statistics: Sendable, Equatable {
        /// BH callbacks run (named and one-shot).
        public var bottomHalvesRun: Int
        /// Eventfd writes made by ``notify()`` to wake a sleeping thread.
        public var eventfdWrites: Int
        /// Native polls that actually went to sleep.
        public var blockingWaits: Int
        /// Calls to ``poll(blocking:)`` plus GSource dispatches.
        public var iterations: Int
        /// Busy-polling spins that found work (so the loop did not sleep).
        public var busyPollHits: Int
        /// Time spent busy-polling, in ns (CPU the spins cost).
        public var busyPollNs: Int
        /// Timer callbacks run, on every clock.
        public var timersFired: Int = 0
        /// fd handler dispatches: a handler found ready whose read or write
        /// callback ran (both count once).
        public var fdDispatches: Int = 0
    }

    /// The context's counters. Thread-safe; each counter is read on its own.
    public var statistics: Statistics {
        Statistics(bottomHalvesRun: stats.bhRuns.load(ordering: .relaxed),
                   eventfdWrites: stats.eventfdWrites.load(ordering: .relaxed),
                   blockingWaits: stats.blockingWaits.load(ordering: .relaxed),
                   iterations: stats.iterations.load(ordering: .relaxed),
                   busyPollHits: stats.busyPollHits.load(ordering: .relaxed),
                   busyPollNs: stats.busyPollNs.load(ordering: .relaxed),
                   timersFired: timerLists.reduce(0) { $0 + $1.fired.load(ordering: .relaxed) },
                   fdDispatches: stats.fdDispatches.load(ordering: .relaxed))
    }

    /// The counters of the context's thread pool, all zero if the pool was
    /// never used (reading them does not create it). Thread-safe.
    public var threadPoolStatistics: ThreadPool.Statistics {
        poolStorage.withLock { $0 }?.statistics ?? ThreadPool.Statistics()
    }

    /// A one-line dump of the wake-up state, for watchdogs and bug reports:
    /// `notifyMe`, `notified`, which wake-up fds are readable, pending BHs,
    /// and in debug builds the one-shots scheduled and run (equal counts on
    /// an idle loop: no post was lost; a waiter that never woke waits for
    /// something else). Thread-safe, racy by nature.
    public var debugState: String {
        let pendingNames = pendingBottomHalfNames()
        return "AioContext '\(name)': notifyMe=\(core.notifyMe.load(ordering: .relaxed)) "
            + "notifyGeneration=\(core.notifyGeneration.load(ordering: .relaxed)) "
            + "glibWakePending=\(core.glibWakePending.load(ordering: .relaxed)) "
            + "nativeWaiters=\(waiters.debugDescription) "
            + "pendingBHs=[\(pendingNames.joined(separator: ", "))]"
            + debugOneshotCounts
    }

    private var debugOneshotCounts: String {
        #if DEBUG
        " oneshots posted=\(debugOneshotsPosted.load(ordering: .relaxed)) "
            + "run=\(debugOneshotsRun.load(ordering: .relaxed))"
        #else
        ""
        #endif
    }

    /// Names of the pending BHs, walked under ownership if it can be had
    /// without waiting (a watchdog must not hang on a stuck loop).
    private func pendingBottomHalfNames() -> [String] {
        guard ownership.tryAcquire() else { return ["<context busy: not walked>"] }
        defer { releaseOwnership() }
        var names: [String] = []
        func walk(_ start: Unmanaged<BottomHalf>?) {
            var node = start
            while let n = node, names.count < 64 {
                let bh = n.takeUnretainedValue()
                let f = bh.flags.load(ordering: .relaxed)
                names.append(bh.name + (f & BHFlags.scheduled != 0 ? "" : f & BHFlags.deleted != 0 ? "(deleted)" : "(cancelled)"))
                node = bh.next
            }
        }
        // Acquiring pairs with [bh-push]; nodes leave the stack only through the
        // owner, which is us now.
        walk(bhList.pending.load(ordering: .acquiring))
        walk(bhList.queueHead)
        return names
    }

    // MARK: Logging

    /// Where the context logs: warnings about misuse it detected (a
    /// descriptor closed while registered, a handler that makes the loop
    /// spin, a thread-pool worker that could not start) and the fd monitor
    /// fallback, at `.warning`; nothing on any fast path.
    ///
    /// The default is `Logger(label: "aio")`, so messages go wherever the
    /// program bootstrapped swift-log (`LoggingSystem.bootstrap`), or to
    /// standard error if it did not. Setting a logger keeps the metadata
    /// `aio.context` (the context's name) on it. Thread-safe.
    public var logger: Logger {
        get { loggerStorage.withLock { $0 } }
        set { loggerStorage.withLock { $0 = Self.contextLogger(newValue, name: name) } }
    }

    static func contextLogger(_ base: Logger?, name: String) -> Logger {
        var logger = base ?? Logger(label: "aio")
        logger[metadataKey: "aio.context"] = "\(name)"
        return logger
    }

    func warn(_ message: String) {
        let logger = loggerStorage.withLock { $0 }
        logger.warning("\(message)")
    }

    // MARK: Teardown

    private func tearDown() {
        // First: timers and the virtual clock can no longer reach us.
        virtualClock.link.cut()
        poolStorage.withLock { $0 }?.tearDown()
        if let ring = handlers.ring {
            let inFlight = ring.operationsInFlight.load(ordering: .relaxed)
            let notRun = ring.pendingCallbacks
            if inFlight > 0 || notRun > 0 {
                fatalError("AioContext '\(name)' torn down with \(inFlight) io_uring operation(s) queued or in flight and \(notRun) completion(s) whose callbacks have not run (submit, or a file I/O callback form): keep the context alive, and polled, until their completions have run; the kernel could write to freed buffers, and the callbacks would never be called.")
            }
        }
        for list in timerLists { list.tearDown() }
        tearDownDelayedJobs()
        tearDownExecutor()
        var leaks: [String] = []
        // Closed before the drain, with a fence: an executor schedule racing
        // with teardown either is drained here or sees `closed` and drains
        // itself (`BottomHalf.scheduleUnlessTornDown`).
        core.closed.store(true, ordering: .relaxed)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        bhList.takeAll()
        while let bh = bhList.popFront() {
            let flags = bh.flags.load(ordering: .acquiring)
            if flags & BHFlags.deleted != 0 {
                free(bh)
            } else if !bh.isRegistered {
                leaks.append("one-shot '\(bh.name)' (scheduled, never ran)")
                bh.releaseCallback()
            }
        }
        oneshots.drain()
        let alive = liveBottomHalves.withLock { live -> [String] in
            let names = live.values.map(\.name).sorted()
            for bh in live.values { bh.releaseCallback() }
            live.removeAll()
            return names
        }
        for name in alive {
            leaks.append("'\(name)' (made with makeBottomHalf, never deleted)")
        }
        if !leaks.isEmpty {
            fatalError("AioContext '\(name)' torn down with live bottom halves: \(leaks.joined(separator: ", ")). Delete every bottom half, and let every one-shot run, before the context goes away.")
        }
    }

    /// Releases what a BH holds once it can never run again. Owner-only.
    /// The registry's reference may be the last one: nothing touches `bh`
    /// after it is let go of (a registered BH's list link holds no retain;
    /// see `BHList.pending`), and while a run of the BH is on the stack
    /// (a callback that deleted its BH and polls, nested) the run lets go
    /// of it when it returns.
    func free(_ bh: BottomHalf) {
        #if DEBUG
        bh.debugFreedOnThread = currentThreadID()
        #endif
        bh.releaseCallback()
        if bh.isRegistered && !bh.unregisterAfterRunIfRunning() {
            unregister(bh)
        }
    }

    /// Drops the registry's reference to a freed BH, possibly the last one.
    /// Owner-only.
    func unregister(_ bh: BottomHalf) {
        _ = liveBottomHalves.withLock { $0.removeValue(forKey: ObjectIdentifier(bh)) }
    }
}

/// The context's counters. Single-writer counters use relaxed load+store
/// (no locked instruction on the hot path); multi-writer ones use RMWs.
final class Counters: Sendable {
    /// Written by the owner only (load+store under ownership).
    let bhRuns = Atomic<Int>(0)
    /// Written by any notifier (RMW, slow path only).
    let eventfdWrites = Atomic<Int>(0)
    /// Written by native waiters (RMW, only around a real sleep).
    let blockingWaits = Atomic<Int>(0)
    /// Written by the owner only.
    let iterations = Atomic<Int>(0)
    /// Written by the owner (RMW: rare, and owners change).
    let busyPollHits = Atomic<Int>(0)
    let busyPollNs = Atomic<Int>(0)
    /// Written by the owner only.
    let fdDispatches = Atomic<Int>(0)

    @inline(__always)
    static func bump(_ counter: borrowing Atomic<Int>) {
        counter.store(counter.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }
}
