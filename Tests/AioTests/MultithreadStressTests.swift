@_spi(AioInternals) @testable import Aio
import AioMultithreadStress
import Glibc
import Testing

/// Five IOThreads, each running its own context, with work moving between
/// them at random: QEMU's test-aio-multithread.c. The workloads live in
/// `AioMultithreadStress`, shared with `aio-stress multithread` (the long
/// run); here every round is short, and `AIO_STRESS=1` makes it 10 times
/// longer. Every round has a watchdog (a stall fails the test with each
/// context's wake-up state, or ends the process if a kick does not help),
/// and every test stops and joins its IOThreads.
@Suite("Multithread stress: five IOThreads (test-aio-multithread)", .serialized, .timeLimit(.minutes(1)))
struct MultithreadStressTests {
    static let contextCount = 5
    /// 10 with AIO_STRESS=1 (the long runs), 1 otherwise.
    static let scale = getenv("AIO_STRESS").map { String(cString: $0) } == "1" ? 10 : 1
    static let roundTimeout = 30.0

    /// Runs `body` on a fresh set of IOThreads, then stops and joins them.
    func withStress(_ body: (MultithreadStress) async throws -> Void) async throws {
        let stage = try StressContexts(count: Self.contextCount, name: "mt")
        let stress = MultithreadStress(stage: stage, roundTimeout: Self.roundTimeout)
        try await body(stress)
        stage.stop()
    }

    func check(_ report: StressRoundReport) {
        print("multithread stress: \(report)")
        #expect(report.failures.isEmpty, "\(report)")
    }

    /// Ports test-aio-multithread.c /aio/multi/lifecycle.
    @Test("IOThreads are created, each runs a BH on its own thread, and they stop and join, five times over")
    func lifecycle() async throws {
        for _ in 0..<5 {
            let stage = try StressContexts(count: Self.contextCount, name: "life")
            let ranHome = Counter()
            let done = Countdown(Self.contextCount)
            for ctx in stage.contexts {
                ctx.scheduleOneshot {
                    if ctx.isHomeThread && ctx.isOwnedByCurrentThread { ranHome.increment() }
                    _ = done.tick()
                }
            }
            #expect(await eventually(within: Self.roundTimeout) { done.left == 0 }, "\(stage.debugState)")
            stage.stop()
            #expect(ranHome.count == Self.contextCount)
        }
    }

    /// Ports test-aio-multithread.c /aio/multi/schedule, with one-shot BHs
    /// for the coroutines: each hop schedules the next on a random context.
    @Test("BH chains hopping between random contexts: each hop runs on its context's thread, and the counts add up")
    func bottomHalfHops() async throws {
        try await withStress { stress in
            check(await stress.bottomHalfRound(chains: 10, hopsPerChain: 10_000 * Self.scale))
        }
    }

    /// The Swift side of /aio/multi/schedule: tasks move between contexts by
    /// calling actors whose executor is the context.
    @Test("tasks hopping between actors on random contexts: every step runs on its context's thread, and the counts add up")
    func actorHops() async throws {
        try await withStress { stress in
            check(await stress.actorHopRound(tasks: 8, relaysPerTask: 2_500 * Self.scale))
        }
    }

    /// Ports test-aio-multithread.c /aio/multi/mutex/contended.
    @Test("AsyncMutex contended by tasks on five contexts and the global executor, holders suspending: the counter is exact")
    func mutexContended() async throws {
        try await withStress { stress in
            check(await stress.mutexRound(contextCount: Self.contextCount, tasksPerContext: 4, globalTasks: 2,
                                          iterations: 500 * Self.scale, suspendHolding: true))
        }
    }

    /// Ports test-aio-multithread.c /aio/multi/mutex/handoff: two contexts,
    /// a short critical section, contention only from the threads racing.
    @Test("AsyncMutex between two contexts with a short critical section (hand-offs): the counter is exact")
    func mutexHandOff() async throws {
        try await withStress { stress in
            check(await stress.mutexRound(contextCount: 2, tasksPerContext: 1, globalTasks: 0,
                                          iterations: 50_000 * Self.scale, suspendHolding: false))
        }
    }
}
