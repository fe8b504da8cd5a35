import Aio
import Synchronization

/// What one round of a workload did, and what went wrong (nothing, if it
/// passed).
public struct StressRoundReport: Sendable, CustomStringConvertible {
    /// The workload, e.g. "bottom-half hops".
    public let workload: String
    /// Hops, steps or lock acquisitions made.
    public var operations = 0
    public var seconds = 0.0
    /// Extra figures (contended locks, doorbell runs).
    public var notes = ""
    /// Each broken invariant, with the numbers; empty if the round passed.
    public var failures: [String] = []

    public var passed: Bool { failures.isEmpty }

    public var description: String {
        let rate = seconds > 0 ? Int(Double(operations) / seconds) : 0
        var text = "\(workload): \(operations) in \(Int(seconds * 1000)) ms (\(rate)/s)"
        if !notes.isEmpty { text += "; \(notes)" }
        for failure in failures { text += "\n  FAILED: \(failure)" }
        return text
    }
}

/// How big each round is.
public struct StressSizes: Sendable {
    /// Bottom-half hops: chains, and hops per chain.
    public var chains: Int
    public var hopsPerChain: Int
    /// Actor hops: tasks, and relays per task (two steps each).
    public var hopTasks: Int
    public var relaysPerTask: Int
    /// The contended mutex: tasks per context, tasks on the global executor,
    /// and iterations per task (each suspends while holding the mutex).
    public var mutexTasksPerContext: Int
    public var mutexGlobalTasks: Int
    public var mutexIterations: Int
    /// The hand-off mutex: one task on each of two contexts, iterations each.
    public var handoffIterations: Int

    public init(chains: Int, hopsPerChain: Int, hopTasks: Int, relaysPerTask: Int,
                mutexTasksPerContext: Int, mutexGlobalTasks: Int, mutexIterations: Int,
                handoffIterations: Int) {
        self.chains = chains
        self.hopsPerChain = hopsPerChain
        self.hopTasks = hopTasks
        self.relaysPerTask = relaysPerTask
        self.mutexTasksPerContext = mutexTasksPerContext
        self.mutexGlobalTasks = mutexGlobalTasks
        self.mutexIterations = mutexIterations
        self.handoffIterations = handoffIterations
    }

    /// Rounds of a fraction of a second each (more under ThreadSanitizer).
    public static let standard = StressSizes(
        chains: 10, hopsPerChain: 1_000, hopTasks: 8, relaysPerTask: 250,
        mutexTasksPerContext: 4, mutexGlobalTasks: 2, mutexIterations: 100,
        handoffIterations: 5_000)
}

/// The workloads of QEMU's test-aio-multithread.c on a set of IOThreads:
/// random cross-context BH scheduling (`/aio/multi/schedule`), Swift tasks
/// hopping between actors on random contexts (`aio_co_schedule()` between
/// contexts), and a contended ``AsyncMutex`` (`/aio/multi/mutex/contended`
/// and `/aio/multi/mutex/handoff`). Every round checks that its counts add up
/// exactly and runs under a ``RoundWatchdog``.
///
/// Run one round at a time; stop the stage (``StressContexts/stop()``) only
/// once the rounds are done.
public final class MultithreadStress: Sendable {
    /// The IOThreads the rounds run on. Immutable after init.
    public let stage: StressContexts
    /// One actor per context. Immutable after init.
    let actors: [HopActor]
    /// How long a round may take before its watchdog fires.
    public let roundTimeout: Double

    public init(stage: StressContexts, roundTimeout: Double) {
        self.stage = stage
        self.actors = stage.contexts.map(HopActor.init)
        self.roundTimeout = roundTimeout
    }

