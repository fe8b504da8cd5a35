import CGLibShim
import Glibc

/// Runs Swift's main actor, and `DispatchQueue.main`, on a GLib main loop.
///
/// On Linux the main actor's executor puts every job on libdispatch's main
/// queue, and nothing drains that queue while the main thread sits in
/// `g_main_loop_run` or `g_main_context_iteration`: `await MainActor.run {}`
/// and `Task { @MainActor in }` never run. The pump is a GSource on the main
/// thread's GMainContext that polls the main queue's wake-up eventfd and
/// drains the queue, as Foundation's `RunLoop` does on Linux, so main-actor
/// work runs on the main thread between GLib's other sources:
///
/// ```swift
/// let pump = try MainQueuePump.install()       // on the default GMainContext
/// let loop = g_main_loop_new(nil, 0)
/// Task { @MainActor in ...; g_main_loop_quit(loop) }
/// g_main_loop_run(loop)
/// pump.drainNow()                               // run what was queued last
/// ```
///
/// - The main queue is serviced only when the main thread iterates the
///   context; another thread iterating it never polls the fd (no busy loop)
///   and never drains (libdispatch forbids it).
/// - Main-actor jobs and `DispatchQueue.main` blocks share one FIFO.
/// - Like Foundation's run loop, a loop nested inside a main-actor job does
///   not run further main-actor jobs (GLib does not re-enter a dispatching
///   source); a nested loop in a plain GLib callback does.
/// - While main-actor work keeps re-arming itself at `priority`, GLib sources
///   of lower priority wait; lower the pump's priority to favour them.
/// - Needs a synchronous `main`: an `async` main (or `dispatchMain()`) hands
///   the main queue to libdispatch's own threads, and installing then throws.
///
/// It relies on the two libdispatch entry points that Foundation's run loop
/// uses for the same purpose (`_dispatch_get_main_queue_handle_4CF`,
/// `_dispatch_main_queue_callback_4CF`), looked up at run time; if a
/// toolchain ever drops them, installing throws instead of failing to link.
public final class MainQueuePump: @unchecked Sendable {
    // @unchecked Sendable: `source` is set in init and cleared by `remove()`,
    // which the caller runs on the main thread.

    private var source: UnsafeMutablePointer<GSource>?

    /// Why the pump cannot run.
    public struct Unavailable: Error, CustomStringConvertible, Sendable {
        /// Why the pump cannot be installed, and what to do instead.
        public let description: String
    }

    /// Attaches a pump to `context` (nil: GLib's global default context, the
    /// one `g_main_loop_new(nil, …)` runs) at `priority` (GLib's
    /// `G_PRIORITY_DEFAULT` by default, as Foundation services its main queue
    /// on every run-loop pass).
    ///
    /// Throws ``Unavailable`` if this toolchain's libdispatch does not offer
    /// the main-queue entry points, or if the main queue already belongs to
    /// libdispatch's threads (an `async` main or `dispatchMain()` ran).
    public static func install(on context: OpaquePointer? = nil,
                               priority: Int32 = 0) throws(Unavailable) -> MainQueuePump {
        let entry = try DispatchMainQueue.entryPoints()
        let fd = entry.handle()
        if fd < 0 {
            throw Unavailable(description: "libdispatch's main queue has no wake-up descriptor: dispatchMain() or an async main already gave the main queue to libdispatch's threads; MainQueuePump needs a synchronous main that runs GLib")
        }
        let raw = g_source_new(pumpSourceFuncs, guint(MemoryLayout<AioShimPumpSource>.size))!
        let pump = UnsafeMutableRawPointer(raw).assumingMemoryBound(to: AioShimPumpSource.self)
        pump.pointee.fd_tag = g_source_add_unix_fd(raw, fd, G_IO_IN)
        pump.pointee.armed = 1
        g_source_set_priority(raw, priority)
        g_source_set_name(raw, "swift-main-queue")
        g_source_attach(raw, context)
        return MainQueuePump(source: raw)
    }

    private init(source: UnsafeMutablePointer<GSource>) {
        self.source = source
    }

    deinit {
        remove()
    }

    /// Detaches the pump; main-actor work queued afterwards waits for another
    /// pump (or never runs). Idempotent.
    public func remove() {
        guard let source else { return }
        self.source = nil
        g_source_destroy(source)
        g_source_unref(source)
    }

    /// Runs everything queued on the main queue now, on the main thread: the
    /// work a loop left behind when it quit (an `await MainActor.run` whose
    /// caller would otherwise never resume). Drains until the queue stays
    /// empty. Traps off the main thread.
    public func drainNow() {
        guard isMainThread else {
            fatalError("MainQueuePump.drainNow(): called off the main thread (rule: the main queue is drained on the main thread only)")
        }
        guard let entry = try? DispatchMainQueue.entryPoints() else { return }
        let fd = entry.handle()
        guard fd >= 0 else { return }
        while DispatchMainQueue.resetWakeup(fd) {
            entry.drain(nil)
        }
    }

