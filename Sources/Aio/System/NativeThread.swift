import CGLibShim
import Glibc

/// A joinable pthread running a Swift closure, with a name that shows up in
/// `top -H`, gdb and crash reports.
public final class NativeThread: @unchecked Sendable {
    // SAFETY: `handle` is written once in init before the object is shared and
    // read by `join`, which the caller calls once.
    private var handle: pthread_t = 0
    private let joined = Locked(false)
    /// The name given at creation (truncated to 15 bytes for the kernel).
    public let name: String

    fileprivate final class Start {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
    }

    /// Starts a thread that runs `body`.
    ///
    /// Thread-safe. Throws if the system refuses to create the thread.
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws(AioError) {
        self.name = name
        let start = Unmanaged.passRetained(Start(name: name, body: body))
        // SAFETY: the +1 on `start` is balanced by takeRetainedValue in the trampoline,
        // or below if pthread_create fails.
        let rc = pthread_create(&handle, nil, nativeThreadEntry, start.toOpaque())
        if rc != 0 {
            start.release()
            throw .system(SystemCallError(call: "pthread_create", errno: rc))
        }
    }

    /// Starts a thread that nobody joins: its resources go back to the system
    /// when `body` returns. Used for pool workers, which exit on their own.
    static func detached(name: String, _ body: @escaping @Sendable () -> Void) throws(AioError) {
        let start = Unmanaged.passRetained(Start(name: name, body: body))
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        defer { pthread_attr_destroy(&attr) }
        var handle: pthread_t = 0
        let rc = pthread_create(&handle, &attr, nativeThreadEntry, start.toOpaque())
        if rc != 0 {
            start.release()
            throw .system(SystemCallError(call: "pthread_create", errno: rc))
        }
    }

    /// Waits for the thread to finish. Call it once, from another thread.
    public func join() {
        let first = joined.withLock { done -> Bool in
            if done { return false }
            done = true
            return true
        }
        precondition(first, "NativeThread '\(name)': join() called twice")
        precondition(pthread_equal(handle, pthread_self()) == 0,
                     "NativeThread '\(name)': a thread cannot join itself")
        pthread_join(handle, nil)
    }
}

/// The start routine of every NativeThread: names the thread and runs its body.
private func nativeThreadEntry(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    // SAFETY: balances the passRetained of the thread's Start in
    // NativeThread.init / detached.
    let start = Unmanaged<NativeThread.Start>.fromOpaque(raw!).takeRetainedValue()
    let shortName = String(decoding: start.name.utf8.prefix(15), as: UTF8.self)
    _ = aio_shim_pthread_setname_np(pthread_self(), shortName)
    start.body()
    return nil
}
