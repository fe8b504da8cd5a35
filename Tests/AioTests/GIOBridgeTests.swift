@_spi(AioInternals) @testable import Aio
@testable import AioGIO
import CGIOShim
import Glibc
import Synchronization
import Testing

/// GIOAsync.call: GIO _async/_finish pairs as Swift async calls. Each test
/// iterates a private GMainContext on a thread of its own (Swift Testing runs
/// tests on pool threads, which must not block), and the suite is serialized
/// so that the count of live calls (every one must be freed) is its own.
@Suite("GIOBridge", .serialized)
struct GIOBridgeTests {
    // MARK: Success and GError

    @Test("a GFile read returns the file's bytes, and finish runs on the thread iterating the context",
          .timeLimit(.minutes(1)))
    func fileReadReturnsBytes() async throws {
        let baseline = liveCalls()
        let file = try TemporaryFile(bytes: (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        let loop = try GLibLoopThread(name: "gio-success")
        defer { loop.stop() }
        let finishThread = ThreadIDBox()
        let gfile = GFileRef(path: file.path)
        defer { gfile.release() }

        let bytes = try await GIOAsync.call(on: loop.context.raw) { cancellable, callback, userData in
            g_file_load_contents_async(gfile.raw, cancellable, callback, userData)
        } finish: { result, error in
            finishThread.value.store(currentThreadID(), ordering: .relaxed)
            return loadedContents(gfile.raw, result, error)
        }

        #expect(bytes == file.bytes)
        #expect(finishThread.value.load(ordering: .relaxed) == loop.threadID,
                "finish must run on the thread that iterates the call's GMainContext")
        #expect(await settles(to: baseline), "every call object is freed")
    }

    @Test("the README's snippet: closures capture a local GFile pointer directly", .timeLimit(.minutes(1)))
    func readmeSnippet() async throws {
        let source = try TemporaryFile(bytes: Array("snippet\n".utf8))
        let loop = try GLibLoopThread(name: "gio-readme")
        defer { loop.stop() }
        let mainContext = loop.context.raw
        let path = source.path

        let file = g_file_new_for_path(path)!
        let bytes = try await GIOAsync.call(on: mainContext) { cancellable, callback, userData in
            g_file_load_contents_async(file, cancellable, callback, userData)
        } finish: { result, error in
            var contents: UnsafeMutablePointer<CChar>?, length: gsize = 0
            guard g_file_load_contents_finish(file, result, &contents, &length, nil, error) != 0 else { return [UInt8]() }
            defer { g_free(contents) }
            return Array(UnsafeRawBufferPointer(start: contents, count: Int(length)))
        }
        g_object_unref(UnsafeMutableRawPointer(file))
        #expect(bytes == source.bytes)
    }

    @Test("a missing file throws GLibError with G_IO_ERROR's domain, NOT_FOUND and a message naming the path",
          .timeLimit(.minutes(1)))
    func missingFileThrowsGIOError() async throws {
        let baseline = liveCalls()
        let loop = try GLibLoopThread(name: "gio-gerror")
        defer { loop.stop() }
        let path = "/nonexistent-\(getpid())/no-such-file.txt"
        let gfile = GFileRef(path: path)
        defer { gfile.release() }

        do {
            let bytes = try await GIOAsync.call(on: loop.context.raw) { cancellable, callback, userData in
                g_file_load_contents_async(gfile.raw, cancellable, callback, userData)
            } finish: { result, error in
                loadedContents(gfile.raw, result, error)
            }
            Issue.record("expected GLibError, got \(bytes.count) bytes")
        } catch let error as GLibError {
            #expect(error.domain == "g-io-error-quark")
            #expect(error.domain == GLibError.ioErrorDomain)
            #expect(error.code == Int32(G_IO_ERROR_NOT_FOUND.rawValue))
            #expect(error.isIOError(G_IO_ERROR_NOT_FOUND))
            #expect(error.message.contains(path), "message: \(error.message)")
            #expect(error.description.hasPrefix("g-io-error-quark \(G_IO_ERROR_NOT_FOUND.rawValue): "))
        }
        #expect(await settles(to: baseline))
    }

    @Test("a Swift error thrown by finish is thrown by the call", .timeLimit(.minutes(1)))
    func finishMayThrow() async throws {
        struct Rejected: Error {}
        let baseline = liveCalls()
        let file = try TemporaryFile(bytes: Array("hello".utf8))
        let loop = try GLibLoopThread(name: "gio-throw")
        defer { loop.stop() }
        let gfile = GFileRef(path: file.path)
        defer { gfile.release() }

        await #expect(throws: Rejected.self) {
            try await GIOAsync.call(on: loop.context.raw) { cancellable, callback, userData in
                g_file_load_contents_async(gfile.raw, cancellable, callback, userData)
            } finish: { result, error -> [UInt8] in
                _ = loadedContents(gfile.raw, result, error)
                throw Rejected()
            }
        }
        #expect(await settles(to: baseline))
    }

