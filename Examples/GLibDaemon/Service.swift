// The D-Bus service: one object with four methods and a signal, served from a
// GMainLoop that also runs an AioContext.
//
// Threads: everything in `DaemonService` runs on the main thread, which runs
// the default GMainContext. GDBus delivers method calls there (the
// thread-default context of the thread that registered the object), and the
// AioContext is attached to it, so pool completions and the heartbeat timer
// run there too. Only the jobs (Jobs.swift) run on pool workers.

import Aio
import CGIOShim
import CGLibShim
import Glibc

let busName = "org.swiftaio.Daemon"
let objectPath = "/org/swiftaio/Daemon"
let interfaceName = "org.swiftaio.Daemon1"

/// What the object looks like on the bus. GDBus checks every incoming call
/// against it: an unknown method gets `UnknownMethod`, arguments of the wrong
/// type get `InvalidArgs`, before our code runs.
let introspectionXML = """
    <node>
      <interface name="org.swiftaio.Daemon1">
        <method name="Sha256">
          <arg name="path" type="s" direction="in"/>
          <arg name="hex_digest" type="s" direction="out"/>
        </method>
        <method name="DirectorySize">
          <arg name="path" type="s" direction="in"/>
          <arg name="bytes" type="t" direction="out"/>
          <arg name="files" type="t" direction="out"/>
        </method>
        <method name="Sleep">
          <arg name="milliseconds" type="u" direction="in"/>
          <arg name="message" type="s" direction="out"/>
        </method>
        <method name="Statistics">
          <arg name="counters" type="a{st}" direction="out"/>
        </method>
        <signal name="Heartbeat">
          <arg name="sequence" type="t"/>
          <arg name="requests_in_flight" type="u"/>
        </signal>
      </interface>
    </node>
    """

struct ServiceOptions {
    var heartbeat: Duration = .seconds(5)
    var workers = 4
    /// Longest `Sleep` accepted; longer is InvalidArgs.
    static let maxSleepMs: UInt32 = 60_000
}

final class DaemonService: @unchecked Sendable {
    // @unchecked Sendable: every mutable field is touched on the main thread
    // only (see the top of the file). Pool jobs get copies of what they need.

    let ctx: AioContext
    let connection: OpaquePointer  // GDBusConnection*, one reference held by the caller
    let options: ServiceOptions
    /// Cancelled at shutdown; running jobs watch it.
    let cancellable = Cancellable()

    /// Called once the bus name is ours: the service is reachable.
    var onReady: () -> Void = {}
    /// Called once, when shutdown has answered every request.
    var onDrained: () -> Void = {}
    /// 0, or 1 if the service could not get (or lost) its bus name.
    private(set) var exitStatus: Int32 = 0

    private var nodeInfo: UnsafeMutablePointer<GDBusNodeInfo>?
    private var registrationID: guint = 0
    private var ownerID: guint = 0
    private var signalSourceIDs: [guint] = []
    private var hasName = false
    private(set) var isShuttingDown = false
    private(set) var isDrained = false

    /// Requests handed to the pool whose reply has not been sent, by id.
    private var inFlight: [UInt64: ThreadPoolRequest] = [:]
    private var nextRequestID: UInt64 = 1
    private var heartbeat: AioTimer?
    private var heartbeatsSent: UInt64 = 0

    /// Pool jobs by outcome. A job that ends in an error counts as failed;
    /// one that shutdown cancelled before it started, or interrupted while
    /// it ran, counts as cancelled.
    private var jobsSubmitted: UInt64 = 0
    private var jobsCompleted: UInt64 = 0
    private var jobsFailed: UInt64 = 0
    private var jobsCancelled: UInt64 = 0

    init(ctx: AioContext, connection: OpaquePointer, options: ServiceOptions) {
        self.ctx = ctx
        self.connection = connection
        self.options = options
    }

    // MARK: Start

