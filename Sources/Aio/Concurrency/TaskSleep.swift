#if compiler(>=6.3)
@_spi(ExperimentalScheduling) import _Concurrency
#endif

// Sleeping on a context's timers: a Clock for its clocks, and (Swift 6.3,
// behind the scheduling SPI) `Task.sleep` in tasks that prefer the context.

extension AioInstant: InstantProtocol {
    /// The instant `duration` after this one, on the same clock.
    public func advanced(by duration: Duration) -> AioInstant { self + duration }
    /// How long from this instant to `other`, on the same clock.
    public func duration(to other: AioInstant) -> Duration { other - self }
}

/// One of a context's clocks as a Swift `Clock`: `now` reads the context's
/// clock, and `sleep` waits on the context's timers, so a sleeping task wakes
/// through the context's loop with nanosecond deadlines (native or GLib).
///
/// ```swift
/// let clock = ctx.clock(.virtual)                  // deterministic tests
/// async let woke: Void = clock.sleep(for: .seconds(30))
/// ctx.virtualClock.advance(by: .seconds(30))       // wakes it, no waiting
/// try await Task.sleep(for: .milliseconds(2), clock: ctx.clock())
/// ```
///
/// A sleep ends with `CancellationError` as soon as its task is cancelled
/// (its timer is disarmed). The context must be polled for the sleeper to
/// wake. Tolerance is ignored: deadlines are exact.
///
/// (Named for what it is, a clock of one context: ``AioClock`` is the
/// context-free choice between the realtime and the virtual clock, QEMU's
/// `QEMUClockType`, and a Swift `Clock` must know its context to read virtual
/// time and to arm a timer.)
public struct AioContextClock: Clock, CustomStringConvertible {
    /// Instants of a context's clock, in nanoseconds.
    public typealias Instant = AioInstant

    /// The context whose timers measure the sleeps.
    public let context: AioContext
    /// Which of its clocks.
    public let kind: AioClock

    /// The `kind` clock of `context` (also ``AioContext/clock(_:)``).
    public init(context: AioContext, kind: AioClock = .realtime) {
        self.context = context
        self.kind = kind
    }

    /// The clock's current reading.
    public var now: AioInstant { context.now(kind) }

    /// The context's timers keep nanoseconds.
    public var minimumResolution: Duration { .nanoseconds(1) }

    /// Waits on a timer of the context until `deadline`; throws
    /// `CancellationError` at once if the task is cancelled. `tolerance` is
    /// ignored: the deadline is exact.
    public func sleep(until deadline: AioInstant, tolerance: Duration? = nil) async throws {
        try await context.sleep(until: deadline, clock: kind)
    }

    /// A one-line description for logs and debugging.
    public var description: String { "AioContextClock('\(context.name)', \(kind))" }
}

extension AioContext {
    /// One of the context's clocks as a Swift `Clock` (see ``AioContextClock``).
    public func clock(_ kind: AioClock = .realtime) -> AioContextClock {
        AioContextClock(context: self, kind: kind)
    }
}

/// A job that `Task.sleep` handed to the context with a deadline, and the
/// timer that will queue it. In ``AioContext/delayedJobs`` until it fires.
struct DelayedJob {
    let job: UnownedJob
    let timer: AioTimer
}

extension AioContext {
    /// Queues `job` once `deadline` on `kind` has passed: a timer on the
    /// context's timer list moves it to the job queue, so it runs in the
    /// context's FIFO like any other job, never nested inside a job.
    ///
    /// The job that `Task.sleep` enqueues with a deadline is the runtime's
    /// wake-up job for the sleeper, not the sleeper itself; it has no
    /// executor preference, so it runs without a task-executor identity.
    /// When the sleeping task is cancelled, the runtime wakes it at once by
    /// itself, and this job, run later, does nothing.
    func enqueueDelayedJob(_ job: UnownedJob, deadline: AioInstant, on kind: AioClock) {
        // unowned(unsafe): the timer's callback runs only on the context's
        // thread, inside its dispatch; a timer never fires once its context
        // is gone (TimerList.tearDown).
        let timer = makeTimer(name: "Task.sleep", clock: kind) { [unowned(unsafe) self] timer in
            let entry = self.delayedJobs.withLock { $0.removeValue(forKey: ObjectIdentifier(timer)) }
            if let entry { self.enqueueJob(entry.job, taskExecutor: nil, isWakeUp: true) }
        }
        // Registered first, then armed: the callback always finds its job,
        // even if enqueue is called off the context's thread (the runtime
        // calls it from the sleeping task's job, on the context's thread).
        delayedJobs.withLock { $0[ObjectIdentifier(timer)] = DelayedJob(job: job, timer: timer) }
        timer.schedule(at: deadline)
    }

