import Glibc

/// A system call failed because of the environment (out of descriptors, out of
/// memory, a limit), not because of a bug in the caller.
///
/// It carries the failing call's name and `errno`, so a log line says both:
/// `eventfd: Too many open files (errno 24)`.
public struct SystemCallError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The C function that failed, e.g. `"eventfd"`.
    public let call: String
    /// The `errno` value it left.
    public let errno: Int32

    /// The failure of `call`, with the `errno` it left.
    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    /// A one-line description for logs and debugging.
    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Errors thrown by the library's public API.
public enum AioError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A system call failed; see ``SystemCallError``.
    case system(SystemCallError)
    /// A descriptor handed to the library is negative or not open.
    case badDescriptor(fd: Int32, reason: String)
    /// An async wait on a descriptor that has a handler registered with
    /// `setHandler`: the two would replace each other's callbacks.
    case descriptorInUse(fd: Int32, handler: String)
    /// An io_uring submission on a context without a ring (its fd monitor
    /// is not io_uring; see ``AioContext/hasRing``).
    case noRing(context: String)
    /// An argument the library rejects before any system call (a negative
    /// offset, a count too large), named with the rule it breaks.
    case invalidArgument(String)

    /// A one-line description for logs and debugging.
    public var description: String {
        switch self {
        case .system(let error): return error.description
        case .badDescriptor(let fd, let reason): return "bad file descriptor \(fd): \(reason)"
        case .descriptorInUse(let fd, let handler):
            return "file descriptor \(fd) has handler '\(handler)'; an async wait cannot share a descriptor with setHandler"
        case .noRing(let context):
            return "AioContext '\(context)' has no io_uring ring (its fd monitor is not io_uring)"
        case .invalidArgument(let rule): return "invalid argument: \(rule)"
        }
    }
}
