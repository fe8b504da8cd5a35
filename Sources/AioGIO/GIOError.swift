import CGIOShim

/// A `GError` as a Swift error: its domain (the quark's string, e.g.
/// `"g-io-error-quark"`), its code within that domain, and its message.
///
/// `GIOAsync.call` throws it when the operation's `_finish` function set its
/// `GError` out-parameter. It is a plain value: the `GError` it was made from
/// has already been freed.
///
/// GLib: `GError`, `g_quark_to_string()`.
public struct GLibError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The error domain's quark as a string, e.g. `"g-io-error-quark"` for
    /// `G_IO_ERROR` or `"g-dbus-error-quark"` for `G_DBUS_ERROR`.
    public let domain: String
    /// The code within `domain`, e.g. `G_IO_ERROR_NOT_FOUND` for `G_IO_ERROR`.
    public let code: Int32
    /// The human-readable message GLib or the peer gave.
    public let message: String

    /// The domain string of `G_IO_ERROR`.
    public static let ioErrorDomain = "g-io-error-quark"

    /// An error with the given parts, e.g. to compare with a thrown one.
    public init(domain: String, code: Int32, message: String) {
        self.domain = domain
        self.code = code
        self.message = message
    }

    /// Copies `error` and frees it (`g_error_free`): the caller gives up its
    /// reference and must not touch the pointer afterwards.
    ///
    /// Thread-safe: may be called from any thread.
    ///
    /// GLib: `g_error_free()`.
    public init(taking error: UnsafeMutablePointer<GError>) {
        let quark = error.pointee.domain
        domain = g_quark_to_string(quark).map { String(cString: $0) } ?? "quark \(quark)"
        code = error.pointee.code
        message = error.pointee.message.map { String(cString: $0) } ?? ""
        g_error_free(error)
    }

    /// Whether this is the `G_IO_ERROR` error `ioCode`, e.g.
    /// `error.isIOError(G_IO_ERROR_NOT_FOUND)`.
    ///
    /// GLib: `g_error_matches()`.
    public func isIOError(_ ioCode: GIOErrorEnum) -> Bool {
        domain == Self.ioErrorDomain && code == Int32(bitPattern: ioCode.rawValue)
    }

    /// `domain`, `code` and `message`, e.g.
    /// `g-io-error-quark 1: Error opening file /nope: No such file or directory`.
    public var description: String { "\(domain) \(code): \(message)" }
}

/// A `GIOAsync.call` whose callback did not run within its `timeout`.
///
/// When it is thrown, the call's `GCancellable` has been cancelled and the
/// Swift caller has been resumed, but GIO may still hold the operation: its
/// callback runs whenever the context is next iterated, and only then does
/// the bridge let go of what `start` and `finish` captured. A result that
/// arrives that late is dropped. See `GIOAsync.call` for the rule this puts
/// on the memory handed to GIO.
///
/// GLib: `g_cancellable_cancel()`.
public struct GIOTimeoutError: Error, Sendable, CustomStringConvertible {
    /// The timeout the call was given.
    public let timeout: Duration
    /// Whether some thread owned (was iterating) the call's `GMainContext`
    /// when the timeout expired. `false` is the usual sign of a context that
    /// nobody iterates: GIO can deliver the callback only when it is iterated.
    public let contextWasOwned: Bool
    /// Whether `start` had run: `false` means the call never reached GIO,
    /// because the context's owner never dispatched the bridge's start source.
    public let started: Bool

    /// Why the call gave up, and the likely cause.
    public var description: String {
        let what = started ? "the GIO callback did not run" : "the GIO operation was never started"
        let why = contextWasOwned
            ? "a thread owns its GMainContext, so the operation itself is slow or stuck; it was cancelled"
            : "no thread was iterating its GMainContext, and GIO runs the callback only there"
        return "GIOAsync.call: \(what) within \(timeout): \(why)"
    }
}
