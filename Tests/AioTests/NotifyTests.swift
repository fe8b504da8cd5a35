import Aio
import CGLibShim
import Synchronization
import Testing

@Suite("Notify and cross-thread wake-ups", .blockingLane)
struct NotifyTests {
    /// Ports test-aio.c /aio/notify and /aio-gsource/notify (removed upstream
    /// around 2015) and /aio-gsource/flush: a notify made while nobody polls
    /// keeps the next blocking iteration from sleeping, is not progress, and
    /// leaves nothing sticky behind.
    @Test("a bare notify is not progress and is not sticky", arguments: Driver.allCases)
    func notifyIsNotProgress(driver: Driver) throws {
        let h = try Harness(driver)
        #expect(!h.iterate(blocking: false))
        h.ctx.notify()
        switch driver {
        case .native, .both:
            // Nobody was asleep, so no fd was written; the blocking poll sees
            // `notified` and returns at once without progress.
            #expect(!h.iterate(blocking: true))
            #expect(!h.iterate(blocking: false))
        case .gsource:
            // The notify keeps the next blocking iteration from sleeping (QEMU's
            // /aio-gsource/notify), but, unlike there, it is no dispatch: GLib
            // reports no progress for a bare notify, as the native poll does.
            #expect(!h.iterate(blocking: true))
            #expect(!h.iterate(blocking: false))
        }
        if driver != .both {
            #expect(h.ctx.statistics.eventfdWrites == 0, "nobody slept, so notify made no syscall")
        }
        h.finish()
    }

    @Test("a condition set and notified between the caller's check and its sleep is not slept through",
          arguments: Driver.allCases)
    func conditionBetweenCheckAndSleep(driver: Driver) throws {
        let h = try Harness(driver)
        let done = Atomic<Bool>(false)
        // The race, made deterministic: the flag is set and notified after the
        // loop's last check, before it iterates.
        h.iterate(blocking: false)
        let before = done.load(ordering: .acquiring)
        #expect(!before)
        let setter = try NativeThread(name: "setter") {
            done.store(true, ordering: .releasing)
            h.ctx.notify()
        }
        setter.join()
        let dog = h.watchdog(30, "iteration after a condition change")
        h.iterate(blocking: true)
        #expect(!dog.disarm(), "slept through a notify made after the last iteration")
        let after = done.load(ordering: .acquiring)
        #expect(after)
        h.finish()
    }

    @Test("a BH scheduled from another thread wakes a blocked iteration", arguments: Driver.allCases)
    func crossThreadWake(driver: Driver) throws {
        let h = try Harness(driver)
        let ran = Counter()
        let bh = h.ctx.makeBottomHalf(name: "remote") { _ in ran.increment() }
        let dog = h.watchdog(30, "blocked iteration woken by a remote schedule")
        let sawSleeper = Counter()
        let scheduler = try NativeThread(name: "scheduler") {
            // Let the loop go to sleep first.
            if waitForSleeper(h.ctx) { sawSleeper.increment() }
            bh.schedule()
        }
        var woke = false
        while ran.count == 0 {
            woke = h.iterate(blocking: true) || woke
            if ran.count == 0 && dogFired(dog) { break }
        }
        scheduler.join()
        #expect(!dog.disarm(), "the blocked iteration was not woken")
        #expect(ran.count == 1)
        // Both at once: the GLib thread may be the one that runs it.
        #expect(woke || driver == .both)
        #expect(sawSleeper.count == 1, "the loop never advertised a sleep")
        #expect(h.ctx.statistics.eventfdWrites >= 1, "a sleeping loop is woken through its eventfd")
        bh.delete()
        h.drain()
        h.finish()
    }

    /// 100,000 cross-thread schedules from 2 threads; each runs exactly once.
    @Test("100,000 one-shots from 2 threads each run exactly once", arguments: Driver.allCases)
    func volume(driver: Driver) throws {
        let h = try Harness(driver)
        let perThread = 50_000
        let total = 2 * perThread
        // Written only by the loop thread (the test thread) inside callbacks.
        final class Runs: @unchecked Sendable { var counts: [UInt8]; var done = 0
            init(_ n: Int) { counts = Array(repeating: 0, count: n) } }
        let runs = Runs(total)
        let dog = h.watchdog(60, "100,000 cross-thread one-shots")
        let producers = try (0..<2).map { p in
            try NativeThread(name: "producer-\(p)") {
                for i in 0..<perThread {
                    let id = p * perThread + i
                    h.ctx.scheduleOneshot(name: "job") {
                        runs.counts[id] &+= 1
                        runs.done += 1
                    }
                }
            }
        }
        while runs.done < total {
            h.iterate(blocking: true)
            if dogFired(dog) { break }
        }
        for p in producers { p.join() }
        h.drain()
        #expect(!dog.disarm(), "lost wake-up: \(runs.done) of \(total) ran")
        #expect(runs.done == total)
        #expect(runs.counts.allSatisfy { $0 == 1 }, "every one-shot runs exactly once")
        h.finish()
    }

    @Test("re-scheduling one BH from 2 threads: every schedule is followed by a run", arguments: Driver.allCases)
    func rescheduleFromTwoThreads(driver: Driver) throws {
        let h = try Harness(driver)
        let runs = Counter()
        let bh = h.ctx.makeBottomHalf(name: "shared") { _ in runs.increment() }
        let stop = Atomic<Bool>(false)
        let rounds = 20_000
        let dog = h.watchdog(60, "re-scheduling from 2 threads")
        // Each producer waits until the BH has run since its last schedule,
        // so a lost wake-up shows up as a stalled producer.
        let producers = try (0..<2).map { p in
            try NativeThread(name: "resched-\(p)") {
                for _ in 0..<rounds {
                    let seen = runs.count
                    bh.schedule()
                    while runs.count == seen && !stop.load(ordering: .relaxed) { sched_yield() }
                }
            }
        }
        let finished = Counter()
        let watcher = try NativeThread(name: "resched-join") {
            for p in producers { p.join() }
            finished.increment()
            h.ctx.notify()
        }
        while finished.count == 0 {
            h.iterate(blocking: true)
            if dogFired(dog) { stop.store(true, ordering: .relaxed); break }
        }
        watcher.join()
        #expect(!dog.disarm(), "a schedule was not followed by a run")
        #expect(runs.count >= rounds)
        bh.delete()
        h.drain()
        h.finish()
    }
}

/// Whether a watchdog has fired, without disarming it.
func dogFired(_ dog: Watchdog) -> Bool { dog.hasFired }
