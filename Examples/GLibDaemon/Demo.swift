// --demo: the daemon and a client of it in one process, on a private bus.
//
// A private dbus-daemon is started as a child process; the service connects
// to it and the client opens a second connection. Both run on the same
// GMainLoop, so the client only makes asynchronous calls
// (g_dbus_connection_call): a synchronous call would block the very loop
// that has to answer it. Each step starts the next from its reply callback.
// One step is async code instead: a main-actor task awaits GIO calls through
// AioGIO's bridge (AsyncCalls.swift); a MainQueuePump runs it in the loop.

import Aio
import AioGIO
import CGIOShim
import CGLibShim
import Glibc

func runDemo(_ options: ServiceOptions) -> Int32 {
    log("demo", "GLibDaemon --demo: a D-Bus service whose work runs on an AioContext's thread pool")
    let bus: PrivateBus
    let files: DemoFiles
    do {
        bus = try PrivateBus()
        files = try DemoFiles()
    } catch {
        log("demo", "\(error)")
        return 1
    }
    defer { files.remove(); bus.stop() }
    log("demo", "private session bus at \(bus.address)")

    let server: OpaquePointer
    let clientConnection: OpaquePointer
    do {
        server = try connect(to: bus.address)
        clientConnection = try connect(to: bus.address)
    } catch {
        log("demo", "\(error)")
        return 1
    }
    defer { disconnect(clientConnection); disconnect(server) }

    // The main actor's jobs run inside the GMainLoop (the async step).
    let pump: MainQueuePump
    do {
        pump = try MainQueuePump.install()
    } catch {
        log("demo", "cannot run main-actor tasks under GLib here: \(error)")
        return 1
    }
    defer { pump.remove() }

    // A watchdog: the demo finishes in seconds, or fails.
    let watchdog = g_timeout_add_seconds(60, { _ in
        log("demo", "FAILED: timed out")
        exit(1)
    }, nil)
    defer { g_source_remove(watchdog) }

    let client = DemoClient(connection: clientConnection, files: files)
    let status = serve(on: server, options: options, client: client)
    if status == 0 && client.failures == 0 && client.isFinished {
        log("demo", "all \(client.checks) checks passed")
        return 0
    }
    log("demo", "FAILED: \(client.failures) of \(client.checks) checks failed, daemon status \(status)")
    return 1
}

// MARK: The private bus

/// A dbus-daemon of our own, listening on a fresh socket, stopped by stop().
/// Needs the `dbus-daemon` package (scripts/deps.sh installs it).
final class PrivateBus {
    let process: OpaquePointer  // GSubprocess*
    let address: String

    init() throws(DBusError) {
        let launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE)!
        defer { g_object_unref(UnsafeMutableRawPointer(launcher)) }
        // If this process dies, the kernel sends the bus SIGTERM: it never
        // outlives the demo.
        g_subprocess_launcher_set_child_setup(launcher, aio_gio_die_with_parent, nil, nil)
        // --print-address=1: write the address to stdout (fd 1) once listening.
        let argv = ["dbus-daemon", "--session", "--nofork", "--print-address=1"]
        let cStrings = argv.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        var argvPointers: [UnsafePointer<gchar>?] = cStrings.map { UnsafePointer($0) } + [nil]
        var error: UnsafeMutablePointer<GError>?
        guard let process = g_subprocess_launcher_spawnv(launcher, &argvPointers, &error) else {
            throw DBusError(name: "org.freedesktop.DBus.Error.SpawnFailed",
                            message: "cannot start dbus-daemon: " + takeMessage(&error)
                                + " (install it with: bash scripts/deps.sh)")
        }
        self.process = process
        // The address is the first line it prints.
        let lines = g_data_input_stream_new(g_subprocess_get_stdout_pipe(process))!
        defer { g_object_unref(lines) }
        g_filter_input_stream_set_close_base_stream(
            UnsafeMutableRawPointer(lines).assumingMemoryBound(to: GFilterInputStream.self), AIO_SHIM_FALSE)
        guard let line = g_data_input_stream_read_line(lines, nil, nil, &error) else {
            let why = error != nil ? takeMessage(&error) : "it exited without printing its address"
            g_subprocess_force_exit(process)
            g_object_unref(UnsafeMutableRawPointer(process))
            throw DBusError(name: "org.freedesktop.DBus.Error.SpawnFailed", message: "dbus-daemon: " + why)
        }
        address = String(cString: line)
        g_free(line)
    }

    func stop() {
        g_subprocess_send_signal(process, SIGTERM)
        _ = g_subprocess_wait(process, nil, nil)
        g_object_unref(UnsafeMutableRawPointer(process))
    }
}

// MARK: Files to work on

