import CAioURing
import Glibc

/// A pointer handed to a worker thread for the length of one call, which
/// waits for that worker (the thread pool's path of the file I/O calls).
private struct SendableBuffer: @unchecked Sendable {
    let base: UnsafeMutableRawPointer?
    let count: Int
}

/// Asynchronous file I/O at an offset: `pread`/`pwrite`/`fsync`.
///
/// Through the context's ring when it has one (``hasRing``), through its
/// thread pool otherwise: the same calls, the same results. Each is `async`
/// (for tasks) and has a callback form (for the loop's own code), whose
/// callback runs on the context's thread.
///
/// - A short read (end of file) returns the count read; 0 at or after the end.
/// - Failures throw ``AioError/system(_:)`` with the call (`pread`, `pwrite`,
///   `fsync`) and its errno, whichever path ran.
/// - Arguments are checked before anything is submitted: a negative
///   descriptor throws ``AioError/badDescriptor(fd:reason:)``, a negative
///   offset or a count over `Int32.max` ``AioError/invalidArgument(_:)``.
/// - Cancelling the task cancels the operation and waits for it to end, so
///   the kernel never touches a buffer after the call returned or threw.
///   The call then throws `CancellationError`, unless the operation had
///   already finished (its result is returned).
extension AioContext {
    /// Reads up to `buffer.count` bytes of `fd` at `offset` into `buffer`.
    /// Returns the count read. QEMU: `luring_co_submit()` / `laio_co_submit()`.
    public func read(from fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) async throws -> Int {
        try await transfer(call: "pread", fd: fd, buffer: SendableBuffer(base: buffer.baseAddress, count: buffer.count),
                           offset: offset, write: false)
    }

    /// Writes `buffer` to `fd` at `offset`. Returns the count written (a
    /// short write is returned as it is).
    public func write(to fd: Int32, from buffer: UnsafeRawBufferPointer, at offset: Int64) async throws -> Int {
        try await transfer(call: "pwrite", fd: fd,
                           buffer: SendableBuffer(base: UnsafeMutableRawPointer(mutating: buffer.baseAddress), count: buffer.count),
                           offset: offset, write: true)
    }

    /// The async read/write: the ring, or a pool job.
    private func transfer(call: StaticString, fd: Int32, buffer: SendableBuffer, offset: Int64,
                          write: Bool) async throws -> Int {
        try Self.checkFileArguments(fd: fd, count: buffer.count, offset: offset)
        if buffer.count == 0 { return 0 }
        if handlers.ring != nil {
            var entry = io_uring_sqe()
            if write {
                aio_uring_prep_write(&entry, fd, buffer.base, UInt32(buffer.count), UInt64(offset))
            } else {
                aio_uring_prep_read(&entry, fd, buffer.base, UInt32(buffer.count), UInt64(offset))
            }
            return try Self.countOrThrow(try await submitEntry(entry), call: call)
        }
        return try await threadPool.run {
            try Self.retrying(call) {
                write ? Glibc.pwrite(fd, buffer.base, buffer.count, off_t(offset))
                      : Glibc.pread(fd, buffer.base, buffer.count, off_t(offset))
            }
        }
    }

    /// Reads up to `count` bytes of `fd` at `offset`; the array is shorter
    /// at the end of the file.
    public func read(from fd: Int32, count: Int, at offset: Int64) async throws -> [UInt8] {
        try Self.checkFileArguments(fd: fd, count: count, offset: offset)
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
        defer { storage.deallocate() }
        let got = try await read(from: fd, into: UnsafeMutableRawBufferPointer(rebasing: storage[0..<count]), at: offset)
        return Array(UnsafeRawBufferPointer(rebasing: storage[0..<got]).bindMemory(to: UInt8.self))
    }

