// Small helpers for the GLib, GIO and GDBus C API as Swift imports it.
//
// GLib's object pointers come in two shapes: types whose struct is private
// (GVariant, GDBusConnection, GFile, ...) import as `OpaquePointer`; types
// whose struct is public (GError, GCancellable, GInputStream, ...) import as
// `UnsafeMutablePointer<T>`. Variadic functions (g_variant_new("(s)", ...),
// g_dbus_method_invocation_return_error) do not import at all, so replies are
// built from the typed constructors (g_variant_new_string, _tuple, ...).

import CGIOShim
import CGLibShim
import Glibc

/// Log lines go through here so that every line carries who wrote it.
func log(_ who: String, _ message: String) {
    print("[\(who)] \(message)")
    fflush(nil)  // a test reading our piped output sees each line at once
}

// MARK: GError

/// Takes a GError out of an out-parameter: returns its message and frees it.
func takeMessage(_ error: inout UnsafeMutablePointer<GError>?) -> String {
    guard let e = error else { return "unknown error" }
    let message = String(cString: e.pointee.message)
    g_error_free(e)
    error = nil
    return message
}

// MARK: GVariant

/// A GVariant reference that may cross threads. GVariants are immutable and
/// their reference counting is atomic, so handing one to another thread is safe.
struct Variant: @unchecked Sendable {
    let raw: OpaquePointer

    static func string(_ s: String) -> Variant { Variant(raw: g_variant_new_string(s)) }
    static func uint32(_ v: UInt32) -> Variant { Variant(raw: g_variant_new_uint32(v)) }
    static func uint64(_ v: UInt64) -> Variant { Variant(raw: g_variant_new_uint64(guint64(v))) }

    /// A tuple, e.g. the body of a method reply: `(s)`, `(tt)`. Takes the
    /// children's floating references.
    static func tuple(_ children: [Variant]) -> Variant {
        var raws: [OpaquePointer?] = children.map(\.raw)
        return Variant(raw: g_variant_new_tuple(&raws, gsize(raws.count)))
    }

    /// An `a{st}` dictionary, in the order given.
    static func dictionary(_ entries: KeyValuePairs<String, UInt64>) -> Variant {
        var raws: [OpaquePointer?] = entries.map { key, value in
            g_variant_new_dict_entry(g_variant_new_string(key), g_variant_new_uint64(guint64(value)))
        }
        return Variant(raw: g_variant_new_array(aio_gio_variant_type("{st}"), &raws, gsize(raws.count)))
    }

    /// Child `index` of a tuple (a method call's parameters), as a Swift value.
    /// GDBus has already checked the parameters against the introspection
    /// data, so the types are known to be right.
    func string(at index: Int) -> String {
        let child = g_variant_get_child_value(raw, gsize(index))!
        defer { g_variant_unref(child) }
        return String(cString: g_variant_get_string(child, nil))
    }

    func uint32(at index: Int) -> UInt32 {
        let child = g_variant_get_child_value(raw, gsize(index))!
        defer { g_variant_unref(child) }
        return g_variant_get_uint32(child)
    }

    func uint64(at index: Int) -> UInt64 {
        let child = g_variant_get_child_value(raw, gsize(index))!
        defer { g_variant_unref(child) }
        return UInt64(g_variant_get_uint64(child))
    }

    /// Child `index` of a tuple when it is an `as` array of strings.
    func strings(at index: Int) -> [String] {
        let array = g_variant_get_child_value(raw, gsize(index))!
        defer { g_variant_unref(array) }
        return (0..<g_variant_n_children(array)).map { i in
            let child = g_variant_get_child_value(array, i)!
            defer { g_variant_unref(child) }
            return String(cString: g_variant_get_string(child, nil))
        }
    }

