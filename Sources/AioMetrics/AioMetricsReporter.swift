#if Metrics
@_spi(AioInternals) import Aio
import CoreMetrics

/// Reports an `AioContext`'s statistics, and its thread pool's, to
/// swift-metrics: counters for what happened, gauges for what is.
///
/// ```swift
/// let reporter = AioMetricsReporter(context: ctx)
/// reporter.start(every: .seconds(10))   // a timer on the context reports
/// // ...
/// reporter.stop()
/// ```
///
/// Each report reads the counters and adds what changed since the previous
/// report, so the backend's counters equal the context's. Metrics carry the
/// dimension `context` (the context's name) and any dimensions given.
///
/// | metric | kind | from |
/// |---|---|---|
/// | `aio_iterations` | counter | native polls plus GSource dispatches |
/// | `aio_blocking_waits` | counter | native polls that slept |
/// | `aio_eventfd_writes` | counter | notifies that woke a sleeper |
/// | `aio_bottom_halves_run` | counter | BH callbacks run |
/// | `aio_timers_fired` | counter | timer callbacks run |
/// | `aio_fd_dispatches` | counter | fd handlers dispatched |
/// | `aio_busy_poll_hits` | counter | busy-polling spins that found work |
/// | `aio_busy_poll_nanoseconds` | counter | time spent spinning |
/// | `aio_pool_jobs_submitted` | counter | thread-pool requests submitted |
/// | `aio_pool_jobs_completed` | counter | completions delivered |
/// | `aio_pool_jobs_cancelled` | counter | requests cancelled before they ran |
/// | `aio_pool_jobs_queued` | gauge | requests waiting for a worker |
/// | `aio_pool_jobs_running` | gauge | requests on a worker |
/// | `aio_pool_workers` | gauge | worker threads |
///
/// The names start with `prefix` (default `aio`) instead when one is given.
/// Reading the counters is a few atomic loads and the pool's lock; nothing
/// is added to the context's fast paths.
///
/// - **One reporter per context and backend.** Each reporter adds what
///   changed since *its* last report; two reporters of one context with the
///   same labels count everything twice.
/// - **Keep a reference** while it should report: a reporter that goes away
///   stops its timer (``start(every:)`` does not keep it alive).
/// - The timer fires only while the context is driven (natively, by an
///   `IOThread`, or by GLib).
public final class AioMetricsReporter: Sendable {
    /// The context reported on.
    public let context: AioContext
    private let counters: [(CoreMetrics.Counter, @Sendable (AioContext.Statistics, ThreadPool.Statistics) -> Int)]
    private let gauges: [(Gauge, @Sendable (ThreadPool.Statistics) -> Int)]
    /// The values of the last report, by counter index. Under its lock, so
    /// that reports from two threads never add the same delta twice.
    /// (`Locked`, a pthread mutex, rather than `Mutex`: ThreadSanitizer
    /// sees its ordering.)
    private let last: Locked<[Int]>
    private let timer = Locked<AioTimer?>(nil)

    /// A reporter for `context`, whose metrics go to `factory` (the
    /// bootstrapped metrics system by default). Nothing is reported until
    /// ``report()`` or ``start(every:)``.
    public init(context: AioContext, prefix: String = "aio",
                dimensions: [(String, String)] = [],
                factory: any MetricsFactory = MetricsSystem.factory) {
        self.context = context
        let dims = [("context", context.name)] + dimensions
        func counter(_ name: String,
                     _ read: @escaping @Sendable (AioContext.Statistics, ThreadPool.Statistics) -> Int)
            -> (CoreMetrics.Counter, @Sendable (AioContext.Statistics, ThreadPool.Statistics) -> Int) {
            (CoreMetrics.Counter(label: "\(prefix)_\(name)", dimensions: dims, factory: factory), read)
        }
        func gauge(_ name: String, _ read: @escaping @Sendable (ThreadPool.Statistics) -> Int)
            -> (Gauge, @Sendable (ThreadPool.Statistics) -> Int) {
            (Gauge(label: "\(prefix)_\(name)", dimensions: dims, factory: factory), read)
        }
        counters = [
            counter("iterations") { c, _ in c.iterations },
            counter("blocking_waits") { c, _ in c.blockingWaits },
            counter("eventfd_writes") { c, _ in c.eventfdWrites },
            counter("bottom_halves_run") { c, _ in c.bottomHalvesRun },
            counter("timers_fired") { c, _ in c.timersFired },
            counter("fd_dispatches") { c, _ in c.fdDispatches },
            counter("busy_poll_hits") { c, _ in c.busyPollHits },
            counter("busy_poll_nanoseconds") { c, _ in c.busyPollNs },
            counter("pool_jobs_submitted") { _, p in p.submitted },
            counter("pool_jobs_completed") { _, p in p.completed },
            counter("pool_jobs_cancelled") { _, p in p.cancelled },
        ]
        gauges = [
            gauge("pool_jobs_queued") { $0.queued },
            gauge("pool_jobs_running") { $0.running },
            gauge("pool_workers") { $0.workers },
        ]
        last = Locked([Int](repeating: 0, count: counters.count))
    }

    deinit {
        timer.withLock { $0 }?.cancel()
    }

    /// Reads the statistics now and reports them: each counter grows by what
    /// changed since the last report, each gauge records its value.
    /// Thread-safe.
    public func report() {
        last.withLock { last in
            let stats = context.statistics
            let pool = context.threadPoolStatistics
            for i in counters.indices {
                let value = counters[i].1(stats, pool)
                if value > last[i] {
                    counters[i].0.increment(by: value - last[i])
                    last[i] = value
                }
            }
            for (gauge, read) in gauges {
                gauge.record(read(pool))
            }
        }
    }

    /// Reports now and then every `interval`, from a timer on the context:
    /// reports happen while the context is driven (natively or by GLib) and
    /// cost its thread one timer callback each. Calling it again changes
    /// the interval. Thread-safe.
    public func start(every interval: Duration) {
        precondition(interval > .zero, "AioMetricsReporter of AioContext '\(context.name)': the interval must be positive (got \(interval))")
        report()
        let armed = timer.withLock { current -> AioTimer in
            if let current { return current }
            let made = context.makeTimer(name: "\(context.name)/metrics") { [weak self] timer in
                guard let self, let interval = self.interval.withLock({ $0 }) else { return }
                self.report()
                timer.schedule(after: interval)
            }
            current = made
            return made
        }
        self.interval.withLock { $0 = interval }
        armed.schedule(after: interval)
    }

    /// Stops the periodic reports (a report in progress finishes), then
    /// reports once more, so the backend sees the final counts. Thread-safe.
    public func stop() {
        interval.withLock { $0 = nil }
        timer.withLock { $0 }?.cancel()
        report()
    }

    private let interval = Locked<Duration?>(nil)
}
#else
#warning("AioMetrics is empty: enable the package trait Metrics (.package(url: ..., traits: [\"Metrics\"]), or --traits Metrics)")
#endif
