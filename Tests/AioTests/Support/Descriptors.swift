import Aio
import Glibc
import Logging

/// A pipe whose ends close when the value goes away.
final class Pipe: @unchecked Sendable {
    let readFD: Int32
    let writeFD: Int32
    private var closed: Set<Int32> = []

    init() {
        var fds: [Int32] = [-1, -1]
        precondition(pipe(&fds) == 0, "pipe failed: \(errno)")
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readFD = fds[0]
        writeFD = fds[1]
    }

    func write(_ byte: UInt8 = 1) {
        var b = byte
        precondition(Glibc.write(writeFD, &b, 1) == 1)
    }

    /// Reads whatever is there; returns the byte count (0 at EOF, -1 if empty).
    @discardableResult
    func drain() -> Int {
        var buffer = [UInt8](repeating: 0, count: 256)
        var total = 0
        while true {
            let n = Glibc.read(readFD, &buffer, buffer.count)
            if n > 0 { total += n; continue }
            if n == 0 { return total }
            return total > 0 ? total : -1
        }
    }

    func closeWriteEnd() { close(writeFD) }
    func closeReadEnd() { close(readFD) }

    func close(_ fd: Int32) {
        if closed.insert(fd).inserted { Glibc.close(fd) }
    }

    deinit {
        close(readFD)
        close(writeFD)
    }
}

/// A connected UNIX socket pair, both ends non-blocking.
final class SocketPair: @unchecked Sendable {
    let a: Int32
    let b: Int32

    init() {
        var fds: [Int32] = [-1, -1]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        a = fds[0]
        b = fds[1]
    }

    deinit {
        close(a)
        close(b)
    }
}

/// Raises the soft descriptor limit to `wanted` (or the hard limit).
func raiseDescriptorLimit(to wanted: Int) {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    if Int(limit.rlim_cur) < wanted {
        limit.rlim_cur = min(rlim_t(wanted), limit.rlim_max)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}

/// Collects a context's log messages at `.warning` and above, through a
/// swift-log handler installed as the context's logger.
final class WarningLog: @unchecked Sendable {
    private let lock = NSLockLite()
    private var lines: [String] = []
    private var records: [(level: Logger.Level, metadata: Logger.Metadata)] = []
    func append(_ line: String) { lock.with { lines.append(line) } }
    var all: [String] { lock.with { lines } }
    var metadata: [Logger.Metadata] { lock.with { records.map(\.metadata) } }

    /// Makes `ctx` log here (the context keeps adding its own metadata).
    func capture(_ ctx: AioContext) {
        ctx.logger = Logger(label: "aio") { _ in Handler(log: self) }
    }

    struct Handler: LogHandler {
        let log: WarningLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            guard event.level >= .warning else { return }
            log.lock.with {
                log.lines.append("\(event.message)")
                log.records.append((event.level, metadata.merging(event.metadata ?? [:]) { $1 }))
            }
        }
    }
}

/// A tiny pthread mutex for test-side state.
final class NSLockLite: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    func with<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }
}
