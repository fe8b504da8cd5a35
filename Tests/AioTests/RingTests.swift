@_spi(AioInternals) @testable import Aio
import CAioURing
import CGLibShim
import Foundation
import Glibc
import Synchronization
import Testing

/// Every monitor, in every driver configuration.
let monitorMatrix: [(FDMonitorKind, Driver)] = FDMonitorKind.allCases.flatMap { m in Driver.allCases.map { (m, $0) } }

@Suite("fd monitors: io_uring, epoll, poll", .blockingLane)
struct MonitorTests {
    @Test("a forced setup failure falls back, says why once, and the fallback works")
    func ringSetupFailureFallsBack() throws {
        let ctx = try AioContext(name: "no-ring", fdMonitor: nil, simulatedRingErrno: EPERM)
        if getenv("AIO_FDMON") == nil {
            #expect(ctx.fdMonitorKind == .poll)
            let reason = try #require(ctx.fdMonitorFallbackReason)
            #expect(reason.contains("io_uring_setup") && reason.contains("errno \(EPERM)"), "\(reason)")
        }
        #expect(!ctx.hasRing || ctx.fdMonitorKind == .ioUring)
        let pipe = Pipe()
        let hits = Counter()
        try ctx.setHandler(for: pipe.readFD, read: { pipe.drain(); hits.increment() })
        pipe.write()
        #expect(ctx.poll(blocking: true))
        #expect(hits.count == 1)
        ctx.removeHandler(for: pipe.readFD)
        // A forced io_uring that cannot be had throws instead.
        #expect(throws: AioError.system(SystemCallError(call: "io_uring_setup", errno: ENOMEM))) {
            _ = try AioContext(name: "forced", fdMonitor: .ioUring, simulatedRingErrno: ENOMEM)
        }
    }

    @Test("each forced monitor is the one in use", arguments: FDMonitorKind.allCases)
    func forcedMonitor(kind: FDMonitorKind) throws {
        let ctx = try AioContext(name: "forced-\(kind)", fdMonitor: kind)
        #expect(ctx.fdMonitorKind == kind)
        #expect(ctx.hasRing == (kind == .ioUring))
        #expect(ctx.fdMonitorFallbackReason == nil)
    }

    /// Level-triggered: each readiness is seen, on every monitor (io_uring
    /// re-arms its one-shot polls). Fault matrix: AIO_FAULT_URING_NO_REARM.
    @Test("a handler fires for every readiness, round after round", arguments: monitorMatrix)
    func repeatedReadiness(kind: FDMonitorKind, driver: Driver) throws {
        let h = try Harness(driver, name: "rounds-\(kind)", monitor: kind)
        let pipe = Pipe()
        let reads = Counter()
        try h.ctx.setHandler(for: pipe.readFD, read: { pipe.drain(); reads.increment() })
        let rounds = 3
        let dog = h.watchdog(30, "\(rounds) rounds of readiness")
        for round in 1...rounds {
            pipe.write()
            while reads.count < round && !dog.hasFired { h.iterate(blocking: true) }
        }
        _ = dog.disarm()
        #expect(reads.count == rounds, "the handler fired \(reads.count) of \(rounds) times")
        h.ctx.removeHandler(for: pipe.readFD)
        h.drain()
        h.finish()
    }

    /// GLib polls the monitor's shared fd (epoll's, the ring's) only from the
    /// monitor's first use on: the first handler adds it at registration,
    /// the first ring operation at the next prepare (its notify makes one).
    /// Both are made here while the loop sleeps with the monitor unused.
    @Test("the monitor's first use, made while the loop sleeps, is served", arguments: monitorMatrix)
    func firstUseWhileAsleep(kind: FDMonitorKind, driver: Driver) throws {
        func waitFor(_ counter: Counter, _ what: String) {
            let deadline = nowSeconds() + 30
            while counter.count == 0 && nowSeconds() < deadline { usleep(1_000) }
            #expect(counter.count > 0, "\(what) was not served within 30 s (\(kind), \(driver))")
        }
        do {
            let loop = try LoopThread(driver, name: "first-handler", monitor: kind)
            usleep(30_000)  // the loop sleeps
            let pipe = Pipe()
            let fired = Counter()
            try loop.ctx.setHandler(for: pipe.readFD, read: { pipe.drain(); fired.increment() })
            usleep(10_000)
            pipe.write()
            waitFor(fired, "the first handler's readiness")
            loop.ctx.removeHandler(for: pipe.readFD)
            loop.stop()
        }
        if kind == .ioUring {
            let loop = try LoopThread(driver, name: "first-operation", monitor: kind)
            usleep(30_000)
            let done = Counter()
            try loop.ctx.submit({ aio_uring_prep_nop(&$0) }) { _ in done.increment() }
            waitFor(done, "the first ring operation's completion")
            loop.stop()
        }
    }

    @Test("a handler removed while its poll is in flight never runs", arguments: monitorMatrix)
    func removeWhileInFlight(kind: FDMonitorKind, driver: Driver) throws {
        let h = try Harness(driver, name: "remove-in-flight", monitor: kind)
        let pipes = (0..<8).map { _ in Pipe() }
        let removed = Atomic<Bool>(false)
        let lateCalls = Counter()
        for p in pipes {
            try h.ctx.setHandler(for: p.readFD, read: { if removed.load(ordering: .acquiring) { lateCalls.increment() }; p.drain() })
        }
        h.drain()  // every poll armed
        for p in pipes { p.write() }  // readiness is in flight now
        for p in pipes { h.ctx.removeHandler(for: p.readFD) }
        removed.store(true, ordering: .releasing)
        for _ in 0..<5 { _ = h.iterate(blocking: false) }
        #expect(lateCalls.count == 0)
        #expect(h.ctx.handlerCount == 0)
        // The descriptors are free: closing them releases the files (no
        // poll left holding them).
        h.drain()
        h.finish()
    }

    @Test("fd closed while registered: detected, callbacks once, removable, no spinning",
          arguments: monitorMatrix)
    func closedWhileRegistered(kind: FDMonitorKind, driver: Driver) throws {
        for otherReference in [false, true] {
            for count in [1, 100] {
                try closedCase(kind: kind, driver: driver, otherReference: otherReference, count: count)
            }
        }
    }

    private func closedCase(kind: FDMonitorKind, driver: Driver, otherReference: Bool, count: Int) throws {
        raiseDescriptorLimit(to: 4096)
        let h = try Harness(driver, name: "closed-\(kind)-\(count)", monitor: kind)
        let warningLog = WarningLog()
        warningLog.capture(h.ctx)
        let pipes = (0..<count).map { _ in Pipe() }
        let victim = pipes[count / 2]
        let victimCalls = Counter()
        raiseDescriptorLimit(to: 4096)
        for p in pipes where p !== victim {
            try h.ctx.setHandler(for: p.readFD, read: { p.drain() })
        }
        // The victim's number is high, so that the other tests (which run in
        // parallel) do not reuse it the moment it is closed: the lowest free
        // number is what open(2) hands out.
        let closedFD = fcntl(victim.readFD, F_DUPFD_CLOEXEC, Int32(2000 + Int.random(in: 0..<1000)))
        try #require(closedFD >= 2000)
        try h.ctx.setHandler(for: closedFD, read: { victimCalls.increment() })
        h.drain()
        // A second reference to the file keeps epoll's registration alive
        // after the number is closed; the data makes it report forever.
        let dup = otherReference ? Glibc.dup(closedFD) : -1
        victim.write()
        close(closedFD)
        let dog = h.watchdog(10, "closed fd detected (\(kind), \(count) fds, other reference \(otherReference))")
        while warningLog.all.count == 0 && !dog.hasFired {
            h.iterate(blocking: true)
        }
        #expect(!dog.disarm(), "never detected")
        #expect(warningLog.all.count == 1)
        let callsAtDetection = victimCalls.count
        #expect(callsAtDetection >= 1)
        // Still registered (removable), no longer polled: the loop sleeps.
        #expect(h.ctx.handlerCount == count)
        let before = h.ctx.statistics.iterations
        let start = monotonicNowNs()
        while monotonicNowNs() - start < 50_000_000 { _ = h.iterate(blocking: false) ; usleep(1000) }
        #expect(victimCalls.count == callsAtDetection, "callbacks of a closed fd ran again")
        _ = before
        h.ctx.removeHandler(for: closedFD)
        #expect(h.ctx.handlerCount == count - 1)
        // After removal nothing reports the stale file: a blocking poll with
        // nothing to do sleeps (it is woken by a notify from a thread).
        // Polls until the waker's notify (announced before it is made), so
        // no blocking poll comes after the only wake-up.
        let notifying = Counter()
        let waker = try NativeThread(name: "waker") {
            usleep(100_000)
            notifying.increment()
            h.ctx.notify()
            h.unblock()
        }
        let sleepDog = h.watchdog(20, "a blocking poll woken by a notify after the removal")
        repeat { h.iterate(blocking: true) } while notifying.count == 0 && !sleepDog.hasFired
        #expect(!sleepDog.disarm())
        waker.join()
        #expect(victimCalls.count == callsAtDetection)
        if dup >= 0 { close(dup) }
        for p in pipes where p !== victim { h.ctx.removeHandler(for: p.readFD) }
        h.drain()
        h.finish()
    }
}