    /// Teardown: the wake-up jobs whose timers have not fired (and, through
    /// `JobQueue.discard`, those whose timers fired but that have not run).
    /// Their sleepers were all cancelled: a task sleeping in a preference for
    /// the context holds its task executor, which holds the context, so the
    /// context cannot be torn down under a sleep still in progress. Such a
    /// job only frees itself when run; it runs on the global executor, since
    /// this context will run nothing more.
    func tearDownDelayedJobs() {
        let leftover = delayedJobs.withLock { jobs -> [DelayedJob] in
            defer { jobs.removeAll() }
            return Array(jobs.values)
        }
        // The timer lists are torn down already: the timers never fire.
        for entry in leftover {
            Self.handOffWakeUp(entry.job)
        }
    }

    /// Runs a cancelled sleep's wake-up job elsewhere: it only frees itself.
    static func handOffWakeUp(_ job: UnownedJob) {
        globalConcurrentExecutor.enqueue(job)
    }
}

#if compiler(>=6.3)
/// `Task.sleep` in a task that prefers the context: Swift 6.3's runtime hands
/// the sleep's wake-up job to the task's preferred executor when that
/// executor can schedule (SE-0505, experimental), so the sleep is measured by
/// the context's timers instead of the global executor's, and the task wakes
/// on the context's thread with no round trip through the global executor. (Actors on the context are not asked: in 6.3 the runtime
/// consults only the task executor; see the README.)
@_spi(ExperimentalScheduling) extension AioTaskExecutor: SchedulingExecutor {
    public func enqueue<C: Clock>(_ job: consuming ExecutorJob, at instant: C.Instant,
                                  tolerance: C.Duration?, clock: C) {
        let unowned = UnownedJob(job)
        if let own = clock as? AioContextClock, own.context === context,
           let deadline = instant as? AioInstant {
            context.enqueueDelayedJob(unowned, deadline: deadline, on: own.kind)
        } else {
            schedule(unowned, after: clock.now.duration(to: instant), of: clock)
        }
    }

    public func enqueue<C: Clock>(_ job: consuming ExecutorJob, after delay: C.Duration,
                                  tolerance: C.Duration?, clock: C) {
        schedule(UnownedJob(job), after: delay, of: clock)
    }

    /// Queues `job` `delay` from now on `clock`: on that clock of the
    /// context if it is one of ours, else on the realtime clock.
    private func schedule<C: Clock>(_ job: UnownedJob, after delay: C.Duration, of clock: C) {
        let duration = Self.duration(delay, of: clock)
        let kind = (clock as? AioContextClock).flatMap { $0.context === context ? $0.kind : nil } ?? .realtime
        context.enqueueDelayedJob(job, deadline: context.now(kind) + duration, on: kind)
    }

    /// A clock's duration as a `Duration`. Every clock `Task.sleep` uses
    /// (continuous, suspending, ours) measures in `Duration`; a clock that
    /// does not cannot be mapped onto the context's nanosecond timers.
    private static func duration<C: Clock>(_ delay: C.Duration, of clock: C) -> Duration {
        guard let duration = delay as? Duration else {
            fatalError("AioTaskExecutor: a delayed job on \(C.self), whose durations are \(C.Duration.self): only clocks measured in Duration can be scheduled on a context's timers")
        }
        return duration
    }
}
#endif