    /// Exports the object, asks for the bus name, installs the SIGTERM and
    /// SIGINT handlers and arms the heartbeat. Call on the main thread.
    func start() throws(DBusError) {
        var error: UnsafeMutablePointer<GError>?
        guard let info = g_dbus_node_info_new_for_xml(introspectionXML, &error) else {
            throw DBusError(name: "org.freedesktop.DBus.Error.Failed", message: "bad introspection XML: " + takeMessage(&error))
        }
        nodeInfo = info
        let interface = g_dbus_node_info_lookup_interface(info, interfaceName)

        // SAFETY: user_data is this object, unretained. It outlives both the
        // registration (removed in close()) and the name ownership (given up
        // in beginShutdown(); GDBus calls no handler after g_bus_unown_name).
        let me = Unmanaged.passUnretained(self).toOpaque()
        registrationID = g_dbus_connection_register_object(
            connection, objectPath, interface, serviceVTable, me, nil, &error)
        if registrationID == 0 {
            throw DBusError(name: "org.freedesktop.DBus.Error.Failed", message: "cannot export \(objectPath): " + takeMessage(&error))
        }

        // DO_NOT_QUEUE: if another instance owns the name, fail at once
        // instead of waiting in line for it.
        ownerID = g_bus_own_name_on_connection(
            connection, busName, G_BUS_NAME_OWNER_FLAGS_DO_NOT_QUEUE,
            { _, _, me in DaemonService.from(me).nameAcquired() },
            { _, _, me in DaemonService.from(me).nameLost() },
            me, nil)

        // GLib turns the signals into ordinary sources on the default main
        // context, so the handler runs on the loop thread like everything else.
        signalSourceIDs = [
            g_unix_signal_add(SIGTERM, { me in DaemonService.from(me).beginShutdown(reason: "SIGTERM"); return AIO_SHIM_TRUE }, me),
            g_unix_signal_add(SIGINT, { me in DaemonService.from(me).beginShutdown(reason: "SIGINT"); return AIO_SHIM_TRUE }, me),
        ]

        // The pool runs the jobs; at most `workers` at once, the rest wait
        // in its queue (where shutdown can still cancel them).
        ctx.threadPool.setThreadLimits(minimum: 0, maximum: options.workers)

        // An AioTimer on the loop's context: it fires on the loop thread and
        // re-arms itself.
        let timer = ctx.makeTimer(name: "heartbeat") { [unowned self] timer in
            self.sendHeartbeat()
            timer.schedule(after: self.options.heartbeat)
        }
        timer.schedule(after: options.heartbeat)
        heartbeat = timer
    }

    static func from(_ userData: UnsafeMutableRawPointer?) -> DaemonService {
        // SAFETY: see start(); every callback that gets this pointer runs
        // while the service is alive.
        Unmanaged<DaemonService>.fromOpaque(userData!).takeUnretainedValue()
    }

    private func nameAcquired() {
        hasName = true
        let unique = String(cString: g_dbus_connection_get_unique_name(connection))
        log("daemon", "serving \(busName) (\(unique)) at \(objectPath), pid \(getpid()); "
            + "\(options.workers) pool workers, heartbeat every \(options.heartbeat)")
        onReady()
    }

    private func nameLost() {
        // Either the name was never ours (another instance has it) or the
        // bus connection went away. Both end the daemon, with an error.
        log("daemon", hasName ? "lost the bus name \(busName)" : "cannot own \(busName): is another instance running?")
        ownerID = 0  // nothing left to unown
        exitStatus = 1
        beginShutdown(reason: "name lost")
    }

    // MARK: Method calls