    /// Writes `bytes` to `fd` at `offset`. Returns the count written.
    public func write(to fd: Int32, _ bytes: [UInt8], at offset: Int64) async throws -> Int {
        try Self.checkFileArguments(fd: fd, count: bytes.count, offset: offset)
        // The array's storage stays alive (and put) for the whole call: the
        // copy below is what the kernel reads.
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        defer { storage.deallocate() }
        bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: storage[0..<bytes.count]).copyMemory(from: $0) }
        return try await write(to: fd, from: UnsafeRawBufferPointer(rebasing: storage[0..<bytes.count]), at: offset)
    }

    /// Flushes `fd` to its device: `fsync`, or `fdatasync` with `dataOnly`.
    public func fsync(_ fd: Int32, dataOnly: Bool = false) async throws {
        try Self.checkFileArguments(fd: fd, count: 0, offset: 0)
        if handlers.ring != nil {
            var entry = io_uring_sqe()
            aio_uring_prep_fsync(&entry, fd, dataOnly ? IORING_FSYNC_DATASYNC : 0)
            _ = try Self.countOrThrow(try await submitEntry(entry), call: "fsync")
            return
        }
        _ = try await threadPool.run {
            try Self.retrying("fsync") { dataOnly ? Glibc.fdatasync(fd) : Glibc.fsync(fd) }
        }
    }

    // MARK: Callback forms

    /// Reads up to `count` bytes of `fd` at `offset` and calls `completion`
    /// with them (or the error) on the context's thread. Throws (and calls
    /// nothing) for arguments rejected before submission. Any thread.
    public func read(from fd: Int32, count: Int, at offset: Int64,
                     completion: @escaping @Sendable (Result<[UInt8], AioError>) -> Void) throws(AioError) {
        try Self.checkFileArguments(fd: fd, count: count, offset: offset)
        let storage = OwnedBuffer(count: count)
        perform(call: "pread", fd: fd, buffer: storage, offset: offset, write: false) { result in
            completion(result.map { Array(UnsafeRawBufferPointer(rebasing: storage.bytes[0..<$0]).bindMemory(to: UInt8.self)) })
        }
    }

    /// Writes `bytes` to `fd` at `offset` and calls `completion` with the
    /// count written (or the error) on the context's thread. Any thread.
    public func write(to fd: Int32, _ bytes: [UInt8], at offset: Int64,
                      completion: @escaping @Sendable (Result<Int, AioError>) -> Void) throws(AioError) {
        try Self.checkFileArguments(fd: fd, count: bytes.count, offset: offset)
        let storage = OwnedBuffer(count: bytes.count)
        bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: storage.bytes[0..<bytes.count]).copyMemory(from: $0) }
        perform(call: "pwrite", fd: fd, buffer: storage, offset: offset, write: true, completion)
    }

    /// Flushes `fd` and calls `completion` on the context's thread. Any thread.
    public func fsync(_ fd: Int32, dataOnly: Bool = false,
                      completion: @escaping @Sendable (Result<Void, AioError>) -> Void) throws(AioError) {
        try Self.checkFileArguments(fd: fd, count: 0, offset: 0)
        if let _ = handlers.ring {
            var entry = io_uring_sqe()
            aio_uring_prep_fsync(&entry, fd, dataOnly ? IORING_FSYNC_DATASYNC : 0)
            _ = try queue(entry) { c in
                completion(c.result < 0 ? .failure(Self.systemError("fsync", -c.result)) : .success(()))
            }
            return
        }
        onContextThread { [self] in
            threadPool.submit({ () throws -> Int in
                try Self.retrying("fsync") { dataOnly ? Glibc.fdatasync(fd) : Glibc.fsync(fd) }
            }, completion: { result in
                completion(result.map { _ in () }.mapError { Self.poolError($0, call: "fsync") })
            })
        }
    }

    /// Reads up to `buffer.count` bytes of `fd` at `offset` into `buffer`
    /// and calls `completion` with the count (or the error) on the context's
    /// thread: the callback form without a copy, for loops that keep their
    /// buffers (QEMU's block layer reads into the caller's iovec).
    ///
    /// Unsafe: the kernel (or a pool worker) writes `buffer` until
    /// `completion` runs; the caller keeps it allocated and untouched until
    /// then. Any thread.
    public func unsafeRead(from fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64,
                           completion: @escaping @Sendable (Result<Int, AioError>) -> Void) throws(AioError) {
        try Self.checkFileArguments(fd: fd, count: buffer.count, offset: offset)
        perform(call: "pread", fd: fd, buffer: SendableBuffer(base: buffer.baseAddress, count: buffer.count),
                keepAlive: nil, offset: offset, write: false, completion)
    }

    /// Writes `buffer` to `fd` at `offset` and calls `completion` with the
    /// count written on the context's thread. Unsafe as ``unsafeRead(from:into:at:completion:)``:
    /// `buffer` is read until `completion` runs. Any thread.
    public func unsafeWrite(to fd: Int32, from buffer: UnsafeRawBufferPointer, at offset: Int64,
                            completion: @escaping @Sendable (Result<Int, AioError>) -> Void) throws(AioError) {
        try Self.checkFileArguments(fd: fd, count: buffer.count, offset: offset)
        perform(call: "pwrite", fd: fd,
                buffer: SendableBuffer(base: UnsafeMutableRawPointer(mutating: buffer.baseAddress), count: buffer.count),
                keepAlive: nil, offset: offset, write: true, completion)
    }

    /// The callback forms' read/write: the ring, or a pool job.
    /// `keepAlive` (the owned buffer of the safe forms) lives until the completion.
    private func perform(call: StaticString, fd: Int32, buffer: OwnedBuffer, offset: Int64, write: Bool,
                         _ completion: @escaping @Sendable (Result<Int, AioError>) -> Void) {
        perform(call: call, fd: fd, buffer: SendableBuffer(base: buffer.bytes.baseAddress, count: buffer.count),
                keepAlive: buffer, offset: offset, write: write, completion)
    }

    private func perform(call: StaticString, fd: Int32, buffer: SendableBuffer, keepAlive: OwnedBuffer?,
                         offset: Int64, write: Bool,
                         _ completion: @escaping @Sendable (Result<Int, AioError>) -> Void) {
        let count = buffer.count
        if count == 0 {
            // Never before the call returns, as every other completion.
            scheduleOneshot(name: "\(name)/file-io") { completion(.success(0)) }
            return
        }
        if handlers.ring != nil {
            var entry = io_uring_sqe()
            if write {
                aio_uring_prep_write(&entry, fd, buffer.base, UInt32(count), UInt64(offset))
            } else {
                aio_uring_prep_read(&entry, fd, buffer.base, UInt32(count), UInt64(offset))
            }
            do {
                _ = try queue(FileOperation(call: call, keepAlive: keepAlive, done: completion, entry: entry))
            } catch {
                scheduleOneshot(name: "\(name)/file-io") { completion(.failure(error)) }
            }
            return
        }
        onContextThread { [self] in
            threadPool.submit({ () throws -> Int in
                try Self.retrying(call) {
                    write ? Glibc.pwrite(fd, buffer.base, count, off_t(offset))
                          : Glibc.pread(fd, buffer.base, count, off_t(offset))
                }
            }, completion: { result in
                withExtendedLifetime(keepAlive) {
                    completion(result.mapError { Self.poolError($0, call: call) })
                }
            })
        }
    }

    /// Runs `body` on the context's thread: now if the caller owns the
    /// context, else as a one-shot BH.
    private func onContextThread(_ body: @escaping @Sendable () -> Void) {
        if isOwnedByCurrentThread { body() } else { scheduleOneshot(name: "\(name)/file-io", body) }
    }

    // MARK: Shared rules

    static func checkFileArguments(fd: Int32, count: Int, offset: Int64) throws(AioError) {
        if fd < 0 { throw .badDescriptor(fd: fd, reason: "negative descriptor") }
        if offset < 0 { throw .invalidArgument("offset \(offset) is negative") }
        if count < 0 || count > Int(Int32.max) {
            throw .invalidArgument("count \(count) is outside 0...\(Int32.max)")
        }
    }

    /// A pool job's error as the ring reports it: a request the pool
    /// cancelled (at shutdown) is `ECANCELED`, as a cancelled ring entry.
    static func poolError(_ error: any Error, call: StaticString) -> AioError {
        if let error = error as? AioError { return error }
        return systemError(call, ECANCELED)
    }

    static func systemError(_ call: StaticString, _ errno: Int32) -> AioError {
        .system(SystemCallError(call: "\(call)", errno: errno))
    }

    /// A completion's count, or its error thrown the way the pool path throws it.
    static func countOrThrow(_ completion: RingCompletion, call: StaticString) throws(AioError) -> Int {
        if completion.result < 0 { throw systemError(call, -completion.result) }
        return Int(completion.result)
    }

    /// A blocking call on a worker, EINTR retried, failures as ``AioError``.
    static func retrying<R: BinaryInteger>(_ call: StaticString, _ body: () -> R) throws(AioError) -> Int {
        while true {
            let rc = body()
            if rc >= 0 { return Int(rc) }
            let err = errno
            if err == EINTR { continue }
            throw systemError(call, err)
        }
    }
}