/// A temporary directory with three files whose sizes and contents the
/// demo knows, so it can check every reply exactly.
final class DemoFiles: @unchecked Sendable {
    // @unchecked Sendable: immutable after init.
    let directory: String
    let hello: String
    let blob: String
    let helloContents = "Hello from swift-aio\n"
    let blobSize = 300 * 1024  // several reads of the daemon's 64 KiB buffer
    private(set) var helloSHA256 = ""
    private(set) var blobSHA256 = ""
    private(set) var totalBytes: UInt64 = 0
    private var created: [String] = []

    init() throws(DBusError) {
        var error: UnsafeMutablePointer<GError>?
        guard let raw = g_dir_make_tmp("glibdaemon-demo-XXXXXX", &error) else {
            throw DBusError(name: "org.freedesktop.DBus.Error.Failed", message: "temporary directory: " + takeMessage(&error))
        }
        directory = String(cString: raw)
        g_free(raw)
        hello = directory + "/hello.txt"
        blob = directory + "/data/blob.bin"
        mkdir(directory + "/data", 0o755)

        let blobBytes = (0..<blobSize).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 10) }
        helloSHA256 = try write(Array(helloContents.utf8), to: hello)
        blobSHA256 = try write(blobBytes, to: blob)
        _ = try write(Array("notes\n".utf8), to: directory + "/data/notes.txt")
    }

    /// Writes a file and returns the SHA-256 of what it wrote.
    private func write(_ bytes: [UInt8], to path: String) throws(DBusError) -> String {
        var error: UnsafeMutablePointer<GError>?
        let ok = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: gchar.self) { g_file_set_contents(path, $0.baseAddress, gssize(buffer.count), &error) }
        }
        if ok == 0 { throw DBusError(name: "org.freedesktop.DBus.Error.Failed", message: takeMessage(&error)) }
        created.append(path)
        totalBytes += UInt64(bytes.count)
        let digest = g_compute_checksum_for_data(G_CHECKSUM_SHA256, bytes, gsize(bytes.count))!
        defer { g_free(digest) }
        return String(cString: digest)
    }

    var fileCount: UInt64 { UInt64(created.count) }

    func remove() {
        for path in created { unlink(path) }
        rmdir(directory + "/data")
        rmdir(directory)
    }
}

// MARK: The client

/// Calls the service's methods one step at a time and checks each reply.
final class DemoClient: @unchecked Sendable {
    // @unchecked Sendable: used on the main thread only; GDBus runs its
    // reply and signal callbacks in the default main context.

    let connection: OpaquePointer
    let files: DemoFiles
    var onFinished: () -> Void = {}
    private(set) var isFinished = false
    private(set) var checks = 0
    private(set) var failures = 0
    private var steps: [(_ next: @escaping () -> Void) -> Void] = []
    private var heartbeatSubscription: guint = 0
    private var heartbeatWaiter: (() -> Void)?

    init(connection: OpaquePointer, files: DemoFiles) {
        self.connection = connection
        self.files = files
    }

    /// Runs every step in order; called once the service owns its name.
    func start() {
        steps = makeSteps()
        runNextStep()
    }

    private func runNextStep() {
        guard !steps.isEmpty else {
            isFinished = true
            onFinished()
            return
        }
        let step = steps.removeFirst()
        step { [self] in runNextStep() }
    }

