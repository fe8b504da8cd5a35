@_spi(AioInternals) @testable import Aio
import Glibc
import Testing

/// Runs each test case of a suite (or test) that blocks its thread on
/// threads of their own, instead of on Swift's global executor.
///
/// Swift Testing calls a synchronous test function on the global executor,
/// which has one thread per core (2 here), shared by every test of the
/// process, and it starts every test at once. Most tests of this package
/// block: they drive a context with blocking iterations, join threads and
/// wait on events, for up to a minute under the sanitizers (a GLib round
/// trip under load). Two of them at once held both threads, and every async
/// test of the process stood still meanwhile: its continuations, and the
/// `Task.sleep`s of its waits, queued behind them. Its watchdog, armed in the
/// body, then fired on loops that were idle with nothing pending, as a lost
/// wake-up would look (the heartbeat in a watchdog's dump now tells the two
/// apart). On the lane, blocking tests queue among themselves, one per core
/// at a time as before, and the global executor stays free for the async
/// tests' code, which mostly awaits.
///
/// A synchronous test never awaits, so once it has started it never waits
/// for the lane again: what its own watchdogs measure is its own. Async
/// tests stay on the global executor (a continuation queued behind a
/// blocking test is the starvation this avoids); the few async tests that
/// block briefly (a join, a short wait) do so there.
///
/// Rules for lane tests:
/// - No `.timeLimit`: Swift Testing counts the whole scope, so the limit
///   would include the wait for a lane thread, behind every lane test queued
///   at the start. A test that waits on another thread bounds itself with a
///   watchdog, which starts with its body.
/// - No waiting on an unstructured `Task {}` without an executor preference:
///   it inherits the lane's and joins the back of the queue, and two lane
///   tests waiting on such tasks would hold both lane threads forever.
struct BlockingLane: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(for test: Test, testCase: Test.Case?,
                      performing function: @Sendable () async throws -> Void) async throws {
        // Defensive: Swift Testing scopes only test cases with this trait
        // (a suite, or a parameterized test as a whole, gets no scope).
        guard testCase != nil else { return try await function() }
        try await withTaskExecutorPreference(LaneExecutor.shared) { try await function() }
    }
}

extension Trait where Self == BlockingLane {
    /// This suite's (or test's) cases block their thread: run them on the
    /// blocking lane, off Swift's global executor (see `BlockingLane`).
    static var blockingLane: Self { BlockingLane() }
}

/// The lane: a FIFO of jobs run by a fixed number of threads. A job runs
/// until it suspends or returns; a synchronous test function is one job.
final class LaneExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: `jobs` and `head` are touched only under `mutex`;
    // `threads` is written in init only.
    /// One thread per core (at least two), as the global executor has.
    static let shared = LaneExecutor(threads: max(2, sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [UnownedJob] = []
    private var head = 0
    private var threads: [NativeThread] = []
    private let laneThreads = Locked<Set<UInt>>([])

    private init(threads count: Int) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
        // The lane lives as long as the test process: its threads never exit.
        threads = (0..<count).map { i in
            try! NativeThread(name: "test-lane-\(i)") { self.work() }
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pthread_mutex_lock(mutex)
        jobs.append(job)
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    /// Whether `thread` (a `currentThreadID()`) is one of the lane's.
    func runsOnLane(_ thread: UInt) -> Bool { laneThreads.withLock { $0.contains(thread) } }

    private func work() {
        _ = laneThreads.withLock { $0.insert(currentThreadID()) }
        let executor = asUnownedTaskExecutor()
        while true {
            pthread_mutex_lock(mutex)
            while head == jobs.count { pthread_cond_wait(cond, mutex) }
            let job = jobs[head]
            head += 1
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            }
            pthread_mutex_unlock(mutex)
            job.runSynchronously(on: executor)
        }
    }
}

@Suite("Test harness")
struct HarnessTests {
    @Test("a test on the blocking lane runs on a lane thread, off Swift's global executor", .blockingLane)
    func blockingTestRunsOnLane() {
        #expect(LaneExecutor.shared.runsOnLane(currentThreadID()))
    }
}