@Suite("io_uring submissions")
struct RingSubmissionTests {
    @Test("a no-op's completion runs on the loop, from any thread, native and GLib", .blockingLane,
          arguments: Driver.allCases)
    func nop(driver: Driver) throws {
        let h = try Harness(driver, name: "nop", monitor: .ioUring)
        let done = Counter()
        let onDriver = Atomic<Bool>(true)
        let other = try NativeThread(name: "submitter") {
            for _ in 0..<100 {
                try! h.ctx.submit({ aio_uring_prep_nop(&$0) }) { c in
                    if c.result != 0 || !h.isDriver(currentThreadID()) { onDriver.store(false, ordering: .relaxed) }
                    done.increment()
                }
            }
        }
        let dog = h.watchdog(10, "100 no-op completions")
        while done.count < 100 && !dog.hasFired { h.iterate(blocking: true) }
        other.join()
        #expect(!dog.disarm())
        #expect(done.count == 100)
        let allOnDriver = onDriver.load(ordering: .relaxed)
        #expect(allOnDriver, "a completion ran off the loop or failed")
        h.finish()
    }

    @Test("a full submission queue is submitted and retried: nothing is dropped", .blockingLane)
    func ringFull() throws {
        let ctx = try AioContext(name: "full", fdMonitor: .ioUring)
        let n = Int(Ring.submissionEntries) * 8 + 3
        let done = Counter()
        // From the loop's own thread: entries are deferred, so the queue fills.
        ctx.acquire()
        for _ in 0..<n {
            try ctx.submit({ aio_uring_prep_nop(&$0) }) { _ in done.increment() }
        }
        ctx.release()
        let deadline = monotonicNowNs() + 10_000_000_000
        while done.count < n && monotonicNowNs() < deadline { ctx.poll(blocking: true) }
        #expect(done.count == n)
    }

