import Aio
import CGLibShim
import Glibc
import Synchronization
import Testing

/// The historical lost wake-ups of QEMU's notify protocol, re-enacted with
/// real threads. Each round waits at most 30 s: a lost wake-up fails the test
/// with the context's wake-up state instead of hanging it.
@Suite("Seed scenarios: QEMU's historical lost wake-ups", .blockingLane)
struct SeedScenarioTests {
    /// Heavier runs are selected with AIO_STRESS=1.
    static let rounds = ProcessInfoLite.stress ? 1_000_000 : 100_000

    /// Seed 000/003 (QEMU 2015, "fix broken placement of
    /// event_notifier_test_and_clear" and "fix broken ctx->dispatching
    /// optimization"): thread G iterates the GMainContext with blocking
    /// iterations while thread V owns the context and runs blocking native
    /// polls on it; both sleep at once. A third thread schedules a BH, waits
    /// until some thread has run it, and starts the next round, so new work
    /// keeps arriving while the previous round is still being dispatched.
    @Test("GLib thread and owner thread both sleeping: every round is dispatched")
    func glibAndOwnerThreadBothSleep() throws {
        let ctx = try AioContext(name: "seed-000")
        let mc = MainContextRef(raw: g_main_context_new())
        ctx.attach(to: mc.raw)
        let stop = Atomic<Bool>(false)
        let ranInRound = TestEvent()
        let runsByG = Counter(), runsByV = Counter()
        let gThread = Atomic<UInt>(0)
        let bh = ctx.makeBottomHalf(name: "round") { _ in
            if pthread_self() == pthread_t(gThread.load(ordering: .relaxed)) {
                runsByG.increment()
            } else {
                runsByV.increment()
            }
            ranInRound.signal()
        }
        // GLib's progress as its other sources see it: V owns the context
        // the whole time, and G must still iterate (its hooks never wait).
        let ticks = Counter()
        let tick = g_timeout_source_new(5)!
        g_source_set_callback(tick, { data in
            Unmanaged<Counter>.fromOpaque(data!).takeUnretainedValue().increment()
            return 1
        }, Unmanaged.passUnretained(ticks).toOpaque(), nil)
        g_source_attach(tick, mc.raw)
        let started = nowSeconds()
        let g = try NativeThread(name: "G-glib") {
            gThread.store(UInt(pthread_self()), ordering: .relaxed)
            while !stop.load(ordering: .relaxed) {
                g_main_context_iteration(mc.raw, 1)
            }
        }
        let v = try NativeThread(name: "V-owner") {
            ctx.acquire()
            while !stop.load(ordering: .relaxed) {
                ctx.poll(blocking: true)
            }
            ctx.release()
        }
        var failure: String? = nil
        for round in 0..<Self.rounds {
            bh.schedule()
            if !ranInRound.wait(seconds: 30) {
                failure = "round \(round) not dispatched within 30 s: \(ctx.debugState)"
                break
            }
        }
        stop.store(true, ordering: .relaxed)
        ctx.notify()
        g_main_context_wakeup(mc.raw)
        let joined = TestEvent()
        let joiner = try NativeThread(name: "seed-000-join") {
            g.join(); v.join(); joined.signal()
        }
        let joinedInTime = joined.wait(seconds: 10)
        if !joinedInTime {
            print("seed 000: G or V did not stop: \(ctx.debugState)")
            fflush(nil)
            _exit(1)
        }
        joiner.join()
        let seconds = nowSeconds() - started
        #expect(failure == nil, "\(failure ?? "")")
        #expect(runsByG.count + runsByV.count == Self.rounds, "every round ran exactly once")
        // A 5 ms timeout: at least a quarter of its ticks, however the run
        // went (0 when GLib waited in a hook for V's ownership).
        #expect(Double(ticks.count) >= seconds * 1000 / 5 / 4,
                "GLib's 5 ms timeout ticked \(ticks.count) times in \(seconds) s: the GLib thread did not make progress")
        g_source_destroy(tick)
        g_source_unref(tick)
        print("seed 000/003: \(Self.rounds) rounds, run by G \(runsByG.count), by V \(runsByV.count); \(ctx.statistics)")
        bh.delete()
        ctx.detach()
        while g_main_context_iteration(mc.raw, 0) != 0 {}
        g_main_context_unref(mc.raw)
    }

    /// Seed 004 (QEMU 2018, "Do aio_notify_accept only during blocking
    /// aio_poll"): the home thread sleeps in a native blocking poll waiting
    /// for a condition that another thread sets and then notifies, while a
    /// third, non-home thread loops non-blocking polls (with or without
    /// notifies of its own). The non-blocking poller must never consume the
    /// notification meant for the sleeper: the sleeper must wake for every
    /// round. Without notifies from the poller nothing else can rescue a
    /// stolen wake-up, so that variant is the sharper one.
    @Test("non-blocking polls on another thread never steal the sleeper's wake-up",
          arguments: [true, false], [true, false])
    func nonBlockingPollerDoesNotSteal(pollerNotifies: Bool, homeUsesToken: Bool) throws {
        let rounds = ProcessInfoLite.stress ? 200_000 : 20_000
        let ctxBox = try ContextBox(AioContext(name: "seed-004"))
        let stop = Atomic<Bool>(false)
        let request = Atomic<Int>(0)
        let acked = TestEvent()
        let stolenWork = Counter()
        // The home thread: waits natively for each new request. Only it acts
        // on a request ("work only the sleeping thread can do"). A request
        // plus notify between its check and its sleep must keep it awake,
        // whether it takes an explicit token before checking or relies on
        // the per-thread memory of a plain poll(blocking: true).
        let home = try NativeThread(name: "H-home") {
            let ctx = ctxBox.ctx
            ctx.setHomeThread()
            var seen = 0
            while true {
                // The token before every condition this thread waits for,
                // `stop` included: a stop and notify between the check and
                // a later token would be slept through.
                let token = ctx.notifyToken
                if stop.load(ordering: .acquiring) { break }
                let now = request.load(ordering: .acquiring)
                if now != seen {
                    seen = now
                    acked.signal()
                    continue
                }
                if homeUsesToken {
                    ctx.poll(blocking: true, unlessNotifiedSince: token)
                } else {
                    ctx.poll(blocking: true)
                }
            }
        }
        // The thief: polls without blocking as fast as it can.
        let thief = try NativeThread(name: "N-nonblocking") {
            let ctx = ctxBox.ctx
            while !stop.load(ordering: .relaxed) {
                if pollerNotifies { ctx.notify() }
                if ctx.poll(blocking: false) { stolenWork.increment() }
            }
        }
        var failure: String? = nil
        for round in 1...rounds {
            request.store(round, ordering: .releasing)
            ctxBox.ctx.notify()
            if !acked.wait(seconds: 30) {
                failure = "round \(round): the home thread did not wake within 30 s: \(ctxBox.ctx.debugState)"
                break
            }
        }
        stop.store(true, ordering: .relaxed)
        ctxBox.ctx.notify()
        let joined = TestEvent()
        let joiner = try NativeThread(name: "seed-004-join") {
            thief.join(); home.join(); joined.signal()
        }
        if !joined.wait(seconds: 10) {
            print("seed 004: threads did not stop: \(ctxBox.ctx.debugState)")
            fflush(nil)
            _exit(1)
        }
        joiner.join()
        #expect(failure == nil, "\(failure ?? "")")
        #expect(stolenWork.count == 0, "no BH was scheduled, so no poll makes progress")
    }

    /// Two native waiters (the home thread and an owner thread) each wait for
    /// their own condition on one context: neither may consume the other's
    /// notification.
    @Test("two native waiters each get their own wake-ups")
    func twoNativeWaiters() throws {
        let rounds = ProcessInfoLite.stress ? 200_000 : 20_000
        let ctxBox = try ContextBox(AioContext(name: "two-waiters"))
        let stop = Atomic<Bool>(false)
        let requests = [Counter(), Counter()]
        let acks = [TestEvent(), TestEvent()]
        func waiter(_ i: Int, home: Bool) throws -> NativeThread {
            try NativeThread(name: "waiter-\(i)") {
                let ctx = ctxBox.ctx
                if home { ctx.setHomeThread() } else { ctx.acquire() }
                var seen = 0
                while true {
                    // The token first, then every condition, `stop` included.
                    let token = ctx.notifyToken
                    if stop.load(ordering: .acquiring) { break }
                    let now = requests[i].count
                    if now != seen { seen = now; acks[i].signal(); continue }
                    ctx.poll(blocking: true, unlessNotifiedSince: token)
                }
                if !home { ctx.release() }
            }
        }
        let threads = [try waiter(0, home: true), try waiter(1, home: false)]
        var failure: String? = nil
        for round in 1...rounds {
            let i = round % 2
            requests[i].increment()
            ctxBox.ctx.notify()
            if !acks[i].wait(seconds: 30) {
                failure = "round \(round): waiter \(i) did not wake within 30 s: \(ctxBox.ctx.debugState)"
                break
            }
        }
        stop.store(true, ordering: .relaxed)
        let joined = TestEvent()
        let joiner = try NativeThread(name: "two-waiters-join") {
            for t in threads { t.join() }
            joined.signal()
        }
        while !joined.wait(seconds: 0.1) { ctxBox.ctx.notify() }
        joiner.join()
        #expect(failure == nil, "\(failure ?? "")")
    }
}

/// Hands a context to threads that set their own home thread.
final class ContextBox: Sendable {
    let ctx: AioContext
    init(_ ctx: AioContext) { self.ctx = ctx }
}

/// Environment switches for the test suite.
enum ProcessInfoLite {
    /// AIO_STRESS=1 selects the long runs.
    static let stress: Bool = {
        guard let value = getenv("AIO_STRESS") else { return false }
        return String(cString: value) == "1"
    }()
}