    // MARK: Cancellation

    @Test("a task cancelled before the call throws CancellationError and never runs start",
          .timeLimit(.minutes(1)))
    func cancelledBeforeTheCall() async throws {
        let baseline = liveCalls()
        let loop = try GLibLoopThread(name: "gio-cancel-before")
        defer { loop.stop() }
        let started = TestEventFlag()
        let context = loop.context

        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await GIOAsync.call(on: context.raw) { _, _, _ in
                started.set()
            } finish: { _, _ in () }
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(!started.isSet, "start must not run for a task cancelled before the call")
        #expect(await settles(to: baseline))
    }

    @Test("cancelling while start waits for the context's busy thread throws at once; start never runs",
          .timeLimit(.minutes(1)))
    func cancelledWhileWaitingForTheContextThread() async throws {
        let baseline = liveCalls()
        let loop = try GLibLoopThread(name: "gio-cancel-wait")
        defer { loop.stop() }
        // Keep the loop thread inside a dispatch: it owns the context, so the
        // call cannot start on the test's thread and must wait for it.
        let busy = TestEvent()
        let release = TestEvent()
        loop.run {
            busy.signal()
            _ = release.wait(seconds: 30)
        }
        #expect(busy.wait(seconds: 10))
        let started = TestEventFlag()
        let context = loop.context
        let task = Task {
            try await GIOAsync.call(on: context.raw) { _, _, _ in
                started.set()
            } finish: { _, _ in () }
        }
        try await Task.sleep(for: .milliseconds(50))  // the call has queued its start
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        release.signal()
        // The queued start runs now, sees the call is over, and lets it go.
        #expect(await settles(to: baseline))
        #expect(!started.isSet, "start must not run once the call was cancelled")
    }

    @Test("cancelling during a read that only cancellation can end throws CancellationError",
          .timeLimit(.minutes(1)))
    func cancelledDuringTheCall() async throws {
        let baseline = liveCalls()
        let loop = try GLibLoopThread(name: "gio-cancel-during")
        defer { loop.stop() }
        let quiet = try QuietSocketStream()  // nobody ever writes to it
        defer { quiet.release() }
        let buffer = ReadBuffer(count: 64)
        let started = TestEventFlag()
        let context = loop.context

        let task = Task {
            try await GIOAsync.call(on: context.raw) { cancellable, callback, userData in
                g_input_stream_read_async(quiet.input, buffer.pointer, gsize(buffer.count),
                                          G_PRIORITY_DEFAULT, cancellable, callback, userData)
                started.set()
            } finish: { result, error in
                g_input_stream_read_finish(quiet.input, result, error)
            }
        }
        #expect(await eventually { started.isSet }, "the read did not start")
        try await Task.sleep(for: .milliseconds(20))  // the read is really waiting
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        #expect(await settles(to: baseline))
    }

    @Test("a GIO error CANCELLED without a cancelled task stays a GLibError", .timeLimit(.minutes(1)))
    func cancelledByOthersIsAGIOError() async throws {
        let loop = try GLibLoopThread(name: "gio-cancel-other")
        defer { loop.stop() }
        let quiet = try QuietSocketStream()
        defer { quiet.release() }
        let buffer = ReadBuffer(count: 64)
        // A cancellable of our own, cancelled up front: GIO reports CANCELLED
        // although the task was never cancelled.
        let own = CancellableRef()
        defer { own.release() }
        own.cancel()

        do {
            _ = try await GIOAsync.call(on: loop.context.raw) { _, callback, userData in
                g_input_stream_read_async(quiet.input, buffer.pointer, gsize(buffer.count),
                                          G_PRIORITY_DEFAULT, own.raw, callback, userData)
            } finish: { result, error in
                g_input_stream_read_finish(quiet.input, result, error)
            }
            Issue.record("expected G_IO_ERROR_CANCELLED")
        } catch let error as GLibError {
            #expect(error.isIOError(G_IO_ERROR_CANCELLED), "\(error)")
        }
    }

    // MARK: Contexts nobody iterates, and timeouts