    /// Every workload once, in order; stops after a round that failed (its
    /// report is the last one).
    public func runAll(_ sizes: StressSizes) async -> [StressRoundReport] {
        let rounds: [@Sendable () async -> StressRoundReport] = [
            { await self.bottomHalfRound(chains: sizes.chains, hopsPerChain: sizes.hopsPerChain) },
            { await self.actorHopRound(tasks: sizes.hopTasks, relaysPerTask: sizes.relaysPerTask) },
            {
                await self.mutexRound(contextCount: self.stage.threads.count,
                                      tasksPerContext: sizes.mutexTasksPerContext,
                                      globalTasks: sizes.mutexGlobalTasks,
                                      iterations: sizes.mutexIterations, suspendHolding: true)
            },
            {
                await self.mutexRound(contextCount: 2, tasksPerContext: 1, globalTasks: 0,
                                      iterations: sizes.handoffIterations, suspendHolding: false)
            },
        ]
        var reports: [StressRoundReport] = []
        for round in rounds {
            let report = await round()
            reports.append(report)
            if !report.passed { break }
        }
        return reports
    }

    private func watchdog(_ what: String, progress: @escaping @Sendable () -> String) -> RoundWatchdog {
        do {
            return try RoundWatchdog(seconds: roundTimeout, what, contexts: stage, progress: progress)
        } catch {
            fatalError("multithread stress: cannot start a watchdog thread: \(error)")
        }
    }

    // MARK: Bottom halves

    /// `chains` chains of one-shot BHs: each hop runs on a context, counts
    /// itself there, rings a random context's doorbell (a named BH, so
    /// re-schedules of a pending BH coalesce) and schedules the next hop on a
    /// random context. The per-context counts must add up to every hop, each
    /// hop must run on its context's IOThread, and after the last ring every
    /// doorbell must still run once (no schedule lost).
    public func bottomHalfRound(chains: Int, hopsPerChain: Int) async -> StressRoundReport {
        var report = StressRoundReport(workload: "bottom-half hops")
        let contexts = stage.contexts
        let expected = chains * hopsPerChain
        let hops = BottomHalfHops(contexts: contexts)
        let dog = watchdog("bottom-half round (\(chains) chains of \(hopsPerChain) hops)") {
            "\(hops.hops.count) of \(expected) hops"
        }
        let start = monotonicSeconds()
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let chainsLeft = Countdown(chains)
            for chain in 0..<chains {
                hops.hop(at: chain % contexts.count, left: hopsPerChain) {
                    if chainsLeft.tick() { done.resume() }
                }
            }
            if chains == 0 { done.resume() }
        }
        // Flush: once every doorbell is idle (not scheduled, no callback in
        // progress; nothing rings them any more), one more ring each; a run
        // that starts after that can only come from this ring, so every
        // doorbell must start once more.
        // Idle twice, 1 ms apart, with no start in between: a run whose
        // SCHEDULED flag was cleared but whose callback had not begun at the
        // first look has begun by the second.
        var before = hops.doorbellStarts.map(\.count)
        while !dog.hasFired {
            before = hops.doorbellStarts.map(\.count)
            guard hops.doorbellsIdle else {
                try? await Task.sleep(for: .milliseconds(1))
                continue
            }
            try? await Task.sleep(for: .milliseconds(1))
            if hops.doorbellsIdle && hops.doorbellStarts.map(\.count) == before { break }
        }
        for doorbell in hops.doorbells { doorbell.schedule() }
        for (i, starts) in hops.doorbellStarts.enumerated() {
            while starts.count <= before[i] && !dog.hasFired {
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        report.seconds = monotonicSeconds() - start
        let fired = dog.disarm()
        for doorbell in hops.doorbells { doorbell.delete() }

        let perContext = hops.ranOn.map(\.count)
        report.operations = hops.hops.count
        report.notes = "per context \(perContext), doorbells rung \(hops.rings.count), run \(hops.doorbellRuns.map(\.count).reduce(0, +))"
        if fired { report.failures.append("the round stalled past its watchdog (\(roundTimeout) s; see WATCHDOG above)") }
        if perContext.reduce(0, +) != expected || hops.hops.count != expected {
            report.failures.append("hops counted per context sum to \(perContext.reduce(0, +)), in all \(hops.hops.count), expected \(expected) (a hop run twice, or one run by no context)")
        }
        if hops.misplaced.count != 0 {
            report.failures.append("\(hops.misplaced.count) BH callbacks ran off their context's IOThread")
        }
        return report
    }

    // MARK: Actor hops

    /// `tasks` tasks, each making `relaysPerTask` relays: from the global
    /// executor to a random context's actor, from there to another random
    /// context's actor and back (two steps). Each step checks it runs on its
    /// context's IOThread, owning the context; the actors' step counts must
    /// add up to every step.
    public func actorHopRound(tasks: Int, relaysPerTask: Int) async -> StressRoundReport {
        var report = StressRoundReport(workload: "actor hops")
        let actors = self.actors
        let expected = tasks * relaysPerTask * 2
        let steps = StressCounter()
        let dog = watchdog("actor-hop round (\(tasks) tasks of \(relaysPerTask) relays)") {
            "\(steps.count) of \(expected) steps"
        }
        let start = monotonicSeconds()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<tasks {
                group.addTask {
                    for _ in 0..<relaysPerTask {
                        let from = actors.randomElement()!
                        await from.relay(to: actors.randomElement()!)
                        steps.add(2)
                    }
                }
            }
        }
        report.seconds = monotonicSeconds() - start
        let fired = dog.disarm()
        var counted = 0
        var misplaced = 0
        for actor in actors {
            let counts = await actor.takeCounts()
            counted += counts.steps
            misplaced += counts.misplaced
        }
        report.operations = counted
        if fired { report.failures.append("the round stalled past its watchdog (\(roundTimeout) s; see WATCHDOG above)") }
        if counted != expected || steps.count != expected {
            report.failures.append("steps counted by the actors \(counted), by the tasks \(steps.count), expected \(expected)")
        }
        if misplaced != 0 {
            report.failures.append("\(misplaced) actor steps ran off their context's IOThread")
        }
        return report
    }

