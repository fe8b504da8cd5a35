@testable import Aio
import Glibc
import Synchronization
import Testing

/// Notifies write a sleeper's eventfd after letting the waiter registry's
/// lock go, so a waiter can withdraw, run its BHs and drain before the write
/// that chose it has landed. The drain then owes it (`WaitSlot.owesDrain`)
/// instead of waiting: the slot's next drain reads it. A forgotten debt
/// leaves the eventfd readable for every later sleep (a busy loop: Models/
/// aio_notify_gen.pml, FAULT_OWE_FORGOTTEN; code fault AIO_FAULT_OWE_FORGOTTEN).
/// The debug-only window between the unlock and the write is widened to
/// 200 µs so that drains do find writes in flight.
@Suite("Wake-up writes outside the registry lock", .blockingLane, .serialized)
struct OwedDrainTests {
    @Test("a drain that finds a write in flight owes it, and the loop sleeps again afterwards",
          arguments: [Driver.native, .both])
    func owedDrain(driver: Driver) throws {
        #if DEBUG
        let h = try Harness(driver, name: "owed-\(driver.rawValue)")
        let ctx = h.ctx
        WaiterRegistry.widenWriteWindow.store(true, ordering: .relaxed)
        defer { WaiterRegistry.widenWriteWindow.store(false, ordering: .relaxed) }
        let owed0 = WaitSlot.drainsOwed.load(ordering: .relaxed)
        let stop = TestEventFlag()
        let notifier = try NativeThread(name: "owed-notifier") {
            while !stop.isSet {
                ctx.notify()
                usleep(50)
            }
        }
        // Blocking polls while notifies land at random points of them: some
        // see the generation move after advertising and do not sleep while
        // the write that chose them is still in its window. How many do
        // varies with the load (with a GLib thread beside the owner, under
        // the sanitizers and a busy machine: 0 to 808 in 2,000 polls), so
        // polling goes on, for up to 10 s more, until one has.
        let until = nowSeconds() + 1.0
        var polls = 0
        func noneOwedYet() -> Bool { WaitSlot.drainsOwed.load(ordering: .relaxed) == owed0 }
        while nowSeconds() < until || (polls < 2_000 && nowSeconds() < until + 4)
                || (noneOwedYet() && nowSeconds() < until + 10) {
            ctx.poll(blocking: true)
            polls += 1
        }
        stop.set()
        notifier.join()
        let owed = WaitSlot.drainsOwed.load(ordering: .relaxed) - owed0
        // Let the last write land, then the quiet part: a timer 50 ms ahead
        // and nothing else. Polls that return at once (a readable eventfd
        // nobody drains) would number in the thousands; an owed write costs
        // one wait that returns at once.
        usleep(1_000)
        final class Fired: @unchecked Sendable { var fired = false }
        let fired = Fired()
        let timer = ctx.makeTimer(name: "quiet") { _ in fired.fired = true }
        timer.schedule(after: .milliseconds(50))
        let dog = Watchdog(seconds: 10, "the quiet timer", state: { ctx.debugState }, kick: { ctx.notify() })
        var quietPolls = 0
        while !fired.fired && !dog.hasFired {
            ctx.poll(blocking: true)
            quietPolls += 1
        }
        #expect(!dog.disarm())
        print("owed drains (\(driver)): \(owed) in \(polls) polls; quiet polls until the timer: \(quietPolls)")
        #expect(owed > 0, "no drain found a write in flight: the owed path did not run")
        // A few waits may end early without a fault: an owed write, and with
        // a GLib thread beside the owner, its iterations' hand-offs of the
        // context (5 were seen once under ThreadSanitizer). A readable fd
        // nobody drains makes thousands.
        #expect(quietPolls <= 20, "\(quietPolls) polls in 50 ms with nothing to do: a wake-up fd left readable")
        timer.cancel()
        h.drain()
        h.finish()
        #endif
    }
}