    @Test("cancellation goes through IORING_OP_ASYNC_CANCEL", .timeLimit(.minutes(1)))
    func cancelRead() async throws {
        let loop = try IOThread(name: "cancel", fdMonitor: .ioUring)
        try loop.start()
        defer { loop.stop(); loop.join() }
        let ctx = loop.context
        let pipe = Pipe()  // empty: a read waits
        let task = Task {
            try await ctx.read(from: pipe.readFD, count: 16, at: 0)
        }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        // Bounded: if the cancel did not reach the kernel, a byte after 30 s
        // ends the read, and the expectation fails instead of hanging.
        let finished = TestEvent()
        let rescue = try NativeThread(name: "rescue") {
            if !finished.wait(seconds: 30) { pipe.write() }
        }
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        finished.signal()
        rescue.join()
    }

    @Test("a multishot operation gets one callback per completion, and is released after the last", .blockingLane)
    func multishot() throws {
        let ctx = try AioContext(name: "multishot", fdMonitor: .ioUring)
        let notifier = try EventNotifier()
        let completions = Locked<[RingCompletion]>([])
        let request = try ctx.submit({ sqe in
            aio_uring_prep_poll_add(&sqe, notifier.fd, UInt32(POLLIN))
            sqe.len = IORING_POLL_ADD_MULTI
        }) { c in
            completions.withLock { $0.append(c) }
            notifier.testAndClear()
        }
        var deadline = monotonicNowNs() + 10_000_000_000
        for round in 1...3 {
            notifier.set()
            while completions.withLock({ $0.count }) < round && monotonicNowNs() < deadline { ctx.poll(blocking: true) }
        }
        let more = completions.withLock { $0.allSatisfy { $0.flags & Ring.moreFlag != 0 } }
        #expect(completions.withLock { $0.count } == 3)
        #expect(more, "each completion but the last has IORING_CQE_F_MORE")
        request.cancel()
        deadline = monotonicNowNs() + 10_000_000_000
        while ctx.handlers.ring!.operationsInFlight.load(ordering: .relaxed) > 0 && monotonicNowNs() < deadline {
            ctx.poll(blocking: true)
        }
        let last = completions.withLock { $0.last! }
        #expect(last.flags & Ring.moreFlag == 0 && last.result == -ECANCELED, "\(last)")
    }