    /// Whether the calling thread is the process's main thread, the one
    /// libdispatch binds the main queue to (and the main actor runs on).
    public static var isMainThread: Bool { aio_shim_gettid() == getpid() }
    private var isMainThread: Bool { Self.isMainThread }
}

/// libdispatch's main-queue entry points for run loops.
enum DispatchMainQueue {
    typealias HandleFunction = @convention(c) () -> Int32
    typealias DrainFunction = @convention(c) (UnsafeMutableRawPointer?) -> Void

    struct EntryPoints {
        let handle: HandleFunction
        let drain: DrainFunction
    }

    /// Looked up once per process.
    static let lookup: Result<EntryPoints, MainQueuePump.Unavailable> = Result { () throws(MainQueuePump.Unavailable) in
        try resolve()
    }

    static func entryPoints() throws(MainQueuePump.Unavailable) -> EntryPoints {
        try lookup.get()
    }

    private static func resolve() throws(MainQueuePump.Unavailable) -> EntryPoints {
        guard let handle = dlsym(nil, "_dispatch_get_main_queue_handle_4CF"),
              let drain = dlsym(nil, "_dispatch_main_queue_callback_4CF") else {
            throw MainQueuePump.Unavailable(description: "this toolchain's libdispatch does not export _dispatch_get_main_queue_handle_4CF/_dispatch_main_queue_callback_4CF; MainQueuePump cannot drain the main queue")
        }
        return EntryPoints(handle: unsafeBitCast(handle, to: HandleFunction.self),
                           drain: unsafeBitCast(drain, to: DrainFunction.self))
    }

    /// Reads (resets) the main queue's eventfd; returns whether it was set.
    /// libdispatch only writes it; the run loop must read it before draining.
    static func resetWakeup(_ fd: Int32) -> Bool {
        var value: UInt64 = 0
        return Glibc.read(fd, &value, 8) == 8
    }
}

// SAFETY: written once here, then only read by GLib.
nonisolated(unsafe) private let pumpSourceFuncs: UnsafeMutablePointer<GSourceFuncs> = {
    let table = UnsafeMutablePointer<GSourceFuncs>.allocate(capacity: 1)
    table.initialize(to: GSourceFuncs(
        prepare: pumpPrepare, check: pumpCheck, dispatch: pumpDispatch,
        finalize: nil, closure_callback: nil, closure_marshal: nil))
    return table
}()

@inline(__always)
private func pumpSource(_ source: UnsafeMutablePointer<GSource>?) -> UnsafeMutablePointer<AioShimPumpSource> {
    // SAFETY: every source using pumpSourceFuncs was made by `install` with
    // the size of AioShimPumpSource, whose first member is the GSource.
    UnsafeMutableRawPointer(source!).assumingMemoryBound(to: AioShimPumpSource.self)
}

/// Polls the main queue's fd only while the main thread iterates: on any
/// other thread the fd is left out of the poll set, so a readable fd cannot
/// make that thread spin, and the drain (main thread only) is never tried.
private func pumpPrepare(_ source: UnsafeMutablePointer<GSource>?,
                         _ timeout: UnsafeMutablePointer<gint>?) -> gboolean {
    let pump = pumpSource(source)
    let wanted: Int32 = MainQueuePump.isMainThread ? 1 : 0
    if pump.pointee.armed != wanted {
        pump.pointee.armed = wanted
        // Out of the poll set altogether on other threads (not registered
        // with an empty event mask): added back when the main thread iterates.
        if wanted == 1 {
            if let entry = try? DispatchMainQueue.entryPoints(), case let fd = entry.handle(), fd >= 0 {
                pump.pointee.fd_tag = g_source_add_unix_fd(source, fd, G_IO_IN)
            } else {
                pump.pointee.armed = 0
            }
        } else if let tag = pump.pointee.fd_tag {
            g_source_remove_unix_fd(source, tag)
            pump.pointee.fd_tag = nil
        }
    }
    timeout?.pointee = -1
    return AIO_SHIM_FALSE
}

private func pumpCheck(_ source: UnsafeMutablePointer<GSource>?) -> gboolean {
    let pump = pumpSource(source)
    guard pump.pointee.armed == 1, MainQueuePump.isMainThread, let tag = pump.pointee.fd_tag else {
        return AIO_SHIM_FALSE
    }
    let revents = g_source_query_unix_fd(source, tag)
    return revents.rawValue & G_IO_IN.rawValue != 0 ? AIO_SHIM_TRUE : AIO_SHIM_FALSE
}

private func pumpDispatch(_ source: UnsafeMutablePointer<GSource>?,
                          _ callback: GSourceFunc?, _ userData: gpointer?) -> gboolean {
    guard MainQueuePump.isMainThread, let entry = try? DispatchMainQueue.entryPoints() else {
        return AIO_SHIM_TRUE
    }
    let fd = entry.handle()
    if fd >= 0 {
        // Reset first, then drain one snapshot; libdispatch writes the fd
        // again if work remains or arrives meanwhile, so nothing is lost.
        _ = DispatchMainQueue.resetWakeup(fd)
        entry.drain(nil)
    }
    return AIO_SHIM_TRUE  // G_SOURCE_CONTINUE
}