/// A read or write of the callback forms: the completion as a count or an
/// error, and the buffer it owns (if any) kept until then.
private final class FileOperation: RingOperation, @unchecked Sendable {
    // @unchecked Sendable: immutable after init.
    let call: StaticString
    let keepAlive: OwnedBuffer?
    let done: @Sendable (Result<Int, AioError>) -> Void

    init(call: StaticString, keepAlive: OwnedBuffer?, done: @escaping @Sendable (Result<Int, AioError>) -> Void,
         entry: io_uring_sqe) {
        self.call = call
        self.keepAlive = keepAlive
        self.done = done
        super.init(nil, entry: entry)
    }

    override func complete(_ completion: RingCompletion) {
        let result = completion.result
        done(result < 0 ? .failure(AioContext.systemError(call, -result)) : .success(Int(result)))
    }
}

/// A heap buffer owned by one callback-form operation until its completion.
private final class OwnedBuffer: @unchecked Sendable {
    // @unchecked Sendable: written by the kernel or one worker, read by the
    // completion after it (the ring's or the pool's completion orders them).
    let bytes: UnsafeMutableRawBufferPointer
    let count: Int
    init(count: Int) {
        self.count = count
        bytes = .allocate(byteCount: max(count, 1), alignment: 16)
    }
    deinit { bytes.deallocate() }
}
