@_spi(AioInternals) @testable import Aio
import CGLibShim
import Glibc
import Synchronization
import Testing

@Suite("fd handlers")
struct FDHandlerTests {
    @Test("read and write handlers on a socket pair", .blockingLane, arguments: Driver.allCases)
    func readAndWrite(driver: Driver) throws {
        let h = try Harness(driver)
        let pair = SocketPair()
        let received = Counter()
        let writes = Counter()
        // Side a: writable at once; sends one byte and drops its write handler.
        try h.ctx.setHandler(for: pair.a, write: {
            var byte: UInt8 = 42
            precondition(Glibc.write(pair.a, &byte, 1) == 1)
            writes.increment()
            h.ctx.removeHandler(for: pair.a)
        })
        try h.ctx.setHandler(for: pair.b, read: {
            var byte: UInt8 = 0
            if Glibc.read(pair.b, &byte, 1) == 1 && byte == 42 { received.increment() }
        })
        let dog = Watchdog(seconds: 30, "socket pair round trip", state: { h.ctx.debugState },
                           kick: { h.unblock() })
        while received.count == 0 && !dog.hasFired { h.iterate(blocking: true) }
        #expect(!dog.disarm())
        #expect(writes.count == 1)
        #expect(received.count == 1)
        #expect(h.ctx.handlerCount == 1)
        h.ctx.removeHandler(for: pair.b)
        h.drain()
        h.finish()
    }

    @Test("a handler that removes itself gets no further callback", .blockingLane, arguments: Driver.allCases)
    func removeSelf(driver: Driver) throws {
        let h = try Harness(driver)
        let pipe = Pipe()
        let calls = Counter()
        try h.ctx.setHandler(for: pipe.readFD, read: {
            calls.increment()
            h.ctx.removeHandler(for: pipe.readFD)
        })
        pipe.write()
        #expect(h.iterateFindingReadiness())
        h.drain()
        #expect(calls.count == 1, "still readable, but removed: no second call")
        #expect(h.ctx.handlerCount == 0)
        h.finish()
    }

    @Test("a handler that removes another in the same pass stops its callback", .blockingLane, arguments: Driver.allCases)
    func removeOther(driver: Driver) throws {
        let h = try Harness(driver)
        let p1 = Pipe(), p2 = Pipe()
        let calls = Counter()
        // Both are ready in the same pass; whichever runs first removes the
        // other, which must then not run.
        try h.ctx.setHandler(for: p1.readFD, read: {
            calls.increment()
            h.ctx.removeHandler(for: p2.readFD)
            h.ctx.removeHandler(for: p1.readFD)
        })
        try h.ctx.setHandler(for: p2.readFD, read: {
            calls.increment()
            h.ctx.removeHandler(for: p1.readFD)
            h.ctx.removeHandler(for: p2.readFD)
        })
        p1.write()
        p2.write()
        #expect(h.iterateFindingReadiness())
        h.drain()
        #expect(calls.count == 1)
        #expect(h.ctx.handlerCount == 0)
        h.finish()
    }

    @Test("a read callback that removes its handler stops the write callback", .blockingLane, arguments: Driver.allCases)
    func readRemovalStopsWrite(driver: Driver) throws {
        let h = try Harness(driver)
        let pair = SocketPair()
        var byte: UInt8 = 1
        precondition(Glibc.write(pair.b, &byte, 1) == 1)   // a is readable and writable
        let reads = Counter(), writes = Counter()
        try h.ctx.setHandler(for: pair.a, read: {
            reads.increment()
            h.ctx.removeHandler(for: pair.a)
        }, write: {
            writes.increment()
        })
        #expect(h.iterateFindingReadiness())
        h.drain()
        #expect(reads.count == 1)
        #expect(writes.count == 0, "'deleted' is re-checked before each callback")
        h.finish()
    }