    private func makeSteps() -> [(_ next: @escaping () -> Void) -> Void] {
        let f = files
        let invalidArgs = "org.freedesktop.DBus.Error.InvalidArgs"
        return [
            // Work offloaded to the pool, replied to from its completion.
            { next in self.call("Sha256", [.string(f.hello)]) { reply in
                self.expect(reply, "SHA-256 of hello.txt") { $0.string(at: 0) == f.helloSHA256 }
                next()
            } },
            { next in self.call("DirectorySize", [.string(f.directory)]) { reply in
                self.expect(reply, "\(f.fileCount) files, \(f.totalBytes) bytes") {
                    $0.uint64(at: 0) == f.totalBytes && $0.uint64(at: 1) == f.fileCount
                }
                next()
            } },
            { next in self.call("Sleep", [.uint32(200)]) { reply in
                self.expect(reply, "slept") { $0.string(at: 0) == "slept 200 ms" }
                next()
            } },
            // Eight at once: the pool runs them on several workers, and each
            // completion answers its own caller.
            { next in
                var left = 8
                let started = g_get_monotonic_time()
                for _ in 0..<8 {
                    self.call("Sha256", [.string(f.blob)], quiet: true) { reply in
                        self.expect(reply, "SHA-256 of blob.bin", quiet: true) { $0.string(at: 0) == f.blobSHA256 }
                        left -= 1
                        if left == 0 {
                            log("client", "8 concurrent Sha256(blob.bin) calls: 8 correct replies in \((g_get_monotonic_time() - started) / 1000) ms")
                            next()
                        }
                    }
                }
            },
            // Bad input: each gets a D-Bus error, and the service keeps going.
            { next in self.call("Sha256", [.string(f.directory + "/no-such-file")]) { reply in
                self.expectError(reply, "org.freedesktop.DBus.Error.FileNotFound")
                next()
            } },
            { next in self.call("Sha256", [.string("relative/path")]) { reply in
                self.expectError(reply, invalidArgs)
                next()
            } },
            { next in self.call("DirectorySize", [.string(f.hello)]) { reply in
                self.expectError(reply, invalidArgs)  // not a directory
                next()
            } },
            { next in self.call("Sha256", [.uint32(42)]) { reply in
                self.expectError(reply, invalidArgs)  // wrong type: GDBus itself refuses it
                next()
            } },
            { next in self.call("Sleep", [.uint32(120_000)]) { reply in
                self.expectError(reply, invalidArgs)  // over the limit
                next()
            } },
            // Async code: GIO calls awaited through the bridge, on the main actor.
            { next in
                // `next` belongs to the main thread, where this task runs.
                nonisolated(unsafe) let next = next
                Task { @MainActor in
                    await self.asyncSteps()
                    next()
                }
            },
            // The timer's signal.
            { next in
                log("client", "waiting for a Heartbeat signal")
                self.waitForHeartbeat(then: next)
            },
            // The counters. Exactly 12 jobs succeeded (1 + 1 + 1 + 8, and the
            // async step's Sha256) and 3 failed (no such file, not a
            // directory, the async step's missing file); the rejected
            // arguments never reached the pool.
            { next in self.call("Statistics", []) { reply in
                self.expect(reply, "12 jobs completed, 3 failed") {
                    let counters = $0.dictionary(at: 0)
                    return counters["pool-jobs-completed"] == 12 && counters["pool-jobs-failed"] == 3
                        && counters["bottom-halves-run"]! > 0
                }
                next()
            } },
            // Shutdown with a request in flight: it gets the shutdown error,
            // not silence. Calls on one connection arrive in order, so when
            // Statistics answers, the Sleep is already on the pool.
            { next in
                self.call("Sleep", [.uint32(10_000)]) { reply in
                    self.expectError(reply, "org.freedesktop.DBus.Error.Failed", message: "shutting down")
                    next()
                }
                self.call("Statistics", [], quiet: true) { reply in
                    self.expect(reply, "1 request in flight", quiet: true) { $0.dictionary(at: 0)["requests-in-flight"] == 1 }
                    log("client", "the Sleep(10000) is in flight; raising SIGTERM")
                    raise(SIGTERM)
                }
            },
        ]
    }

    // MARK: Calls and checks

    /// Calls `method` on the service asynchronously; `then` gets the reply
    /// (the out-arguments as a tuple) or the D-Bus error.
    func call(_ method: String, _ arguments: [Variant], quiet: Bool = false,
              then: @escaping (Result<Variant, DBusError>) -> Void) {
        let parameters = Variant.tuple(arguments)
        let label = "\(method)\(parameters.text)"
        let handler = ReplyHandler { result in
            if !quiet {
                switch result {
                case .success(let reply): log("client", "\(label) -> \(reply.text)")
                case .failure(let error): log("client", "\(label) -> error \(error)")
                }
            }
            then(result)
        }
        // SAFETY: the +1 is balanced in the callback, which GIO calls exactly once.
        g_dbus_connection_call(
            connection, busName, objectPath, interfaceName, method, parameters.raw,
            nil, G_DBUS_CALL_FLAGS_NONE, 15_000, nil,
            { source, result, userData in
                let handler = Unmanaged<ReplyHandler>.fromOpaque(userData!).takeRetainedValue()
                var error: UnsafeMutablePointer<GError>?
                if let reply = g_dbus_connection_call_finish(OpaquePointer(source), result, &error) {
                    handler.body(.success(Variant(raw: reply)))
                    g_variant_unref(reply)
                } else {
                    handler.body(.failure(DBusError(remote: &error)))
                }
            },
            Unmanaged.passRetained(handler).toOpaque())
    }

    private final class ReplyHandler {
        let body: (Result<Variant, DBusError>) -> Void
        init(_ body: @escaping (Result<Variant, DBusError>) -> Void) { self.body = body }
    }

    private func expect(_ result: Result<Variant, DBusError>, _ what: String, quiet: Bool = false,
                        _ isRight: (Variant) -> Bool) {
        checks += 1
        if case .success(let reply) = result, isRight(reply) {
            if !quiet { log("client", "  ok: \(what)") }
        } else {
            failures += 1
            log("client", "  WRONG: expected \(what)")
        }
    }