    /// Child `index` of a tuple when it is an `a{st}` dictionary.
    func dictionary(at index: Int) -> [String: UInt64] {
        let dict = g_variant_get_child_value(raw, gsize(index))!
        defer { g_variant_unref(dict) }
        var result: [String: UInt64] = [:]
        for i in 0..<g_variant_n_children(dict) {
            let entry = Variant(raw: g_variant_get_child_value(dict, i)!)
            defer { g_variant_unref(entry.raw) }
            result[entry.string(at: 0)] = entry.uint64(at: 1)
        }
        return result
    }

    /// GVariant's text format, as `gdbus call` prints it.
    var text: String {
        let s = g_variant_print(raw, AIO_SHIM_FALSE)!
        defer { g_free(s) }
        return String(cString: s)
    }
}

// MARK: D-Bus errors

/// A D-Bus error: a name such as `org.freedesktop.DBus.Error.InvalidArgs` and
/// a message for humans. The service replies with these; the demo's client
/// receives them.
struct DBusError: Error, Sendable, Equatable, CustomStringConvertible {
    let name: String
    let message: String

    static func invalidArgs(_ message: String) -> DBusError {
        DBusError(name: "org.freedesktop.DBus.Error.InvalidArgs", message: message)
    }
    static let shuttingDown = DBusError(name: "org.freedesktop.DBus.Error.Failed", message: "shutting down")

    /// Maps a GIO error from GFile or GInputStream to the D-Bus error a
    /// client can act on, and frees it. (g_dbus_method_invocation_return_gerror
    /// would encode unmapped GIO errors as `org.gtk.GDBus.UnmappedGError...`.)
    init(taking error: inout UnsafeMutablePointer<GError>?) {
        let code = error.map { $0.pointee.domain == g_io_error_quark() ? Int32($0.pointee.code) : -1 } ?? -1
        let message = takeMessage(&error)
        switch UInt32(bitPattern: code) {
        case G_IO_ERROR_CANCELLED.rawValue:
            self = .shuttingDown
        case G_IO_ERROR_NOT_FOUND.rawValue:
            self.init(name: "org.freedesktop.DBus.Error.FileNotFound", message: message)
        case G_IO_ERROR_PERMISSION_DENIED.rawValue:
            self.init(name: "org.freedesktop.DBus.Error.AccessDenied", message: message)
        case G_IO_ERROR_IS_DIRECTORY.rawValue, G_IO_ERROR_NOT_DIRECTORY.rawValue,
             G_IO_ERROR_INVALID_FILENAME.rawValue, G_IO_ERROR_FILENAME_TOO_LONG.rawValue,
             G_IO_ERROR_NOT_REGULAR_FILE.rawValue:
            self = .invalidArgs(message)
        default:
            self.init(name: "org.freedesktop.DBus.Error.Failed", message: message)
        }
    }

    init(name: String, message: String) {
        self.name = name
        self.message = message
    }

    var description: String { "\(name): \(message)" }
}

// MARK: GObject pointers that cross threads

/// A pending method call. GDBus hands us one reference; exactly one
/// `return…` call gives it back (each consumes the reference), so every
/// call is answered exactly once. Replying is thread-safe in GDBus, but the
/// service only replies on the loop thread.
struct Invocation: @unchecked Sendable {
    let raw: OpaquePointer  // GDBusMethodInvocation*

    func reply(_ value: Variant) {
        g_dbus_method_invocation_return_value(raw, value.raw)
    }

    func reply(_ error: DBusError) {
        g_dbus_method_invocation_return_dbus_error(raw, error.name, error.message)
    }
}

/// A GCancellable shared by the service and its pool jobs. Cancelling and
/// checking a GCancellable are thread-safe.
struct Cancellable: @unchecked Sendable {
    let raw: UnsafeMutablePointer<GCancellable>

    init() { raw = g_cancellable_new() }
    var isCancelled: Bool { g_cancellable_is_cancelled(raw) != 0 }
    func cancel() { g_cancellable_cancel(raw) }
    func release() { g_object_unref(raw) }
}