    // MARK: The mutex

    /// Tasks on the first `contextCount` contexts' actors (`tasksPerContext`
    /// each) and `globalTasks` on the global executor increment one plain,
    /// unsynchronised counter under an ``AsyncMutex``, `iterations` times
    /// each, and count each increment they made on their own. With
    /// `suspendHolding`, every holder suspends in the critical section (a
    /// yield, or a hop to another context's actor and back), so the queue
    /// fills and hand-offs cross threads; without it, the critical section
    /// is short and contention comes from threads racing (QEMU's hand-off
    /// variant). The counter must equal the sum of the tasks' counts exactly.
    public func mutexRound(contextCount: Int, tasksPerContext: Int, globalTasks: Int,
                           iterations: Int, suspendHolding: Bool) async -> StressRoundReport {
        let name = suspendHolding ? "mutex, \(contextCount) contexts" : "mutex hand-off, \(contextCount) contexts"
        var report = StressRoundReport(workload: name)
        let job = MutexJob(mutex: AsyncMutex(name: "mt-counter"), iterations: iterations,
                           suspendHolding: suspendHolding, hopTargets: actors)
        let workers = Array(actors.prefix(contextCount))
        let expected = (workers.count * tasksPerContext + globalTasks) * iterations
        let dog = watchdog("\(name) round (\(expected) increments)") {
            "\(job.unlocked.count) of \(expected) increments; \(job.mutex.debugState)"
        }
        let start = monotonicSeconds()
        let total = await withTaskGroup(of: MutexTally.self) { group in
            for worker in workers {
                for _ in 0..<tasksPerContext {
                    group.addTask { await worker.runMutexJob(job) }
                }
            }
            for _ in 0..<globalTasks {
                group.addTask { await job.run(home: nil) }
            }
            var total = MutexTally()
            for await tally in group { total.add(tally) }
            return total
        }
        report.seconds = monotonicSeconds() - start
        let fired = dog.disarm()
        let counter = job.counter.value  // every task is done: no one holds the mutex
        report.operations = total.increments
        report.notes = "\(total.contended) of \(total.increments) locks waited"
        if fired { report.failures.append("the round stalled past its watchdog (\(roundTimeout) s; see WATCHDOG above)") }
        if counter != total.increments || total.increments != expected || job.unlocked.count != expected {
            report.failures.append("counter \(counter), sum of the tasks' counts \(total.increments), counted after unlock \(job.unlocked.count), expected \(expected)")
        }
        if total.misplaced != 0 {
            report.failures.append("\(total.misplaced) iterations ran off their context's IOThread")
        }
        if total.cancelled != 0 {
            report.failures.append("\(total.cancelled) lock() calls threw, though nothing was cancelled")
        }
        // Holders that suspend make the others queue: if none ever waited,
        // the hand-off path went untested. (Short critical sections may
        // rarely contend; that round reports its count in the notes.)
        if suspendHolding && workers.count * tasksPerContext + globalTasks > 1 && iterations > 0 && total.contended == 0 {
            report.failures.append("no lock() waited, though holders suspend: the hand-off path was not exercised")
        }
        if job.mutex.tryLock() {
            job.mutex.unlock()
        } else {
            report.failures.append("the mutex is still held after every task ended: \(job.mutex.debugState)")
        }
        return report
    }
}

