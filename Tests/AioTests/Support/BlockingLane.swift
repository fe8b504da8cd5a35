@_spi(AioInternals) @testable import Aio
import Glibc
import Testing

/// Runs each test case of a suite (or test) that blocks its thread on
/// threads of their own, instead of on Swift's global executor.
///
/// Swift Testing calls a synchronous test function on the global executor,
/// which has one thread per core: 2 here, shared by every test of the
/// process. Most tests of this package block: they drive a context with
/// blocking iterations, join threads and wait on events, for up to a minute
/// under the sanitizers (a GLib round trip under load). Two of them at once
/// held both threads, and every async test of the process stood still
/// meanwhile: its continuations, and `Task.sleep`s that wake through the
/// global executor, waited in the queue. Its watchdog, armed in the body,
/// then fired on loops that were idle with nothing pending, as a lost
/// wake-up would look (the heartbeat in a watchdog's dump now tells the two
/// apart). On a lane, blocking tests queue among themselves, two at a time
/// as before, and the global executor stays free for the async tests' code,
/// which mostly awaits.
///
/// A synchronous test never awaits, so it never waits for the lane once it
/// has started: what it measures with its own watchdogs is its own. Async
/// tests stay on the global executor (a continuation queued behind a
/// blocking test is the starvation this avoids); the few async tests that
/// block briefly (a join, a short wait) do so there.
///
/// A lane test carries no `.timeLimit`: Swift Testing would count its wait
/// for a lane thread, which a long test ahead of it in the queue stretches.
/// Each bounds itself with its own watchdogs, which start with its body.
struct BlockingLane: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(for test: Test, testCase: Test.Case?,
                      performing function: @Sendable () async throws -> Void) async throws {
        // A suite, or a parameterized test as a whole: its cases get their
        // own scope.
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
    // @unchecked Sendable: `jobs` is touched only under `mutex`.
    static let shared = LaneExecutor(threads: 2)

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

    @Test("the watchdogs' heartbeat runs on the global executor, not on the lane", .timeLimit(.minutes(1)))
    func heartbeatRunsOnTheGlobalExecutor() async throws {
        // Started from the lane, as the first watchdog may be (if no
        // watchdog of the process started it before).
        try await withTaskExecutorPreference(LaneExecutor.shared) { GlobalExecutorHeartbeat.start() }
        #expect(await eventually(within: 30) { GlobalExecutorHeartbeat.lastThread != 0 })
        let thread = GlobalExecutorHeartbeat.lastThread
        #expect(!LaneExecutor.shared.runsOnLane(thread),
                "the heartbeat ran on the lane: it would measure the lane, not the global executor")
    }
}