    /// Runs for every call, on the loop thread. Quick work (Statistics) is
    /// answered here; slow work goes to the pool and is answered by its
    /// completion, also on the loop thread.
    fileprivate func handleMethodCall(_ method: String, _ parameters: Variant, _ invocation: Invocation) {
        if isShuttingDown {
            // The name is being given back; callers that still reach us
            // (by unique name, or already on their way) are told why.
            invocation.reply(DBusError.shuttingDown)
            return
        }
        let cancellable = self.cancellable
        switch method {
        case "Sha256":
            let path = parameters.string(at: 0)
            if let problem = Self.checkPath(path) { return invocation.reply(problem) }
            offload(invocation, "Sha256('\(path)')") {
                Variant.tuple([.string(try Jobs.sha256(ofFileAt: path, cancellable: cancellable))])
            }
        case "DirectorySize":
            let path = parameters.string(at: 0)
            if let problem = Self.checkPath(path) { return invocation.reply(problem) }
            offload(invocation, "DirectorySize('\(path)')") {
                let size = try Jobs.directorySize(at: path, cancellable: cancellable)
                return Variant.tuple([.uint64(size.bytes), .uint64(size.files)])
            }
        case "Sleep":
            let ms = parameters.uint32(at: 0)
            if ms > ServiceOptions.maxSleepMs {
                return invocation.reply(.invalidArgs("Sleep: \(ms) ms is longer than the limit of \(ServiceOptions.maxSleepMs) ms"))
            }
            offload(invocation, "Sleep(\(ms))") {
                Variant.tuple([.string(try Jobs.sleep(milliseconds: ms, cancellable: cancellable))])
            }
        case "Statistics":
            invocation.reply(Variant.tuple([statistics()]))
        default:
            // GDBus only lets through methods in the introspection data.
            invocation.reply(DBusError(name: "org.freedesktop.DBus.Error.UnknownMethod", message: "no method \(method)"))
        }
    }

    /// Paths are absolute: the daemon's working directory means nothing to
    /// a client.
    private static func checkPath(_ path: String) -> DBusError? {
        path.hasPrefix("/") ? nil : .invalidArgs("path must be absolute, got '\(path)'")
    }

    /// Runs `work` on a pool worker and replies from its completion, which
    /// the pool delivers on the loop thread. Every request is answered
    /// exactly once: with its result, its error, or (when shutdown
    /// cancelled it) `shuttingDown`.
    private func offload(_ invocation: Invocation, _ label: String,
                         _ work: @escaping @Sendable () throws -> Variant) {
        let id = nextRequestID
        nextRequestID += 1
        jobsSubmitted += 1
        let request = ctx.threadPool.submit(work, completion: { [self] result in
            inFlight[id] = nil
            switch result {
            case .success(let reply):
                jobsCompleted += 1
                let text = reply.text  // before replying: the reply consumes the variant
                invocation.reply(reply)
                log("daemon", "\(label) -> \(text)")
            case .failure(let error):
                // CancellationError: shutdown cancelled the job before a
                // worker took it. DBusError.shuttingDown: it was interrupted.
                let dbusError = (error as? DBusError) ?? .shuttingDown
                if dbusError == .shuttingDown {
                    jobsCancelled += 1
                } else {
                    jobsFailed += 1
                }
                invocation.reply(dbusError)
                log("daemon", "\(label) -> \(dbusError)")
            }
            checkDrained()
        })
        inFlight[id] = request
    }

    /// Every counter the daemon reports, as `a{st}`.
    private func statistics() -> Variant {
        let loop = ctx.statistics
        return Variant.dictionary([
            "bottom-halves-run": UInt64(loop.bottomHalvesRun),
            "loop-iterations": UInt64(loop.iterations),
            "eventfd-writes": UInt64(loop.eventfdWrites),
            "blocking-waits": UInt64(loop.blockingWaits),
            "pool-jobs-submitted": jobsSubmitted,
            "pool-jobs-completed": jobsCompleted,
            "pool-jobs-failed": jobsFailed,
            "pool-jobs-cancelled": jobsCancelled,
            "pool-workers": UInt64(ctx.threadPool.workerCount),
            "requests-in-flight": UInt64(inFlight.count),
            "heartbeats-sent": heartbeatsSent,
        ])
    }

