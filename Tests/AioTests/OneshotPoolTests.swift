@testable import Aio
import Glibc
import Synchronization
import Testing

/// The one-shot pool (`OneshotPool`, Models/aio_bh_pool.pml): nodes come back
/// after they run and are taken again by any thread. What could break is a
/// node handed to two schedulers at once (a post lost or run twice), a node
/// recycled while a scheduler still fills it, or a pool that grows without
/// bound. Two producers post while the context is driven natively, through
/// GLib, and by both at once; the debug-only window between taking the free
/// stack and giving the rest back is widened so the splice path runs.
@Suite("One-shot node pool", .blockingLane, .serialized)
struct OneshotPoolTests {
    /// Per-post run counts, written only by the thread dispatching (under the
    /// context's ownership), read by the test after the last post ran.
    final class Ledger: @unchecked Sendable {
        var runs: [UInt8]
        init(_ n: Int) { runs = Array(repeating: 0, count: n) }
    }

    @Test("posts from two threads each run exactly once; the pool trims back to its capacity", arguments: Driver.allCases)
    func twoProducers(driver: Driver) throws {
        let h = try Harness(driver, name: "pool-\(driver.rawValue)")
        let perProducer = 20_000
        let total = 2 * perProducer
        let ledger = Ledger(total)
        let ran = Counter()
        #if DEBUG
        OneshotPool.widenGiveBackWindow.store(true, ordering: .relaxed)
        let splices0 = OneshotPool.splices.load(ordering: .relaxed)
        defer { OneshotPool.widenGiveBackWindow.store(false, ordering: .relaxed) }
        #endif
        let ctx = h.ctx
        // One round: two producers post `total` one-shots while this thread
        // drives the context; every post must run exactly once.
        func round(_ number: Int) {
            for i in ledger.runs.indices { ledger.runs[i] = 0 }
            let base = ran.count
            let producers = try! (0..<2).map { p in
                try NativeThread(name: "pool-producer-\(p)") {
                    for i in 0..<perProducer {
                        let id = p * perProducer + i
                        ctx.scheduleOneshot {
                            ledger.runs[id] &+= 1
                            ran.increment()
                        }
                        // Let the loop keep up now and then, so nodes come back
                        // while the producers take them.
                        if i % 64 == 0 { sched_yield() }
                    }
                }
            }
            let dog = Watchdog(seconds: 30, "\(total) one-shots from two threads (\(driver), round \(number))",
                               state: { "ran \(ran.count - base) " + ctx.debugState }, kick: { ctx.notify() })
            while ran.count - base < total && !dog.hasFired { h.iterate(blocking: true) }
            for t in producers { t.join() }
            #expect(!dog.disarm())
            #expect(ran.count - base == total)
            let wrong = ledger.runs.enumerated().filter { $0.element != 1 }
            #expect(wrong.isEmpty, "posts that did not run exactly once: \(wrong.prefix(5).map { "#\($0.offset) ran \($0.element)×" })")
            // The pool may have grown past its capacity while the loop fell
            // behind; a pass the pool serves trims it back.
            let after = ran.count
            ctx.scheduleOneshot { ran.increment() }
            #expect(h.iterate(until: { ran.count > after }, within: 10, "a post after round \(number) (\(driver))"))
            #expect(ctx.oneshots.nodesAlive <= OneshotPool.capacity,
                    "the pool keeps \(ctx.oneshots.nodesAlive) nodes")
        }
        round(1)
        #if DEBUG
        // A splice needs a recycle to land inside a taker's widened window;
        // a slow run (sanitizers, a loaded machine) may see none in a round.
        for number in 2...4 where OneshotPool.splices.load(ordering: .relaxed) == splices0 {
            round(number)
        }
        #endif
        #if DEBUG
        // The widened window makes recycles land inside it thousands of
        // times per run: the splice path was exercised.
        let spliced = OneshotPool.splices.load(ordering: .relaxed) - splices0
        print("pool (\(driver)): \(spliced) give-backs spliced behind a recycle")
        #expect(spliced > 0, "no give-back met a recycle: the splice path did not run")
        #endif
        h.drain()
        h.finish()
    }

    /// Posts `producers × perProducer` one-shots while nothing dispatches
    /// (the test thread is the only one that drives the context; in `.both`
    /// it holds ownership, so the GLib thread cannot), so every post makes
    /// a node; then runs them all and checks that every node came back and
    /// none was freed (a flood that went on would take them again instead
    /// of allocating). Returns the number posted.
    private func floodWhileNothingDispatches(_ h: Harness, producers: Int, perProducer: Int,
                                             ran: Counter) throws -> Int {
        let ctx = h.ctx
        let total = producers * perProducer
        let threads = try (0..<producers).map { p in
            try NativeThread(name: "pool-flood-\(p)") {
                for _ in 0..<perProducer { ctx.scheduleOneshot { ran.increment() } }
            }
        }
        for t in threads { t.join() }
        #expect(ctx.oneshots.nodesAlive == total, "every post of the flood made a node")
        #expect(h.iterate(until: { ran.count == total }, within: 30, "the flood runs (\(h.driver))"))
        #expect(ctx.oneshots.nodesAlive == total, "the passes that ran the flood kept every node")
        return total
    }

    @Test("a flood grows the pool past its capacity; the next pass the pool serves trims it", arguments: Driver.allCases)
    func floodThenTrim(driver: Driver) throws {
        let h = try Harness(driver, name: "pool-flood-\(driver.rawValue)")
        let ran = Counter()
        let total = try floodWhileNothingDispatches(h, producers: 2, perProducer: 3 * OneshotPool.capacity, ran: ran)
        // A post the pool serves: its pass finds supply meeting demand and
        // trims the free stack down to the capacity.
        h.ctx.scheduleOneshot { ran.increment() }
        #expect(h.iterate(until: { ran.count == total + 1 }, within: 10, "the post after the flood (\(driver))"))
        #expect(h.ctx.oneshots.nodesAlive == OneshotPool.capacity, "the pool kept \(h.ctx.oneshots.nodesAlive) nodes")
        h.finish()
    }

    @Test("a flood, then the loop goes to sleep: the sleep trims the pool", arguments: Driver.allCases)
    func floodThenSleep(driver: Driver) throws {
        let h = try Harness(driver, name: "pool-sleep-\(driver.rawValue)")
        let ctx = h.ctx
        _ = try floodWhileNothingDispatches(h, producers: 1, perProducer: 3 * OneshotPool.capacity, ran: Counter())
        // Nothing pending: the next blocking iteration goes to sleep, and
        // trims on its way; another thread's notify ends the sleep.
        // The sleep that trims is the test thread's: a native poll's
        // (native, both) or GLib's prepare on it (gsource).
        let waker = try NativeThread(name: "pool-sleep-waker") {
            waitForSleeper(ctx, driver == .gsource ? .gsource : .native, settleUs: 50_000)
            ctx.notify()
        }
        let dog = h.watchdog(40, "a blocking iteration after the flood (\(driver))")
        h.iterate(blocking: true)
        waker.join()
        #expect(!dog.disarm())
        #expect(ctx.oneshots.nodesAlive == OneshotPool.capacity, "the pool kept \(ctx.oneshots.nodesAlive) nodes")
        h.finish()
    }

    @Test("a one-shot's name is the one it was scheduled with, after recycling")
    func recycledName() throws {
        let ctx = try AioContext(name: "pool-names")
        final class Names: @unchecked Sendable { var seen: [String] = [] }
        let names = Names()
        ctx.scheduleOneshot(name: "first") {}
        ctx.poll(blocking: false)
        #expect(ctx.oneshots.nodesAlive == 1)
        // The recycled node carries the new name: a leak report or a trap
        // inside it must not name the previous post.
        ctx.scheduleOneshot(name: "second") {
            names.seen.append(ctx.debugState)
        }
        #expect(ctx.oneshots.nodesAlive == 1, "the second one-shot reused the node")
        #expect(ctx.debugState.contains("second"))
        #expect(!ctx.debugState.contains("first"))
        ctx.poll(blocking: false)
        #expect(names.seen.count == 1)
    }
}
