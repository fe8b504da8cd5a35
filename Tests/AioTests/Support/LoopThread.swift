@_spi(AioInternals) @testable import Aio
import CGLibShim
import Glibc
import Synchronization

/// A harness whose loop runs on its own thread until stopped: natively
/// (blocking polls, the thread being the context's home thread) or through
/// GLib (blocking `g_main_context_iteration` of the harness's private
/// GMainContext). For async tests, whose own thread belongs to the
/// cooperative pool and must not block.
final class LoopThread: @unchecked Sendable {
    // @unchecked Sendable: `thread` is written in init only; the rest is
    // immutable or atomic.
    let harness: Harness
    var ctx: AioContext { harness.ctx }
    private let state = LoopState()
    private let started = TestEvent()
    private var thread: NativeThread?

    /// `alternateNative`: in GSource mode, alternate GLib iterations with
    /// native blocking polls on the same thread.
    init(_ driver: Driver, name: String = "loop", alternateNative: Bool = false,
         monitor: FDMonitorKind? = nil) throws {
        harness = try Harness(driver, name: name, holdsOwnership: false, monitor: monitor)
        let harness = self.harness
        let state = self.state
        let started = self.started
        thread = try NativeThread(name: name) {
            if harness.driver != .gsource || alternateNative { harness.ctx.setHomeThread() }
            state.threadID.store(currentThreadID(), ordering: .releasing)
            started.signal()
            var native = false
            while !state.stopping.load(ordering: .acquiring) {
                if native {
                    harness.ctx.poll(blocking: true)
                } else {
                    harness.iterate(blocking: true)
                }
                if alternateNative { native.toggle() }
            }
        }
        precondition(started.wait(seconds: 10), "loop thread did not start")
    }

    /// The loop thread's id (`currentThreadID()`).
    var loopThreadID: UInt { state.threadID.load(ordering: .acquiring) }

    /// Whether `thread` drives the context: the loop thread, or in `.both`
    /// also the harness's GLib thread.
    func isDriver(_ thread: UInt) -> Bool { harness.isDriver(thread, native: loopThreadID) }

    /// Whether the caller runs on the loop thread.
    var isLoopThread: Bool { currentThreadID() == loopThreadID }

    /// Stops the loop thread (waking it), joins it and releases the
    /// harness's GMainContext.
    func stop() {
        state.stopping.store(true, ordering: .releasing)
        harness.unblock()
        thread?.join()
        // One more pass on this thread: what the loop thread left for the
        // next poll (e.g. a handler removed just before the stop) is let go.
        _ = harness.ctx.poll(blocking: false)
        harness.finish()
    }
}

final class LoopState: Sendable {
    let stopping = Atomic<Bool>(false)
    let threadID = Atomic<UInt>(0)
}

/// Records values from whichever thread runs a callback; the test reads them
/// after a synchronising event. Protected by a lock.
final class Recorder<Value: Sendable>: Sendable {
    private let values = Locked<[Value]>([])
    func append(_ value: Value) { values.withLock { $0.append(value) } }
    var all: [Value] { values.withLock { $0 } }
}