    // MARK: Heartbeat

    private func sendHeartbeat() {
        heartbeatsSent += 1
        var error: UnsafeMutablePointer<GError>?
        let body = Variant.tuple([.uint64(heartbeatsSent), .uint32(UInt32(inFlight.count))])
        if g_dbus_connection_emit_signal(connection, nil, objectPath, interfaceName, "Heartbeat", body.raw, &error) == 0 {
            log("daemon", "cannot emit Heartbeat: " + takeMessage(&error))
        }
    }

    // MARK: Shutdown

    /// Stops accepting work and answers what is in flight; `onDrained`
    /// runs once every request has its reply. Safe to call again.
    func beginShutdown(reason: String) {
        if isShuttingDown {
            log("daemon", "\(reason): already shutting down, \(inFlight.count) request(s) left")
            return
        }
        isShuttingDown = true
        log("daemon", "\(reason): shutting down with \(inFlight.count) request(s) in flight")
        // 1. Stop accepting: give the name back, so new callers get
        //    ServiceUnknown from the bus; calls already on their way get
        //    `shuttingDown` from handleMethodCall.
        if ownerID != 0 {
            g_bus_unown_name(ownerID)
            ownerID = 0
        }
        heartbeat?.cancel()
        // 2. Queued jobs never start: their completions get CancellationError.
        for request in inFlight.values { request.cancel() }
        // 3. Running jobs stop at their next look at the cancellable.
        cancellable.cancel()
        // 4. Each completion replies and calls checkDrained(); if nothing
        //    is in flight we are done now.
        checkDrained()
    }

    private func checkDrained() {
        guard isShuttingDown, inFlight.isEmpty, !isDrained else { return }
        isDrained = true
        log("daemon", "every request answered (\(jobsCompleted) completed, \(jobsFailed) failed, \(jobsCancelled) cancelled by shutdown)")
        onDrained()
    }

    /// Tears down what start() set up, once the loop has stopped. The order
    /// matters: the pool must have no request in flight when the context goes
    /// away (the library stops the program otherwise), and the replies must
    /// have left before the connection closes.
    func close() {
        precondition(inFlight.isEmpty, "close() before every request was answered")
        ctx.threadPool.shutdown()  // nothing is in flight: this stops the idle workers
        heartbeat?.cancel()
        heartbeat = nil
        for id in signalSourceIDs { g_source_remove(id) }
        signalSourceIDs = []
        if ownerID != 0 { g_bus_unown_name(ownerID); ownerID = 0 }
        if registrationID != 0 {
            g_dbus_connection_unregister_object(connection, registrationID)
            registrationID = 0
        }
        // GDBus writes replies from its own I/O thread; wait until they left.
        var error: UnsafeMutablePointer<GError>?
        if g_dbus_connection_flush_sync(connection, nil, &error) == 0 {
            log("daemon", "flushing the connection: " + takeMessage(&error))
        }
        if let info = nodeInfo { g_dbus_node_info_unref(info) }
        nodeInfo = nil
        cancellable.release()
    }
}

/// The object's vtable. GDBus keeps the pointer, so it lives for the whole
/// program. GDBus calls `method_call` on the loop thread.
nonisolated(unsafe) private let serviceVTable: UnsafeMutablePointer<GDBusInterfaceVTable> = {
    let vtable = UnsafeMutablePointer<GDBusInterfaceVTable>.allocate(capacity: 1)
    vtable.initialize(to: GDBusInterfaceVTable(
        method_call: { _, _, _, _, method, parameters, invocation, me in
            DaemonService.from(me).handleMethodCall(
                String(cString: method!), Variant(raw: parameters!), Invocation(raw: invocation!))
        },
        get_property: nil,
        set_property: nil,
        padding: (nil, nil, nil, nil, nil, nil, nil, nil)))
    return vtable
}()