    @Test("replacing a handler from another thread while the loop sleeps", .blockingLane, arguments: Driver.allCases)
    func replaceFromAnotherThread(driver: Driver) throws {
        let h = try Harness(driver)
        let pipe = Pipe()
        let oldCalls = Counter(), newCalls = Counter()
        try h.ctx.setHandler(for: pipe.readFD, name: "old", read: { oldCalls.increment(); pipe.drain() })
        let dog = h.watchdog(30, "handler replaced from another thread")
        let other = try NativeThread(name: "replacer") {
            waitForSleeper(h.ctx, .of(driver))  // let the loop fall asleep
            try! h.ctx.setHandler(for: pipe.readFD, name: "new", read: { newCalls.increment(); pipe.drain() })
            usleep(20_000)
            pipe.write()
        }
        while newCalls.count == 0 && !dog.hasFired { h.iterate(blocking: true) }
        other.join()
        #expect(!dog.disarm())
        #expect(newCalls.count == 1)
        #expect(oldCalls.count == 0)
        h.ctx.removeHandler(for: pipe.readFD)
        h.drain()
        h.finish()
    }

    @Test("1,000 registered fds with one ready: only that handler runs", .blockingLane, arguments: Driver.allCases)
    func thousandFDs(driver: Driver) throws {
        raiseDescriptorLimit(to: 4096)
        let h = try Harness(driver)
        let notifiers = try (0..<1000).map { _ in try EventNotifier() }
        let calls = Locked1000()
        for (i, n) in notifiers.enumerated() {
            try h.ctx.setHandler(for: n, read: { e in
                e.testAndClear()
                calls.hit(i)
            })
        }
        #expect(h.ctx.handlerCount == 1000)
        if h.ctx.fdMonitorFallbackReason != nil {
            #expect(h.ctx.fdMonitorKind == .epoll, "without a ring, the native poll switches to epoll at 64 fds")
        }
        notifiers[617].set()
        #expect(h.iterate(blocking: true))
        #expect(calls.hits == [617])
        for n in notifiers { h.ctx.removeHandler(for: n) }
        h.drain()
        h.finish()
    }

    @Test("without io_uring, epoll takes over at 64 registered fds", .blockingLane,
          .enabled(if: getenv("AIO_FDMON") == nil, "AIO_FDMON forces a monitor"))
    func epollThreshold() throws {
        // The automatic choice on a kernel that refuses rings.
        let ctx = try AioContext(name: "threshold", fdMonitor: nil, simulatedRingErrno: ENOSYS)
        let notifiers = try (0..<64).map { _ in try EventNotifier() }
        for n in notifiers.prefix(63) { try ctx.setHandler(for: n, read: { $0.testAndClear() }) }
        #expect(ctx.fdMonitorKind == .poll)
        try ctx.setHandler(for: notifiers[63], read: { $0.testAndClear() })
        #expect(ctx.fdMonitorKind == .epoll)
        // Still works after the switch, including handlers registered before it.
        let fired = Counter()
        try ctx.setHandler(for: notifiers[0], read: { $0.testAndClear(); fired.increment() })
        notifiers[0].set()
        #expect(ctx.poll(blocking: true))
        #expect(fired.count == 1)
        for n in notifiers { ctx.removeHandler(for: n) }
    }

    @Test("a nested poll from inside a handler works", .blockingLane, arguments: Driver.allCases)
    func nestedPollInHandler(driver: Driver) throws {
        let h = try Harness(driver)
        let pipe = Pipe()
        let inner = Counter()
        let bh = h.ctx.makeBottomHalf(name: "inner") { _ in inner.increment() }
        try h.ctx.setHandler(for: pipe.readFD, read: {
            pipe.drain()
            bh.schedule()
            // Nested native poll from inside the handler.
            _ = h.ctx.poll(blocking: true)
        })
        pipe.write()
        #expect(h.iterate(blocking: true))
        #expect(inner.count == 1)
        h.ctx.removeHandler(for: pipe.readFD)
        bh.delete()
        h.drain()
        h.finish()
    }

    // MARK: Bad descriptors