    @Test("a call whose context nobody iterates throws GIOTimeoutError in bounded time; the late callback frees the call",
          .timeLimit(.minutes(1)))
    func contextNotIterated() async throws {
        let baseline = liveCalls()
        let file = try TemporaryFile(bytes: Array("never delivered\n".utf8))
        let context = MainContextRef(raw: g_main_context_new())
        defer { g_main_context_unref(context.raw) }
        let gfile = GFileRef(path: file.path)
        defer { gfile.release() }
        let trackerGone = TestEventFlag()
        let finished = TestEventFlag()
        let finishThread = ThreadIDBox()

        let began = nowSeconds()
        do {
            let bytes = try await GIOAsync.call(on: context.raw, timeout: .milliseconds(300)) { cancellable, callback, userData in
                g_file_load_contents_async(gfile.raw, cancellable, callback, userData)
            } finish: { [tracker = DeinitTracker(trackerGone)] result, error in
                _ = tracker
                finishThread.value.store(currentThreadID(), ordering: .relaxed)
                finished.set()
                return loadedContents(gfile.raw, result, error)
            }
            Issue.record("expected GIOTimeoutError, got \(bytes.count) bytes")
        } catch let error as GIOTimeoutError {
            #expect(!error.contextWasOwned, "nobody iterates the context")
            #expect(error.started, "a context nobody owns lets the call start on the caller's thread")
            #expect(error.timeout == .milliseconds(300))
            #expect("\(error)".contains("no thread was iterating its GMainContext"), "\(error)")
        }
        let elapsed = nowSeconds() - began
        #expect(elapsed < 10, "the timeout must bound the call: \(elapsed) s")
        #expect(!finished.isSet, "finish cannot have run: nobody iterated the context")
        #expect(!trackerGone.isSet, "the bridge keeps what finish captured until the callback")
        #expect(liveCalls() == baseline + 1, "the call stays alive for GIO's callback")

        // Iterate the context now: GIO's callback runs, finish runs (its
        // value is dropped) and the bridge lets go of the call.
        let loop = GLibLoopThread(adopting: context, name: "gio-late")
        defer { loop.stop() }
        #expect(await eventually { finished.isSet }, "the late callback never ran")
        #expect(finishThread.value.load(ordering: .relaxed) == loop.threadID,
                "the callback runs on the thread that iterates the context, though start ran on the caller's")
        #expect(await settles(to: baseline), "the late callback must free the call")
        // The count drops in the call's deinit body, before its stored
        // properties (the `finish` closure holding the tracker) are
        // destroyed on the loop thread: wait for that too.
        #expect(await eventually { trackerGone.isSet }, "what finish captured is released with the call")
    }

    @Test("a timeout on an iterated context cancels the operation; the caller is resumed at once",
          .timeLimit(.minutes(1)))
    func timeoutOnAnIteratedContext() async throws {
        let baseline = liveCalls()
        let loop = try GLibLoopThread(name: "gio-timeout")
        defer { loop.stop() }
        let quiet = try QuietSocketStream()
        defer { quiet.release() }
        let buffer = ReadBuffer(count: 64)
        // A call whose start the loop thread did not reach within the
        // 100 ms (this process descheduled) never reached GIO: nothing to
        // cancel. Such an attempt is made again (the error says so).
        for attempt in 1...5 {
            let outcome = Recorder<Bool>()  // whether GIO reported CANCELLED
            var started = false
            do {
                _ = try await GIOAsync.call(on: loop.context.raw, timeout: .milliseconds(100)) { cancellable, callback, userData in
                    g_input_stream_read_async(quiet.input, buffer.pointer, gsize(buffer.count),
                                              G_PRIORITY_DEFAULT, cancellable, callback, userData)
                } finish: { result, error in
                    let n = g_input_stream_read_finish(quiet.input, result, error)
                    outcome.append(error.pointee.map {
                        $0.pointee.domain == g_io_error_quark() && $0.pointee.code == Int32(G_IO_ERROR_CANCELLED.rawValue)
                    } ?? false)
                    return n
                }
                Issue.record("a read of a quiet stream completed")
                return
            } catch let error as GIOTimeoutError {
                started = error.started
            }
            // The bridge cancelled the read; its callback comes and frees the call.
            #expect(await settles(to: baseline))
            if !started && attempt < 5 { continue }
            #expect(started, "the loop thread never started the call in 5 attempts")
            #expect(outcome.all == [true], "GIO must report the read as cancelled")
            return
        }
    }

    @Test("a timeout that is not positive traps with a message")
    func nonPositiveTimeoutTraps() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try? await GIOAsync.call(timeout: .zero) { _, _, _ in } finish: { _, _ in () }
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("GIOAsync.call: timeout must be positive"), "\(stderr)")
    }

    // MARK: Ownership under races

    @Test("1,000 calls cancelled at varying moments: each ends once, as a result or CancellationError, and is freed",
          .timeLimit(.minutes(1)))
    func cancelRacingCompletion() async throws {
        let baseline = liveCalls()
        let contents = Array("race\n".utf8)
        let file = try TemporaryFile(bytes: contents)
        let loop = try GLibLoopThread(name: "gio-race")
        defer { loop.stop() }
        let gfile = GFileRef(path: file.path)
        defer { gfile.release() }
        let context = loop.context
        var succeeded = 0
        var cancelled = 0

        for i in 0..<1_000 {
            let started = TestEventFlag()
            let task = Task {
                try await GIOAsync.call(on: context.raw) { cancellable, callback, userData in
                    g_file_load_contents_async(gfile.raw, cancellable, callback, userData)
                    started.set()
                } finish: { result, error in
                    loadedContents(gfile.raw, result, error)
                }
            }
            // Cancel before the call (i % 4 == 0), or once start ran, after a
            // varying delay: around start, while GIO's worker reads, as the
            // callback runs, or after it.
            if i % 4 != 0 {
                #expect(await eventually { started.isSet || task.isCancelled })
                var spin = 0
                for _ in 0..<((i * 37) % 2_000) { spin &+= 1 }
                _ = spin
                if i % 7 == 3 { try await Task.sleep(for: .microseconds((i * 13) % 400)) }
            }
            task.cancel()
            do {
                let bytes = try await task.value
                #expect(bytes == contents)
                succeeded += 1
            } catch is CancellationError {
                cancelled += 1
            } catch {
                Issue.record("iteration \(i): unexpected \(error)")
            }
        }
        #expect(succeeded + cancelled == 1_000)
        #expect(await settles(to: baseline), "every call object is freed exactly once")
        print("GIOBridge race: \(succeeded) completed, \(cancelled) cancelled")
    }
}