/// The BH round's state, shared by every hop.
final class BottomHalfHops: Sendable {
    let contexts: [AioContext]
    /// Hops run on each context.
    let ranOn: [StressCounter]
    /// Hops run, all contexts.
    let hops = StressCounter()
    /// Hops that ran off their context's IOThread.
    let misplaced = StressCounter()
    /// One named BH per context, rung by the hops.
    let doorbells: [BottomHalf]
    /// Doorbell callbacks started and finished, per doorbell.
    let doorbellStarts: [StressCounter]
    let doorbellRuns: [StressCounter]
    let rings = StressCounter()

    init(contexts: [AioContext]) {
        self.contexts = contexts
        ranOn = contexts.map { _ in StressCounter() }
        let doorbellStarts = contexts.map { _ in StressCounter() }
        let doorbellRuns = contexts.map { _ in StressCounter() }
        let misplaced = self.misplaced
        doorbells = contexts.enumerated().map { i, ctx in
            ctx.makeBottomHalf(name: "mt-doorbell\(i)") { _ in
                doorbellStarts[i].add()
                if !ctx.isHomeThread || !ctx.isOwnedByCurrentThread { misplaced.add() }
                doorbellRuns[i].add()
            }
        }
        self.doorbellStarts = doorbellStarts
        self.doorbellRuns = doorbellRuns
    }

    /// No doorbell is scheduled or running. Once the hops are done nothing
    /// rings them, so this stays true until the flush rings them.
    var doorbellsIdle: Bool {
        doorbells.indices.allSatisfy { i in
            !doorbells[i].isScheduled && doorbellStarts[i].count == doorbellRuns[i].count
        }
    }

    /// Schedules a hop on context `i`; after `left` hops in all, `finished`
    /// runs (on the last hop's context).
    func hop(at i: Int, left: Int, finished: @escaping @Sendable () -> Void) {
        let ctx = contexts[i]
        ctx.scheduleOneshot(name: "mt-hop") { [self] in
            if !ctx.isHomeThread || !ctx.isOwnedByCurrentThread { misplaced.add() }
            ranOn[i].add()
            hops.add()
            rings.add()
            doorbells.randomElement()!.schedule()
            if left > 1 {
                hop(at: Int.random(in: 0..<contexts.count), left: left - 1, finished: finished)
            } else {
                finished()
            }
        }
    }
}

