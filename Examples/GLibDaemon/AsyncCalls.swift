// GIO calls as Swift async functions, through AioGIO's GIOAsync.call.
//
// The demo client awaits these on the main actor (a MainQueuePump runs the
// main actor's jobs inside the GMainLoop): the call starts on the main
// thread, GIO delivers its callback to the default GMainContext that the
// loop iterates, and the task resumes on the main thread. Nothing blocks the
// loop meanwhile, so the service keeps answering, even its own client.

import AioGIO
import CGIOShim
import CGLibShim

/// A D-Bus method call on `connection`: the reply's body (a tuple, one
/// reference for the caller), or the D-Bus error as a `DBusError`.
func dbusCall(on connection: OpaquePointer, destination: String, path: String, interface: String,
              method: String, _ arguments: [Variant] = []) async throws -> Variant {
    let parameters = Variant.tuple(arguments)
    do {
        let reply = try await GIOAsync.call { cancellable, callback, userData in
            // GDBus sinks the floating `parameters`.
            g_dbus_connection_call(connection, destination, path, interface, method, parameters.raw,
                                   nil, G_DBUS_CALL_FLAGS_NONE, 15_000, cancellable, callback, userData)
        } finish: { result, error in
            g_dbus_connection_call_finish(connection, result, error).map(Variant.init(raw:))
        }
        guard let reply else {
            throw DBusError(name: "org.freedesktop.DBus.Error.Failed", message: "\(method): no reply body")
        }
        return reply
    } catch let error as GLibError {
        throw DBusError(gio: error)
    }
}

/// A whole file's contents, read by GIO (`g_file_load_contents_async`).
func readFile(_ path: String) async throws -> [UInt8] {
    let file = GFileHandle(path: path)
    defer { file.release() }
    return try await GIOAsync.call { cancellable, callback, userData in
        g_file_load_contents_async(file.raw, cancellable, callback, userData)
    } finish: { result, error in
        var contents: UnsafeMutablePointer<CChar>?
        var length: gsize = 0
        guard g_file_load_contents_finish(file.raw, result, &contents, &length, nil, error) != 0,
              let contents else { return [] }  // the bridge throws the GError
        defer { g_free(contents) }
        return contents.withMemoryRebound(to: UInt8.self, capacity: Int(length)) {
            Array(UnsafeBufferPointer(start: $0, count: Int(length)))
        }
    }
}

/// A GFile reference that may cross threads: a GFile is immutable, and its
/// reference counting is atomic.
struct GFileHandle: @unchecked Sendable {
    let raw: OpaquePointer
    init(path: String) { raw = g_file_new_for_path(path) }
    func release() { g_object_unref(UnsafeMutableRawPointer(raw)) }
}

extension DBusError {
    /// A failed D-Bus call's GError as the bridge reports it: the remote
    /// error's name is encoded in the message as `GDBus.Error:NAME: text`.
    init(gio error: GLibError) {
        let prefix = "GDBus.Error:"
        if error.message.hasPrefix(prefix), let colon = error.message.dropFirst(prefix.count).firstIndex(of: ":") {
            let name = String(error.message[error.message.index(error.message.startIndex, offsetBy: prefix.count)..<colon])
            let text = error.message[error.message.index(after: colon)...].drop { $0 == " " }
            self.init(name: name, message: String(text))
        } else {
            self.init(name: "(local error)", message: error.description)
        }
    }
}