// MARK: Helpers

/// How many bridged calls are alive.
private func liveCalls() -> Int { GIOCallState.liveCount.load(ordering: .relaxed) }

/// Waits (up to 10 s) until the number of live calls is `baseline`.
private func settles(to baseline: Int) async -> Bool {
    await eventually { liveCalls() == baseline }
}

/// Polls `condition` every millisecond for up to `seconds`.
private func eventually(within seconds: Double = 10, _ condition: () -> Bool) async -> Bool {
    let deadline = nowSeconds() + seconds
    while !condition() {
        if nowSeconds() > deadline { return false }
        try? await Task.sleep(for: .milliseconds(1))
    }
    return true
}

/// g_file_load_contents_finish's bytes ([] on error, which the bridge throws).
private func loadedContents(_ file: OpaquePointer, _ result: OpaquePointer,
                            _ error: UnsafeMutablePointer<UnsafeMutablePointer<GError>?>) -> [UInt8] {
    var contents: UnsafeMutablePointer<CChar>?
    var length: gsize = 0
    guard g_file_load_contents_finish(file, result, &contents, &length, nil, error) != 0, let contents else { return [] }
    defer { g_free(contents) }
    return contents.withMemoryRebound(to: UInt8.self, capacity: Int(length)) { Array(UnsafeBufferPointer(start: $0, count: Int(length))) }
}

/// A thread iterating a private GMainContext until stopped.
final class GLibLoopThread: @unchecked Sendable {
    // @unchecked Sendable: `thread` is written in init only; the rest is
    // immutable or atomic.
    let context: MainContextRef
    private let stopping = TestEventFlag()
    private let id = ThreadIDBox()
    private var thread: NativeThread?
    private let ownsContext: Bool

    convenience init(name: String) throws {
        try self.init(context: MainContextRef(raw: g_main_context_new()), owns: true, name: name)
    }

    /// Iterates a context the caller keeps (and unrefs).
    convenience init(adopting context: MainContextRef, name: String) {
        try! self.init(context: context, owns: false, name: name)
    }