/// Counts down; exactly one `tick()` sees zero. Acquiring and releasing, so
/// whoever sees zero also sees what every other ticker did before its tick.
final class Countdown: Sendable {
    private let value: Atomic<Int>
    init(_ n: Int) { value = Atomic(n) }
    func tick() -> Bool { value.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue == 0 }
}

/// An actor on one context: the unit of the actor and mutex rounds.
actor HopActor {
    /// Held strongly: the context must outlive the actor's jobs.
    let ctx: AioContext
    private var steps = 0
    private var misplaced = 0

    init(_ ctx: AioContext) { self.ctx = ctx }

    nonisolated var unownedExecutor: UnownedSerialExecutor { ctx.asUnownedSerialExecutor() }

    /// Whether the caller runs where this actor's code must: on the
    /// context's IOThread, owning the context.
    nonisolated var isOnItsThread: Bool { ctx.isHomeThread && ctx.isOwnedByCurrentThread }

    /// One step, counted.
    func step() {
        if !isOnItsThread { misplaced += 1 }
        steps += 1
    }

    /// A step here, one on `other` (a hop from this context to that one),
    /// and a check that the hop back landed here.
    func relay(to other: HopActor) async {
        step()
        await other.step()
        if !isOnItsThread { misplaced += 1 }
    }

    /// A visit that counts nothing: whether it ran on its thread.
    func visit() -> Bool { isOnItsThread }

    /// The counts since the last call.
    func takeCounts() -> (steps: Int, misplaced: Int) {
        defer { steps = 0; misplaced = 0 }
        return (steps, misplaced)
    }

    func runMutexJob(_ job: MutexJob) async -> MutexTally {
        await job.run(home: self)
    }
}

/// A counter that is not synchronised at all: only the mutex under test
/// protects it. ThreadSanitizer reports any access the mutex failed to order.
final class UnguardedCounter: @unchecked Sendable {
    // @unchecked Sendable: `value` is touched only while holding
    // `MutexJob.mutex`, and read at the end of the round, after every task
    // (the task group orders that read after them).
    var value = 0
}

/// What one mutex task did.
struct MutexTally: Sendable {
    var increments = 0
    var contended = 0
    var misplaced = 0
    var cancelled = 0

    mutating func add(_ other: MutexTally) {
        increments += other.increments
        contended += other.contended
        misplaced += other.misplaced
        cancelled += other.cancelled
    }
}

/// One mutex round: the mutex, the counter it guards, the work per task.
final class MutexJob: Sendable {
    let mutex: AsyncMutex
    let counter = UnguardedCounter()
    /// Bumped after each unlock (QEMU's `atomic_counter`).
    let unlocked = StressCounter()
    let iterations: Int
    let suspendHolding: Bool
    let hopTargets: [HopActor]

    init(mutex: AsyncMutex, iterations: Int, suspendHolding: Bool, hopTargets: [HopActor]) {
        self.mutex = mutex
        self.iterations = iterations
        self.suspendHolding = suspendHolding
        self.hopTargets = hopTargets
    }

    /// One task's loop, in the caller's isolation: `home`'s context (checked
    /// after each iteration), or the global executor.
    func run(isolation: isolated (any Actor)? = #isolation, home: HopActor?) async -> MutexTally {
        var tally = MutexTally()
        for i in 0..<iterations {
            if !mutex.tryLock() {
                tally.contended += 1
                do {
                    try await mutex.lock()
                } catch {
                    tally.cancelled += 1
                    continue
                }
            }
            let value = counter.value
            if suspendHolding {
                if i % 2 == 0 {
                    await Task.yield()
                } else if await !hopTargets.randomElement()!.visit() {
                    tally.misplaced += 1
                }
            }
            counter.value = value + 1
            mutex.unlock()
            unlocked.add()
            tally.increments += 1
            if let home, !home.isOnItsThread { tally.misplaced += 1 }
        }
        return tally
    }
}