    @Test("links and skipped success completions are refused: every entry completes", .blockingLane)
    func forbiddenFlags() throws {
        let ctx = try AioContext(name: "flags", fdMonitor: .ioUring)
        let done = Counter()
        for flags: UInt8 in [1 << 2, 1 << 3, 1 << 6] {
            try ctx.submit({ sqe in
                aio_uring_prep_nop(&sqe)
                sqe.flags = flags
            }) { c in if c.result == 0 { done.increment() } }
        }
        let deadline = monotonicNowNs() + 10_000_000_000
        while done.count < 3 && monotonicNowNs() < deadline { ctx.poll(blocking: true) }
        #expect(done.count == 3)
    }

    @Test("a callback that submits and then waits in a nested poll gets its completion", .blockingLane,
          arguments: Driver.allCases)
    func submitThenWait(driver: Driver) throws {
        let h = try Harness(driver, name: "submit-wait", monitor: .ioUring)
        let finished = Counter()
        let dog = h.watchdog(10, "nested wait for a submission")
        h.ctx.scheduleOneshot(name: "submitter") {
            let done = Atomic<Bool>(false)
            try! h.ctx.submit({ aio_uring_prep_nop(&$0) }) { _ in done.store(true, ordering: .releasing) }
            h.ctx.waitWhile { !done.load(ordering: .acquiring) && !dog.hasFired }
            finished.increment()
        }
        while finished.count == 0 && !dog.hasFired { h.iterate(blocking: true) }
        #expect(!dog.disarm())
        h.finish()
    }

    @Test("handlers are dispatched under GLib while a BH keeps the context busy", .blockingLane,
          arguments: FDMonitorKind.allCases)
    func handlersNotStarvedUnderGLib(kind: FDMonitorKind) throws {
        let h = try Harness(.gsource, name: "starve-\(kind)", monitor: kind)
        let busy = h.ctx.makeBottomHalf(name: "busy") { $0.schedule() }
        busy.schedule()
        let pipe = Pipe()
        let reads = Counter()
        try h.ctx.setHandler(for: pipe.readFD, read: { pipe.drain(); reads.increment() })
        pipe.write()
        let dog = h.watchdog(10, "handler dispatched while a BH re-schedules itself")
        while reads.count == 0 && !dog.hasFired { h.iterate(blocking: true) }
        #expect(!dog.disarm())
        busy.delete()
        h.ctx.removeHandler(for: pipe.readFD)
        h.drain()
        h.finish()
    }