    private init(context: MainContextRef, owns: Bool, name: String) throws {
        self.context = context
        ownsContext = owns
        let stopping = stopping
        let id = id
        let started = TestEvent()
        thread = try NativeThread(name: name) {
            id.value.store(currentThreadID(), ordering: .releasing)
            started.signal()
            while !stopping.isSet { g_main_context_iteration(context.raw, 1) }
        }
        precondition(started.wait(seconds: 10), "GLib loop thread '\(name)' did not start")
    }

    /// The iterating thread's id (`currentThreadID()`).
    var threadID: UInt { id.value.load(ordering: .acquiring) }

    /// Runs `body` once on the loop thread, from an idle source.
    func run(_ body: @escaping @Sendable () -> Void) {
        /// The body, published with a releasing store that the loop thread's
        /// acquiring load pairs with: GLib hands the source over under its
        /// own futex-based lock, which ThreadSanitizer does not see.
        final class Body: Sendable {
            let run: @Sendable () -> Void
            let published = Atomic<Bool>(false)
            init(_ run: @escaping @Sendable () -> Void) { self.run = run }
        }
        let box = Body(body)
        box.published.store(true, ordering: .releasing)
        let source = g_idle_source_new()!
        g_source_set_callback(source, { data in
            let box = Unmanaged<Body>.fromOpaque(data!).takeUnretainedValue()
            precondition(box.published.load(ordering: .acquiring))
            box.run()
            return 0
        }, Unmanaged.passRetained(box).toOpaque(), { data in
            Unmanaged<Body>.fromOpaque(data!).release()
        })
        g_source_attach(source, context.raw)
        g_source_unref(source)
    }

    func stop() {
        stopping.set()
        g_main_context_wakeup(context.raw)
        thread?.join()
        thread = nil
        while g_main_context_iteration(context.raw, 0) != 0 {}
        if ownsContext { g_main_context_unref(context.raw) }
    }
}

/// A file with known contents, removed on deinit.
final class TemporaryFile {
    let path: String
    let bytes: [UInt8]

    init(bytes: [UInt8]) throws {
        var template = Array("/tmp/gio-bridge-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw AioError.system(SystemCallError(call: "mkstemp", errno: errno)) }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        self.bytes = bytes
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count else { throw AioError.system(SystemCallError(call: "write", errno: errno)) }
    }

    deinit { unlink(path) }
}

/// A GFile reference that may cross threads (GFile is immutable).
struct GFileRef: @unchecked Sendable {
    let raw: OpaquePointer
    init(path: String) { raw = g_file_new_for_path(path) }
    func release() { g_object_unref(UnsafeMutableRawPointer(raw)) }
}

/// A GCancellable of the test's own (thread-safe API).
struct CancellableRef: @unchecked Sendable {
    let raw = g_cancellable_new()!
    func cancel() { g_cancellable_cancel(raw) }
    func release() { g_object_unref(UnsafeMutableRawPointer(raw)) }
}

/// A GInputStream on one end of a socket pair whose other end stays open and
/// silent: a read waits until it is cancelled.
final class QuietSocketStream: @unchecked Sendable {
    // @unchecked Sendable: immutable after init; GIO streams may be used
    // from any thread, one operation at a time.
    private let pair = SocketPair()
    private let connection: UnsafeMutablePointer<GSocketConnection>
    let input: UnsafeMutablePointer<GInputStream>

    init() throws {
        var error: UnsafeMutablePointer<GError>?
        // The GSocket takes over the descriptor it is given: a duplicate, so
        // that SocketPair closes only its own.
        guard let socket = g_socket_new_from_fd(dup(pair.a), &error) else {
            throw GLibError(taking: error!)
        }
        connection = g_socket_connection_factory_create_connection(socket)
        g_object_unref(UnsafeMutableRawPointer(socket))
        input = g_io_stream_get_input_stream(UnsafeMutableRawPointer(connection).assumingMemoryBound(to: GIOStream.self))
    }

    func release() { g_object_unref(UnsafeMutableRawPointer(connection)) }
}

/// Memory handed to GIO for a read: an object, so that the closures that
/// capture it keep it alive as long as GIO may write to it.
final class ReadBuffer: @unchecked Sendable {
    // @unchecked Sendable: written by GIO's read, read after its callback.
    let count: Int
    let pointer: UnsafeMutableRawPointer
    init(count: Int) {
        self.count = count
        pointer = .allocate(byteCount: count, alignment: 16)
    }
    deinit { pointer.deallocate() }
}

/// Sets a flag when it goes away.
final class DeinitTracker: Sendable {
    private let gone: TestEventFlag
    init(_ gone: TestEventFlag) { self.gone = gone }
    deinit { gone.set() }
}
