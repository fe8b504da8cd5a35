import Aio
import CGLibShim
import Glibc
import Synchronization
import Testing

/// How a scenario drives the context: natively, or through GLib with the
/// context attached to a private GMainContext. QEMU's test-aio.c runs its
/// scenarios both ways (`/aio/*` and `/aio-gsource/*`).
enum Driver: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case native
    case gsource

    var testDescription: String { rawValue }
}

/// A GMainContext pointer that may cross threads (GLib's API on it is
/// thread-safe).
struct MainContextRef: @unchecked Sendable {
    let raw: OpaquePointer
}

/// One context under test, plus its private GMainContext in GSource mode.
final class Harness: @unchecked Sendable {
    let driver: Driver
    let ctx: AioContext
    let mainContext: MainContextRef?

    init(_ driver: Driver, name: String = "test") throws {
        self.driver = driver
        ctx = try AioContext(name: name)
        if driver == .gsource {
            let mc = MainContextRef(raw: g_main_context_new())
            ctx.attach(to: mc.raw)
            mainContext = mc
        } else {
            mainContext = nil
        }
    }

    /// One iteration: `poll(blocking:)` natively, `g_main_context_iteration`
    /// through GLib. Returns progress (GLib: "something was dispatched").
    @discardableResult
    func iterate(blocking: Bool) -> Bool {
        switch driver {
        case .native:
            return ctx.poll(blocking: blocking)
        case .gsource:
            return g_main_context_iteration(mainContext!.raw, blocking ? 1 : 0) != 0
        }
    }

    /// Iterates without blocking while that makes progress ("drain").
    func drain() {
        var rounds = 0
        while iterate(blocking: false) {
            rounds += 1
            precondition(rounds < 10_000, "drain did not settle")
        }
    }

    /// Wakes a blocked iteration without going through the AioContext, for
    /// watchdogs: GLib's own wakeup in GSource mode, a notify natively.
    func unblock() {
        if let mc = mainContext { g_main_context_wakeup(mc.raw) }
        ctx.notify()
    }

    /// A watchdog that dumps this context's wake-up state and unblocks it.
    func watchdog(_ seconds: Double, _ what: String) -> Watchdog {
        Watchdog(seconds: seconds, what, state: { [ctx] in ctx.debugState }, kick: { [self] in unblock() })
    }

    /// Iterates with blocking iterations until `done()` holds, under a
    /// watchdog. Returns false (the test should fail) if the watchdog fired.
    func iterate(until done: () -> Bool, within seconds: Double, _ what: String) -> Bool {
        let dog = watchdog(seconds, what)
        while !done() && !dog.hasFired { iterate(blocking: true) }
        return !dog.disarm()
    }

    /// Detaches and releases the GMainContext. Call at the end of each test.
    func finish() {
        if let mc = mainContext {
            ctx.detach()
            // Let GLib finalize the source now, on this thread.
            while g_main_context_iteration(mc.raw, 0) != 0 {}
            g_main_context_unref(mc.raw)
        }
    }
}

/// A one-way event with a timeout, on an eventfd (so TSan sees the
/// happens-before of signal → wait).
final class TestEvent: Sendable {
    private let notifier: EventNotifier

    init() { notifier = try! EventNotifier() }

    func signal() { notifier.set() }

    /// Waits up to `seconds`; returns whether the event was signalled, and
    /// resets it.
    func wait(seconds: Double) -> Bool {
        var entry = pollfd(fd: notifier.fd, events: Int16(POLLIN), revents: 0)
        let deadline = nowSeconds() + seconds
        while true {
            let left = deadline - nowSeconds()
            if left <= 0 { return notifier.testAndClear() }
            let rc = Glibc.poll(&entry, 1, Int32(min(left * 1000 + 1, 60_000)))
            if rc > 0 { return notifier.testAndClear() }
        }
    }
}

func nowSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Turns a hang into a test failure. If not disarmed within `seconds` it
/// prints what it was waiting for plus the context's wake-up state, marks
/// itself fired and calls `kick` so the blocked call can return and the test
/// can fail normally. If the test is still stuck 10 s later (the kick itself
/// was lost), it prints again and ends the process with status 1: a failure
/// with a message, never a hang.
final class Watchdog: Sendable {
    private let armed = TestEvent()
    private let finished = TestEvent()
    private let thread: NativeThread
    private let firedBox: TestEventFlag

    init(seconds: Double, _ what: String, state: @escaping @Sendable () -> String = { "" },
         kick: @escaping @Sendable () -> Void) {
        let armed = self.armed
        let fired = TestEventFlag()
        let finished = self.finished
        thread = try! NativeThread(name: "watchdog") {
            if armed.wait(seconds: seconds) { finished.signal(); return }
            fired.set()
            print("WATCHDOG: \(what) did not finish within \(seconds) s. \(state())")
            kick()
            if armed.wait(seconds: 10) { finished.signal(); return }
            print("WATCHDOG: still stuck 10 s after the kick; ending the test process. \(state())")
            fflush(nil)
            _exit(1)
        }
        firedBox = fired
    }

    /// Whether the watchdog has fired (the test will fail).
    var hasFired: Bool { firedBox.isSet }

    /// Stops the watchdog; returns true if it had fired (the test should fail).
    func disarm() -> Bool {
        armed.signal()
        thread.join()
        return firedBox.isSet
    }
}

final class TestEventFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { flag.load(ordering: .sequentiallyConsistent) }
}

/// A counter for callbacks that run on whichever thread owns the context.
/// Release/acquire, so a waiter that sees the new count also sees what the
/// incrementing thread wrote before.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func increment() { value.wrappingAdd(1, ordering: .releasing) }
    var count: Int { value.load(ordering: .acquiring) }
}
