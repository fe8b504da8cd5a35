// The multithread stress: QEMU's test-aio-multithread.c in Swift. Shared by
// the test suite (short rounds, MultithreadStressTests) and aio-stress's
// `multithread` mode (rounds for a configurable time).

import Aio
import Glibc
import Synchronization

/// Several IOThreads, each running its own context: the stage of every
/// multithread workload. QEMU: the `threads[]`/`ctx[]` arrays of
/// test-aio-multithread.c, made by `create_aio_contexts()`.
public final class StressContexts: Sendable {
    /// The IOThreads, started by init. Immutable after init.
    public let threads: [IOThread]

    /// Each IOThread's context, in the same order.
    public var contexts: [AioContext] { threads.map(\.context) }

    /// Creates and starts `count` IOThreads named `name0`, `name1`, ...
    /// Throws if a context or a thread cannot be had (the ones already
    /// started are stopped and joined first).
    public init(count: Int, name: String = "mt") throws(AioError) {
        var threads: [IOThread] = []
        do {
            for i in 0..<count {
                let thread = try IOThread(name: "\(name)\(i)")
                try thread.start()
                threads.append(thread)
            }
        } catch {
            Self.stopAndJoin(threads)
            throw error
        }
        self.threads = threads
    }

    /// Stops every IOThread and joins it. What was posted before runs first.
    /// Call once, when no task or BH of a workload is left on the contexts.
    public func stop() {
        Self.stopAndJoin(threads)
    }

    private static func stopAndJoin(_ threads: [IOThread]) {
        for thread in threads { thread.stop() }
        for thread in threads { thread.join() }
    }

    /// Wakes every context (a watchdog's rescue: a context that was asleep
    /// with work pending had lost a wake-up).
    public func kick() {
        for thread in threads { thread.context.notify() }
    }

    /// Every context's wake-up state, one per line.
    public var debugState: String {
        threads.map { "  " + $0.context.debugState }.joined(separator: "\n")
    }
}

/// A relaxed counter. Relaxed is enough: totals are read after the round has
/// ended, which the round's own completion orders (a task group or a
/// continuation), and progress reads for the watchdog may be stale.
final class StressCounter: Sendable {
    private let value = Atomic<Int>(0)
    func add(_ n: Int = 1) { value.wrappingAdd(n, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

/// Turns a stalled round into a failure with a diagnostic. If the round is
/// not over within `seconds`, it prints what it waited for, the progress
/// made and every context's wake-up state, marks itself fired (the round
/// fails) and kicks the contexts, so a round stuck on a lost wake-up can end.
/// If it is still stuck `grace` seconds later, nothing will end it: it prints
/// again and ends the process with status 1, a failure with a message
/// rather than a hang.
final class RoundWatchdog: Sendable {
    private let disarmed: EventNotifier
    private let fired = StressFlag()
    private let thread: NativeThread

    init(seconds: Double, grace: Double = 10, _ what: String, contexts: StressContexts,
         progress: @escaping @Sendable () -> String) throws(AioError) {
        let disarmed = try EventNotifier()
        let fired = self.fired
        self.disarmed = disarmed
        thread = try NativeThread(name: "mt-watchdog") {
            if Self.wait(disarmed, seconds: seconds) { return }
            fired.set()
            print("WATCHDOG: \(what) did not finish within \(seconds) s (\(progress()))\n\(contexts.debugState)")
            fflush(nil)
            contexts.kick()
            if Self.wait(disarmed, seconds: grace) { return }
            print("WATCHDOG: \(what) still stuck \(grace) s after the kick; ending the process (\(progress()))\n\(contexts.debugState)")
            fflush(nil)
            _exit(1)
        }
    }

    /// Waits on `event` up to `seconds`; whether it was set.
    private static func wait(_ event: EventNotifier, seconds: Double) -> Bool {
        var entry = pollfd(fd: event.fd, events: Int16(POLLIN), revents: 0)
        let deadline = monotonicSeconds() + seconds
        while true {
            let left = deadline - monotonicSeconds()
            if left <= 0 { return event.isSet }
            if Glibc.poll(&entry, 1, Int32(min(left * 1000 + 1, 60_000))) > 0 { return true }
        }
    }

    /// Whether the watchdog has fired; may be polled while the round runs.
    var hasFired: Bool { fired.isSet }

    /// Ends the watch; returns whether the watchdog fired (the round failed).
    func disarm() -> Bool {
        disarmed.set()
        thread.join()
        return fired.isSet
    }
}

/// A flag set once. Relaxed: it is read after joining the thread that sets
/// it, and the join orders the two.
final class StressFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