    private func expectError(_ result: Result<Variant, DBusError>, _ name: String, message: String? = nil) {
        checks += 1
        if case .failure(let error) = result, error.name == name, message == nil || error.message == message {
            log("client", "  ok: \(name)")
        } else {
            failures += 1
            log("client", "  WRONG: expected the error \(name)")
        }
    }

    // MARK: Async calls through the GIO bridge

    /// A D-Bus call to the bus itself, a GFile read, the service's Sha256 of
    /// the same file, and one error of each kind, each awaited; after every
    /// await the task is back on the main thread.
    @MainActor
    private func asyncSteps() async {
        let f = files
        let missing = f.directory + "/no-such-file"
        log("client", "async calls through GIOAsync (AioGIO), awaited on the main actor")
        do {
            let reply = try await dbusCall(on: connection, destination: "org.freedesktop.DBus",
                                           path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
                                           method: "ListNames")
            defer { g_variant_unref(reply.raw) }
            let names = reply.strings(at: 0)
            check("ListNames on the bus: \(names.count) names, \(busName) among them", names.contains(busName))
        } catch {
            check("ListNames on the bus: \(error)", false)
        }
        do {
            let bytes = try await readFile(f.hello)
            check("GFile read of hello.txt: \(bytes.count) bytes, as written", bytes == Array(f.helloContents.utf8))
            let reply = try await dbusCall(on: connection, destination: busName, path: objectPath,
                                           interface: interfaceName, method: "Sha256", [.string(f.hello)])
            defer { g_variant_unref(reply.raw) }
            let digest = g_compute_checksum_for_data(G_CHECKSUM_SHA256, bytes, gsize(bytes.count))!
            defer { g_free(digest) }
            check("awaited Sha256(hello.txt) matches the bytes read", reply.string(at: 0) == String(cString: digest))
        } catch {
            check("GFile read and Sha256 of hello.txt: \(error)", false)
        }
        do {
            _ = try await readFile(missing)
            check("GFile read of a missing file must fail", false)
        } catch let error as GLibError {
            check("GFile read of a missing file -> \(error.domain) NOT_FOUND", error.isIOError(G_IO_ERROR_NOT_FOUND))
        } catch {
            check("GFile read of a missing file: \(error)", false)
        }
        do {
            _ = try await dbusCall(on: connection, destination: busName, path: objectPath,
                                   interface: interfaceName, method: "Sha256", [.string(missing)])
            check("awaited Sha256 of a missing file must fail", false)
        } catch let error as DBusError {
            check("awaited Sha256 of a missing file -> \(error.name)", error.name == "org.freedesktop.DBus.Error.FileNotFound")
        } catch {
            check("awaited Sha256 of a missing file: \(error)", false)
        }
        check("the task is back on the main thread", aio_shim_gettid() == getpid())
    }

    private func check(_ what: String, _ ok: Bool) {
        checks += 1
        if ok {
            log("client", "  ok: \(what)")
        } else {
            failures += 1
            log("client", "  WRONG: \(what)")
        }
    }

    private func waitForHeartbeat(then next: @escaping () -> Void) {
        heartbeatWaiter = next
        // SAFETY: user_data is this client, unretained; it outlives the
        // subscription, which the first signal removes.
        heartbeatSubscription = g_dbus_connection_signal_subscribe(
            connection, busName, interfaceName, "Heartbeat", objectPath, nil, G_DBUS_SIGNAL_FLAGS_NONE,
            { _, _, _, _, _, parameters, me in
                let client = Unmanaged<DemoClient>.fromOpaque(me!).takeUnretainedValue()
                client.heartbeatArrived(Variant(raw: parameters!))
            },
            Unmanaged.passUnretained(self).toOpaque(), nil)
    }

    private func heartbeatArrived(_ parameters: Variant) {
        guard let next = heartbeatWaiter else { return }  // a late one after unsubscribing
        heartbeatWaiter = nil
        g_dbus_connection_signal_unsubscribe(connection, heartbeatSubscription)
        checks += 1
        log("client", "signal Heartbeat\(parameters.text)")
        next()
    }
}

extension DBusError {
    /// A failed call's error: the remote D-Bus error name if there is one
    /// (GIO encodes it in the GError), else a local failure such as a timeout.
    init(remote error: inout UnsafeMutablePointer<GError>?) {
        var name = "(local error)"
        if let e = error, let remote = g_dbus_error_get_remote_error(e) {
            name = String(cString: remote)
            g_free(remote)
            g_dbus_error_strip_remote_error(e)
        }
        self.init(name: name, message: takeMessage(&error))
    }
}