    /// Signals interrupt the waits (ppoll returns EINTR; io_uring_enter too):
    /// nothing is lost, nothing traps. A no-op SIGUSR1 handler without
    /// SA_RESTART, sent to the loop thread every 50 µs.
    @Test("signals (EINTR) during waits and submissions lose nothing", .blockingLane, arguments: FDMonitorKind.allCases)
    func interruptedWaits(kind: FDMonitorKind) throws {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        var previous = sigaction()
        sigaction(SIGUSR1, &action, &previous)
        defer { sigaction(SIGUSR1, &previous, nil) }
        let ctx = try AioContext(name: "eintr-\(kind)", fdMonitor: kind)
        let pipe = Pipe()
        let reads = Counter()
        try ctx.setHandler(for: pipe.readFD, read: { pipe.drain(); reads.increment() })
        let completions = Counter()
        let target = pthread_self()
        let stop = Atomic<Bool>(false)
        let signaller = try NativeThread(name: "signaller") {
            while !stop.load(ordering: .relaxed) {
                pthread_kill(target, SIGUSR1)
                usleep(50)
            }
        }
        let rounds = 100
        let deadline = monotonicNowNs() + 20_000_000_000
        // Each readiness (and submission) comes from another thread 300 µs
        // after the last was handled: the loop is asleep, signals land in
        // its waits.
        let writer = try NativeThread(name: "writer") {
            for round in 1...rounds {
                while reads.count < round - 1 && monotonicNowNs() < deadline { usleep(50) }
                usleep(300)
                pipe.write()
                if kind == .ioUring {
                    try! ctx.submit({ aio_uring_prep_nop(&$0) }) { _ in completions.increment() }
                }
            }
        }
        while (reads.count < rounds || (kind == .ioUring && completions.count < rounds))
                && monotonicNowNs() < deadline {
            ctx.poll(blocking: true)
        }
        writer.join()
        stop.store(true, ordering: .relaxed)
        signaller.join()
        #expect(reads.count == rounds)
        if kind == .ioUring { #expect(completions.count == rounds) }
        ctx.removeHandler(for: pipe.readFD)
    }

    /// A BH waits (a nested poll lets go of ownership for its sleep); another
    /// thread takes ownership meanwhile and submits: that thread is not
    /// inside a dispatch pass, so it must wake a poller to hand the entry
    /// over (the sleeping pass's depth is not its own).
    @Test("a submission from a thread that took ownership while a pass sleeps is handed over", .blockingLane)
    func submitWhileAPassSleeps() throws {
        let h = try Harness(.native, name: "pass-sleeps", monitor: .ioUring)
        let done = Atomic<Bool>(false)
        let waiting = TestEvent()
        let finished = Counter()
        let dog = h.watchdog(30, "completion of an entry submitted while a pass sleeps")
        h.ctx.scheduleOneshot(name: "waiter") {
            waiting.signal()
            h.ctx.waitWhile { !done.load(ordering: .acquiring) && !dog.hasFired }
            finished.increment()
        }
        let other = try NativeThread(name: "submitter") {
            _ = waiting.wait(seconds: 30)
            waitForSleeper(h.ctx, .native)  // the BH's nested poll is asleep
            h.ctx.acquire()
            try! h.ctx.submit({ aio_uring_prep_nop(&$0) }) { _ in done.store(true, ordering: .releasing) }
            h.ctx.release()
        }
        while finished.count == 0 && !dog.hasFired { h.iterate(blocking: true) }
        other.join()
        #expect(!dog.disarm(), "the entry was never handed to the kernel")
        h.finish()
    }

    /// The kernel cancels a thread's pending requests when it exits. A
    /// removal on a short-lived thread hands the queue (with a caller's
    /// pending pipe read) to the kernel from that thread; the read must not
    /// come back cancelled.
    @Test("an entry handed over by a thread that exits is not lost", .blockingLane)
    func submitterThreadExits() throws {
        let ctx = try AioContext(name: "exiting-submitter", fdMonitor: .ioUring)
        let other = Pipe()
        try ctx.setHandler(for: other.readFD, read: { other.drain() })
        ctx.poll(blocking: false)  // arms the handler's poll
        let pipe = Pipe()  // empty: the read waits
        let result = Locked<Result<[UInt8], AioError>?>(nil)
        try ctx.read(from: pipe.readFD, count: 1, at: 0) { r in result.withLock { $0 = r } }
        let remover = try NativeThread(name: "short-lived") { ctx.removeHandler(for: other.readFD) }
        remover.join()
        usleep(20_000)
        pipe.write(42)
        let deadline = monotonicNowNs() + 10_000_000_000
        while result.withLock({ $0 == nil }) && monotonicNowNs() < deadline { ctx.poll(blocking: true) }
        let got = result.withLock { $0 }
        #expect(got.flatMap { try? $0.get() } == [42], "\(String(describing: got))")
        print("resubmissions after the submitter exited: \(ctx.handlers.ring!.resubmissions.load(ordering: .relaxed))")
    }

    @Test("without a ring, submit throws a clear error", .blockingLane)
    func noRing() throws {
        let ctx = try AioContext(name: "poll-only", fdMonitor: .poll)
        #expect(throws: AioError.noRing(context: "poll-only")) {
            try ctx.submit({ aio_uring_prep_nop(&$0) }) { _ in }
        }
    }
}

@Suite("file I/O")
struct FileIOTests {
    static func scratchFile(size: Int) throws -> (fd: Int32, bytes: [UInt8], path: String) {
        let path = "/tmp/aio-file-io-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        precondition(fd >= 0)
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
        precondition(bytes.withUnsafeBytes { Glibc.pwrite(fd, $0.baseAddress, size, 0) } == size)
        return (fd, bytes, path)
    }