    @Test("negative and closed descriptors are rejected at registration", .blockingLane)
    func badDescriptorsThrow() throws {
        let ctx = try AioContext(name: "bad")
        #expect(throws: AioError.badDescriptor(fd: -1, reason: "negative descriptor")) {
            try ctx.setHandler(for: -1, read: {})
        }
        // The highest descriptor number the process may use: not open (a
        // freshly closed number could be reused by a test running in parallel).
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let fd = Int32(min(limit.rlim_cur, 1 << 20) - 1)
        #expect(fcntl(fd, F_GETFD) == -1)
        #expect(throws: AioError.badDescriptor(fd: fd, reason: "not an open descriptor")) {
            try ctx.setHandler(for: fd, read: {})
        }
        #expect(ctx.handlerCount == 0, "a rejected registration leaves nothing behind")
        let error = AioError.badDescriptor(fd: 7, reason: "not an open descriptor")
        #expect(error.description == "bad file descriptor 7: not an open descriptor")
    }

    /// Runs in a child process: a closed descriptor number is free for any
    /// other test running in parallel to reuse, which would make it valid
    /// again; alone in its process it stays closed.
    /// ppoll reports it at the next poll (POLLNVAL); for every monitor, see
    /// `MonitorTests.closedWhileRegistered`.
    @Test("a descriptor closed behind the loop's back: callbacks once, a warning, no spinning")
    func closedBehindOurBack() async {
        await #expect(processExitsWith: .success) {
            let ctx = try! AioContext(name: "nval", fdMonitor: .poll)
            let log = WarningLog()
            log.capture(ctx)
            let pipe = Pipe()
            let reads = Counter()
            try! ctx.setHandler(for: pipe.readFD, name: "victim", read: { reads.increment() })
            pipe.closeReadEnd()   // POLLNVAL from now on
            precondition(ctx.poll(blocking: false), "the NVAL dispatch is progress")
            precondition(reads.count == 1, "the read callback runs once, as for an error")
            precondition(log.all.count == 1, "one warning")
            precondition(log.all[0].contains("handler 'victim' on fd \(pipe.readFD) reports POLLNVAL"), log.all[0])
            // The fd is no longer polled: blocking polls sleep until the timer
            // instead of returning at once forever.
            let fired = Counter()
            let timer = ctx.makeTimer(name: "bound") { _ in fired.increment() }
            // The clock starts before the timer is armed: a preemption in
            // between must not make the timer look early.
            let start = nowSeconds()
            timer.schedule(after: .milliseconds(30))
            var iterations = 0
            while fired.count == 0 {
                ctx.poll(blocking: true)
                iterations += 1
            }
            precondition(nowSeconds() - start >= 0.029)
            precondition(iterations <= 3, "\(iterations) iterations in 30 ms: the loop is spinning")
            precondition(reads.count == 1)
            ctx.removeHandler(for: pipe.readFD)
        }
    }

    @Test("a handler left registered on a hung-up pipe makes the loop warn", .blockingLane, arguments: Driver.allCases)
    func hangupSpinWarns(driver: Driver) throws {
        let h = try Harness(driver)
        let log = WarningLog()
        log.capture(h.ctx)
        let pipe = Pipe()
        let calls = Counter()
        try h.ctx.setHandler(for: pipe.readFD, name: "eof-ignored", read: { calls.increment() })
        pipe.closeWriteEnd()  // POLLHUP forever; the handler never reads or removes
        for _ in 0..<(AioContext.hangupSpinWarningThreshold + 10) { h.iterate(blocking: false) }
        #expect(calls.count >= AioContext.hangupSpinWarningThreshold)
        #expect(log.all.count == 1, "one warning per streak")
        #expect(log.all.first?.contains("'eof-ignored' on fd \(pipe.readFD) has reported hang-up/error") == true)
        #expect(log.metadata.first?["aio.context"] == .string(h.ctx.name), "the warning names its context in metadata")
        h.ctx.removeHandler(for: pipe.readFD)
        h.drain()
        h.finish()
    }
}

/// Which of 1,000 handlers ran (touched by the loop thread only).
final class Locked1000: @unchecked Sendable {
    private(set) var hits: [Int] = []
    func hit(_ i: Int) { hits.append(i) }
}
