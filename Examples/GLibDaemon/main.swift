// GLibDaemon: a D-Bus service built on GIO's GDBus, served from a GMainLoop
// with an AioContext attached. Slow methods run on the AioContext's thread
// pool and are answered from the pool's completion, on the loop thread. A
// timer emits a signal; SIGTERM and SIGINT shut it down cleanly, answering
// every request in flight.
//
//   swift run GLibDaemon --demo     # private bus; calls itself; prints; exits 0
//   swift run GLibDaemon            # serves org.swiftaio.Daemon on the session bus
//
// Options: --heartbeat SECONDS (default 5; 1 with --demo), --workers N (default 4).
// Against a running daemon:
//
//   gdbus call --session --dest org.swiftaio.Daemon --object-path /org/swiftaio/Daemon \
//       --method org.swiftaio.Daemon1.Sha256 /etc/hostname
//
// Files: main.swift (options, connecting, running the loop), Service.swift
// (the D-Bus object, offloading, shutdown), Jobs.swift (the work on the pool),
// Demo.swift (--demo: private bus and client), AsyncCalls.swift (GIO calls
// awaited through AioGIO's bridge), GLibGlue.swift (C API helpers).

import Aio
import CGIOShim
import CGLibShim
import Glibc

let usage = """
    usage: GLibDaemon [--demo] [--heartbeat SECONDS] [--workers N]
      --demo               start a private session bus, call our own methods, print the replies, exit
      --heartbeat SECONDS  emit the Heartbeat signal every SECONDS (default 5; 1 with --demo)
      --workers N          at most N pool workers run jobs at once (1...64, default 4)
    """

/// A GMainLoop on the default main context. GLib's loop API is thread-safe.
struct MainLoop: @unchecked Sendable {
    let raw = g_main_loop_new(nil, AIO_SHIM_FALSE)!
    func run() { g_main_loop_run(raw) }
    func quit() { g_main_loop_quit(raw) }
    func release() { g_main_loop_unref(raw) }
}

/// Opens a connection to the message bus at `address` (a D-Bus address such
/// as `unix:path=/tmp/dbus-abc`) and says hello to it.
func connect(to address: String) throws(DBusError) -> OpaquePointer {
    var error: UnsafeMutablePointer<GError>?
    let flags = GDBusConnectionFlags(rawValue: G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT.rawValue
                                             | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION.rawValue)
    guard let connection = g_dbus_connection_new_for_address_sync(address, flags, nil, nil, &error) else {
        throw DBusError(name: "org.freedesktop.DBus.Error.Failed", message: "cannot connect to \(address): " + takeMessage(&error))
    }
    return connection
}

func disconnect(_ connection: OpaquePointer) {
    _ = g_dbus_connection_close_sync(connection, nil, nil)
    g_object_unref(UnsafeMutableRawPointer(connection))
}

/// Serves on `connection` until the service has shut down, and returns the
/// exit status. `client` (the demo) starts once the bus name is ours; the loop
/// then stops when both the service has drained and the client is done.
func serve(on connection: OpaquePointer, options: ServiceOptions, client: DemoClient? = nil) -> Int32 {
    let ctx: AioContext
    do {
        ctx = try AioContext(name: "daemon")
    } catch {
        log("daemon", "cannot create the AioContext: \(error)")
        return 1
    }
    // The default GMainContext: the one the GMainLoop runs and GDBus
    // dispatches our method calls to. BHs, timers and pool completions of
    // `ctx` now run inside that loop, on this thread.
    ctx.attach(to: nil)
    let loop = MainLoop()
    let service = DaemonService(ctx: ctx, connection: connection, options: options)
    service.onReady = { client?.start() }
    // Quit once the service has drained and the demo (if any) is done, or
    // at once if the service failed (e.g. lost its name).
    service.onDrained = { [unowned service] in
        if client?.isFinished ?? true || service.exitStatus != 0 { loop.quit() }
    }
    client?.onFinished = { [unowned service] in if service.isDrained { loop.quit() } }

    var status: Int32 = 0
    do {
        try service.start()
        loop.run()
        status = service.exitStatus
    } catch {
        log("daemon", "cannot start: \(error)")
        status = 1
    }
    // Teardown, in order: the service answers nothing more and its pool is
    // stopped; then GLib lets go of the context; `ctx` itself goes away when
    // this function returns (the library checks then that no BH or pool job
    // is left).
    service.close()
    ctx.detach()
    loop.release()
    log("daemon", status == 0 ? "stopped cleanly" : "stopped with status \(status)")
    return status
}

/// Normal mode: serve on the session bus ($DBUS_SESSION_BUS_ADDRESS).
func runDaemon(_ options: ServiceOptions) -> Int32 {
    var error: UnsafeMutablePointer<GError>?
    guard let rawAddress = g_dbus_address_get_for_bus_sync(G_BUS_TYPE_SESSION, nil, &error) else {
        log("daemon", "no session bus: " + takeMessage(&error) + " (run under dbus-run-session, or try --demo)")
        return 1
    }
    let address = String(cString: rawAddress)
    g_free(rawAddress)
    do {
        let connection = try connect(to: address)
        defer { disconnect(connection) }
        return serve(on: connection, options: options)
    } catch {
        log("daemon", "\(error)")
        return 1
    }
}

// MARK: Entry point

var options = ServiceOptions()
var demo = false
var heartbeatGiven = false
var arguments = CommandLine.arguments.dropFirst()

func fail(_ message: String) -> Never {
    let text = "GLibDaemon: \(message)\n\(usage)\n"
    _ = text.withCString { Glibc.write(2, $0, strlen($0)) }  // stderr
    exit(2)
}

while let argument = arguments.popFirst() {
    switch argument {
    case "--demo":
        demo = true
    case "--heartbeat":
        guard let value = arguments.popFirst(), let seconds = Double(value), seconds > 0, seconds <= 3600 else {
            fail("--heartbeat needs a number of seconds, more than 0 and at most 3600")
        }
        options.heartbeat = .milliseconds(Int64(seconds * 1000))
        heartbeatGiven = true
    case "--workers":
        guard let value = arguments.popFirst(), let count = Int(value), (1...64).contains(count) else {
            fail("--workers needs a whole number from 1 to 64")
        }
        options.workers = count
    case "-h", "--help":
        print(usage)
        exit(0)
    default:
        fail("unknown argument '\(argument)'")
    }
}

if demo {
    if !heartbeatGiven { options.heartbeat = .seconds(1) }
    exit(runDemo(options))
} else {
    exit(runDaemon(options))
}
