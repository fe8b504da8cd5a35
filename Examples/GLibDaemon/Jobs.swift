// The work behind the service's methods. Each function runs on a worker of
// the AioContext's thread pool, never on the loop thread, so it may block on
// disk or sleep. It must not touch the service's state; it gets its inputs as
// values, returns a Sendable result or throws a DBusError, and the pool
// carries that back to the loop thread, where the reply is sent.
//
// Every job watches the service's GCancellable: on SIGTERM a running job
// stops at its next check and fails with `DBusError.shuttingDown`, so
// shutdown never waits for a long hash or sleep to finish.

import CGIOShim
import CGLibShim
import Glibc

enum Jobs {
    /// SHA-256 of a file's contents, as lowercase hex (what `sha256sum` prints).
    static func sha256(ofFileAt path: String, cancellable: Cancellable) throws(DBusError) -> String {
        let file = g_file_new_for_path(path)!
        defer { g_object_unref(UnsafeMutableRawPointer(file)) }
        var error: UnsafeMutablePointer<GError>?
        // Fails with NOT_FOUND, IS_DIRECTORY, PERMISSION_DENIED, ...
        guard let fileStream = g_file_read(file, cancellable.raw, &error) else {
            throw DBusError(taking: &error)
        }
        defer { g_object_unref(fileStream) }
        // Only regular files: /dev/zero or a FIFO would keep a worker busy
        // forever.
        guard let info = g_file_input_stream_query_info(fileStream, "standard::type", cancellable.raw, &error) else {
            throw DBusError(taking: &error)
        }
        let type = g_file_info_get_file_type(info)
        g_object_unref(UnsafeMutableRawPointer(info))
        if type != G_FILE_TYPE_REGULAR {
            throw .invalidArgs("\(path) is not a regular file")
        }
        // SAFETY: a GFileInputStream is a GInputStream (its first member);
        // this is the C cast G_INPUT_STREAM(fileStream).
        let stream = UnsafeMutableRawPointer(fileStream).assumingMemoryBound(to: GInputStream.self)

        let checksum = g_checksum_new(G_CHECKSUM_SHA256)!
        defer { g_checksum_free(checksum) }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            // Each read checks the cancellable first.
            let count = buffer.withUnsafeMutableBytes { bytes in
                g_input_stream_read(stream, bytes.baseAddress, gsize(bytes.count), cancellable.raw, &error)
            }
            if count < 0 { throw DBusError(taking: &error) }
            if count == 0 { break }
            g_checksum_update(checksum, buffer, gssize(count))
        }
        return String(cString: g_checksum_get_string(checksum))
    }

    /// Total size in bytes and number of the regular files under a directory,
    /// recursively; symbolic links are not followed (what
    /// `find DIR -type f -printf '%s\n'` sums).
    static func directorySize(at path: String, cancellable: Cancellable) throws(DBusError) -> (bytes: UInt64, files: UInt64) {
        var bytes: UInt64 = 0
        var files: UInt64 = 0
        var directories = [path]
        var error: UnsafeMutablePointer<GError>?
        while let directory = directories.popLast() {
            let file = g_file_new_for_path(directory)!
            defer { g_object_unref(UnsafeMutableRawPointer(file)) }
            // Fails with NOT_FOUND, NOT_DIRECTORY, PERMISSION_DENIED, ...
            guard let children = g_file_enumerate_children(
                file, "standard::name,standard::type,standard::size",
                G_FILE_QUERY_INFO_NOFOLLOW_SYMLINKS, cancellable.raw, &error)
            else {
                throw DBusError(taking: &error)
            }
            defer { g_object_unref(children) }
            // next_file returns nil at the end, or nil and an error.
            while let info = g_file_enumerator_next_file(children, cancellable.raw, &error) {
                defer { g_object_unref(UnsafeMutableRawPointer(info)) }
                switch g_file_info_get_file_type(info) {
                case G_FILE_TYPE_REGULAR:
                    bytes += UInt64(g_file_info_get_size(info))
                    files += 1
                case G_FILE_TYPE_DIRECTORY:
                    directories.append(directory + "/" + String(cString: g_file_info_get_name(info)))
                default:
                    break  // symbolic links, sockets, devices: not counted
                }
            }
            if error != nil { throw DBusError(taking: &error) }
        }
        return (bytes, files)
    }

    /// Sleeps, but wakes at once when the service shuts down. The
    /// cancellable's fd becomes readable when it is cancelled, so the
    /// worker sleeps in poll(2) on that fd with the sleep as the timeout.
    static func sleep(milliseconds: UInt32, cancellable: Cancellable) throws(DBusError) -> String {
        var pollFD = GPollFD()
        let hasFD = g_cancellable_make_pollfd(cancellable.raw, &pollFD) != 0
        defer { if hasFD { g_cancellable_release_fd(cancellable.raw) } }
        let deadline = g_get_monotonic_time() + gint64(milliseconds) * 1000
        while !cancellable.isCancelled {
            let remainingMs = (deadline - g_get_monotonic_time() + 999) / 1000
            if remainingMs <= 0 { return "slept \(milliseconds) ms" }
            // Without an fd (not expected on Linux), look again every 50 ms.
            _ = g_poll(&pollFD, hasFD ? 1 : 0, gint(hasFD ? remainingMs : min(remainingMs, 50)))  // EINTR: loop
        }
        throw .shuttingDown
    }
}
