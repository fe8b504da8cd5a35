import Aio
import Testing

/// test-aio.c's `EventNotifierTestData`. Touched only by the loop thread.
final class EventData: @unchecked Sendable {
    let e: EventNotifier
    var n = 0
    var active: Int
    var autoSet: Bool
    init(active: Int = 0, autoSet: Bool = false) {
        e = try! EventNotifier()
        self.active = active
        self.autoSet = autoSet
    }

    /// test-aio.c `event_ready_cb`.
    var callback: @Sendable (EventNotifier) -> Void {
        { [self] notifier in
            let wasSet = notifier.testAndClear()
            precondition(wasSet, "event_ready_cb runs only for a set notifier")
            n += 1
            if active > 0 { active -= 1 }
            if autoSet && active > 0 { notifier.set() }
        }
    }
}

@Suite("Event notifiers as handlers (ported from test-aio.c)", .blockingLane)
struct EventNotifierHandlerTests {
    /// Ports /aio/event/add-remove and /aio-gsource/event/add-remove.
    @Test("adding and removing a clear notifier is not progress", arguments: Driver.allCases)
    func addRemove(driver: Driver) throws {
        let h = try Harness(driver)
        let data = EventData()
        try h.ctx.setHandler(for: data.e, read: data.callback)
        h.drain()
        #expect(!h.iterate(blocking: false))
        #expect(data.n == 0)
        h.ctx.removeHandler(for: data.e)
        h.drain()
        #expect(!h.iterate(blocking: false))
        #expect(data.n == 0)
        h.finish()
    }

    /// Ports /aio/event/wait and /aio-gsource/event/wait.
    @Test("a set notifier runs its handler once", arguments: Driver.allCases)
    func wait(driver: Driver) throws {
        let h = try Harness(driver)
        let data = EventData(active: 1)
        try h.ctx.setHandler(for: data.e, read: data.callback)
        h.drain()
        #expect(data.n == 0)
        #expect(data.active == 1)
        data.e.set()
        #expect(h.iterateFindingReadiness())
        #expect(data.n == 1)
        #expect(data.active == 0)
        h.drain()
        #expect(!h.iterate(blocking: false))
        #expect(data.n == 1)
        h.ctx.removeHandler(for: data.e)
        #expect(!h.iterate(blocking: false) || driver == .gsource)
        h.drain()
        #expect(data.n == 1)
        h.finish()
    }

    /// Ports /aio/event/flush and /aio-gsource/event/flush.
    @Test("an auto-set notifier keeps the loop busy until inactive", arguments: Driver.allCases)
    func flush(driver: Driver) throws {
        let h = try Harness(driver)
        let data = EventData(active: 10, autoSet: true)
        try h.ctx.setHandler(for: data.e, read: data.callback)
        h.drain()
        #expect(data.n == 0)
        #expect(data.active == 10)
        data.e.set()
        #expect(h.iterateFindingReadiness())
        #expect(data.n == 1)
        #expect(data.active == 9)
        #expect(h.iterateFindingReadiness())
        #expect(data.n == 2)
        #expect(data.active == 8)
        while data.active > 0 { h.iterate(blocking: true) }
        #expect(data.n == 10)
        #expect(data.active == 0)
        #expect(!h.iterate(blocking: false))
        h.ctx.removeHandler(for: data.e)
        h.drain()
        #expect(!h.iterate(blocking: false))
        #expect(data.n == 10)
        h.finish()
    }

    /// Ports /aio/event/wait/no-flush-cb and its GSource mirror.
    @Test("a data notifier and a dummy notifier", arguments: Driver.allCases)
    func waitNoFlushCallback(driver: Driver) throws {
        let h = try Harness(driver)
        let data = EventData()
        let dummy = EventData(active: 1)
        try h.ctx.setHandler(for: data.e, read: data.callback)
        #expect(!h.iterate(blocking: false))
        #expect(data.n == 0)
        // With only the data notifier set, a blocking iteration must not block.
        data.e.set()
        let blockedResult = h.iterate(blocking: true)
        if driver == .native { #expect(blockedResult) }
        data.n = 0

        try h.ctx.setHandler(for: dummy.e, read: dummy.callback)
        data.e.set()
        #expect(h.iterateFindingReadiness())
        #expect(data.n == 1)
        #expect(!h.iterate(blocking: false))
        #expect(data.n == 1)

        data.e.set()
        #expect(h.iterateFindingReadiness())
        #expect(data.n == 2)
        #expect(!h.iterate(blocking: false))
        #expect(data.n == 2)

        dummy.e.set()
        while dummy.active > 0 { h.iterate(blocking: true) }
        #expect(data.n == 2)
        #expect(dummy.n == 1)
        #expect(dummy.active == 0)

        h.ctx.removeHandler(for: dummy.e)
        h.ctx.removeHandler(for: data.e)
        h.drain()
        #expect(!h.iterate(blocking: false))
        #expect(data.n == 2)
        h.finish()
    }
}