    @Test("reads and writes at random offsets equal pread/pwrite; short reads at the end", .timeLimit(.minutes(1)),
          arguments: [FDMonitorKind.ioUring, .epoll])
    func randomOffsets(kind: FDMonitorKind) async throws {
        let loop = try IOThread(name: "file-\(kind)", fdMonitor: kind)
        try loop.start()
        defer { loop.stop(); loop.join() }
        let ctx = loop.context
        #expect(ctx.hasRing == (kind == .ioUring))
        let size = 256 * 1024
        let file = try Self.scratchFile(size: size)
        defer { close(file.fd); unlink(file.path) }
        for _ in 0..<200 {
            let offset = Int.random(in: 0..<size)
            let count = Int.random(in: 1...8192)
            let got = try await ctx.read(from: file.fd, count: count, at: Int64(offset))
            let end = min(offset + count, size)
            #expect(got == Array(file.bytes[offset..<end]))
        }
        #expect(try await ctx.read(from: file.fd, count: 100, at: Int64(size)) == [])
        #expect(try await ctx.read(from: file.fd, count: 100, at: Int64(size - 10)).count == 10)
        let patch: [UInt8] = [1, 2, 3, 4, 5]
        #expect(try await ctx.write(to: file.fd, patch, at: 1000) == 5)
        var check = [UInt8](repeating: 0, count: 5)
        #expect(check.withUnsafeMutableBytes { Glibc.pread(file.fd, $0.baseAddress, 5, 1000) } == 5)
        #expect(check == patch)
        try await ctx.fsync(file.fd)
        try await ctx.fsync(file.fd, dataOnly: true)
    }

    @Test("errors are the same through the ring and the pool", .timeLimit(.minutes(1)), arguments: [FDMonitorKind.ioUring, .epoll])
    func errors(kind: FDMonitorKind) async throws {
        let loop = try IOThread(name: "file-errors-\(kind)", fdMonitor: kind)
        try loop.start()
        defer { loop.stop(); loop.join() }
        let ctx = loop.context
        let path = "/tmp/aio-file-ro-\(getpid())-\(kind)"
        let fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(fd); unlink(path) }
        // Read-only descriptor: EBADF from pwrite.
        await #expect(throws: AioError.system(SystemCallError(call: "pwrite", errno: EBADF))) {
            _ = try await ctx.write(to: fd, [1, 2, 3], at: 0)
        }
        // A descriptor number that is not open. Not one just closed: tests
        // run in parallel, and another test's pipe may take that number
        // between the close and the read (seen in CI: ESPIPE). No process
        // can hold a descriptor at or above fs.nr_open (at most 2^30 - 64).
        let neverOpen: Int32 = Int32.max - 1
        await #expect(throws: AioError.system(SystemCallError(call: "pread", errno: EBADF))) {
            _ = try await ctx.read(from: neverOpen, count: 4, at: 0)
        }
        // Rejected before submission.
        await #expect(throws: AioError.badDescriptor(fd: -1, reason: "negative descriptor")) {
            _ = try await ctx.read(from: -1, count: 4, at: 0)
        }
        await #expect(throws: AioError.invalidArgument("offset -1 is negative")) {
            _ = try await ctx.read(from: fd, count: 4, at: -1)
        }
        #expect(throws: AioError.invalidArgument("count \(Int(Int32.max) + 1) is outside 0...\(Int32.max)")) {
            try ctx.read(from: fd, count: Int(Int32.max) + 1, at: 0) { _ in }
        }
        // A directory: EISDIR.
        let dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(dir) }
        await #expect(throws: AioError.system(SystemCallError(call: "pread", errno: EISDIR))) {
            _ = try await ctx.read(from: dir, count: 4, at: 0)
        }
    }

    @Test("callback forms deliver on the context's thread", .blockingLane, arguments: [FDMonitorKind.ioUring, .epoll])
    func callbacks(kind: FDMonitorKind) throws {
        let ctx = try AioContext(name: "file-cb-\(kind)", fdMonitor: kind)
        let file = try Self.scratchFile(size: 4096)
        defer { close(file.fd); unlink(file.path) }
        let results = Locked<[String]>([])
        let home = currentThreadID()
        try ctx.read(from: file.fd, count: 10, at: 5) { r in
            results.withLock { $0.append(currentThreadID() == home && (try? r.get()) == Array(file.bytes[5..<15]) ? "read" : "bad read") }
        }
        try ctx.write(to: file.fd, [9, 9], at: 0) { r in
            results.withLock { $0.append(currentThreadID() == home && (try? r.get()) == 2 ? "write" : "bad write") }
        }
        try ctx.fsync(file.fd) { r in
            results.withLock { $0.append((try? r.get()) != nil ? "fsync" : "bad fsync") }
        }
        let dog = Watchdog(seconds: 30, "three file callbacks (\(kind))", state: { ctx.debugState }, kick: { ctx.notify() })
        while results.withLock({ $0.count }) < 3 && !dog.hasFired { ctx.poll(blocking: true) }
        #expect(!dog.disarm())
        #expect(results.withLock { $0.sorted() } == ["fsync", "read", "write"])
        if kind != .ioUring { ctx.threadPool.shutdown() }
    }
}
