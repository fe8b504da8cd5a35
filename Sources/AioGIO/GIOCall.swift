@_spi(AioInternals) import Aio
import CGIOShim
import Synchronization

/// One `GIOAsync.call` in flight: what GIO's callback needs (the `finish`
/// closure, the continuation), the `GCancellable` and the `GMainContext`.
///
/// Ownership. The caller's frame holds one reference until it returns. GIO's
/// callback gets its own: `runStart` takes a +1 just before `start` hands
/// `userData` to the `_async` function, and the callback's trampoline gives
/// it back, exactly once, since GIO calls a `GAsyncReadyCallback` exactly
/// once per operation. While `start` waits for the context's thread, the
/// idle source holds a third reference, released by its destroy notify.
/// So the object, `start`, `finish` and all they capture outlive every use
/// GIO can make of them, however early the caller was resumed.
///
/// The base class is not generic because the C trampoline cannot be.
class GIOCallState: @unchecked Sendable {
    // @unchecked Sendable: `context` and `cancellable` are immutable after
    // init (GLib's API on both is thread-safe); the subclass's mutable
    // state is behind its mutex.

    /// One reference, released in deinit.
    let context: OpaquePointer  // GMainContext*
    /// One reference, released in deinit.
    let cancellable: UnsafeMutablePointer<GCancellable>

    /// Calls alive (for tests: every one must be freed). Relaxed: a plain
    /// statistic; a test reads it after the calls' own synchronisation
    /// (their continuations, or the late callbacks it waits for).
    static let liveCount = Atomic<Int>(0)

    init(context: OpaquePointer) {
        self.context = context
        cancellable = g_cancellable_new()
        Self.liveCount.wrappingAdd(1, ordering: .relaxed)
    }

    deinit {
        g_object_unref(UnsafeMutableRawPointer(cancellable))
        g_main_context_unref(context)
        Self.liveCount.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Runs `start` on a thread that owns `context`, unless the call is
    /// already over. Overridden.
    func runStart() { fatalError("GIOCallState.runStart is abstract") }

    /// GIO's callback: runs `finish` and resumes the caller. Overridden.
    func complete(result: OpaquePointer) { fatalError("GIOCallState.complete is abstract") }
}

/// GIO's callback for every bridged call.
let gioCallCallback: GAsyncReadyCallback = { _, result, userData in
    guard let userData else {
        preconditionFailure("GIOAsync.call: GIO ran the callback without its user data; `start` must pass the userData it was given to the _async function")
    }
    guard let result else {
        preconditionFailure("GIOAsync.call: GIO ran the callback without a GAsyncResult")
    }
    // SAFETY: `userData` is the +1 that `runStart` took just before `start`;
    // GIO calls a GAsyncReadyCallback exactly once per operation, so this
    // takeRetainedValue balances it exactly once.
    Unmanaged<GIOCallState>.fromOpaque(userData).takeRetainedValue().complete(result: result)
}

final class GIOCall<T>: GIOCallState, @unchecked Sendable {
    // @unchecked Sendable: `start`, `finish` and `timeout` are immutable after
    // init. `start` is called once, by the thread that moves `phase` from
    // `.notStarted` to `.started` under `state`'s lock; `finish` once, by
    // GIO's callback. The caller is suspended meanwhile, or resumed without
    // them (timeout): nothing else calls them. Everything mutable is in `state`.

    private enum Phase {
        /// `start` has not run (or is waiting for the context's thread).
        case notStarted
        /// `start` ran: GIO owns the operation until its callback.
        case started
        /// The callback resumed the caller.
        case finished
        /// The caller was resumed without a callback: cancelled before
        /// `start`, or timed out. A late callback is dropped.
        case abandoned
    }

    private struct State {
        var phase = Phase.notStarted
        /// Set in `begin`; taken by whoever resumes the caller.
        var continuation: CheckedContinuation<T, any Error>?
        var cancelRequested = false
        /// The timeout's sleeping task, cancelled by the callback.
        var timer: Task<Void, Never>?
    }

    private enum StartStep {
        case start
        case cancelled(CheckedContinuation<T, any Error>)
        case nothing
    }

    /// A pthread lock (``Locked``), which ThreadSanitizer sees.
    private let state = Locked(State())
    private let timeout: Duration?
    private let start: (UnsafeMutablePointer<GCancellable>, GAsyncReadyCallback, gpointer) -> Void
    private let finish: (OpaquePointer, UnsafeMutablePointer<UnsafeMutablePointer<GError>?>) throws -> T

    /// Takes over the caller's reference on `context`.
    init(context: OpaquePointer, timeout: Duration?,
         start: @escaping (UnsafeMutablePointer<GCancellable>, GAsyncReadyCallback, gpointer) -> Void,
         finish: @escaping (OpaquePointer, UnsafeMutablePointer<UnsafeMutablePointer<GError>?>) throws -> T) {
        self.timeout = timeout
        self.start = start
        self.finish = finish
        super.init(context: context)
    }

    /// Installs the continuation, arms the timeout and starts the call (or
    /// resumes at once if the task was cancelled meanwhile).
    func begin(_ continuation: CheckedContinuation<T, any Error>) {
        let cancelled = state.withLock { state -> Bool in
            if state.cancelRequested {
                state.phase = .abandoned
                return true
            }
            state.continuation = continuation
            return false
        }
        if cancelled {
            continuation.resume(throwing: CancellationError())
            return
        }
        if let timeout {
            let timer = Task { [self] in
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled { expire() }
            }
            // A cancel() between the first look and here took the
            // continuation and found no timer to cancel: cancel it now, or
            // it would keep the call alive for the whole timeout.
            let over = state.withLock { state -> Bool in
                state.timer = timer
                return state.phase == .abandoned
            }
            if over { state.withLock { $0.timer.take() }?.cancel() }
        }
        if g_main_context_acquire(context) != 0 {
            // Nobody else iterates the context now (or this thread does):
            // start here, with it pushed.
            runStart()
            g_main_context_release(context)
        } else {
            // Another thread owns it: let that thread start the call.
            let source = g_idle_source_new()!
            g_source_set_priority(source, G_PRIORITY_DEFAULT)
            // SAFETY: the idle source holds a +1 on this call, released by
            // its destroy notify (after the dispatch, or when the source or
            // its context is destroyed without dispatching).
            g_source_set_callback(source, { data in
                Unmanaged<GIOCallState>.fromOpaque(data!).takeUnretainedValue().runStart()
                return 0  // G_SOURCE_REMOVE
            }, Unmanaged.passRetained(self as GIOCallState).toOpaque(), { data in
                Unmanaged<GIOCallState>.fromOpaque(data!).release()
            })
            g_source_attach(source, context)
            g_source_unref(source)
        }
    }

    override func runStart() {
        // Runs on a thread that owns `context`.
        let next = state.withLock { state -> StartStep in
            guard state.phase == .notStarted else { return .nothing }
            if state.cancelRequested {
                state.phase = .abandoned
                return state.continuation.take().map(StartStep.cancelled) ?? .nothing
            }
            state.phase = .started
            return .start
        }
        switch next {
        case .nothing:
            return
        case .cancelled(let continuation):
            state.withLock { $0.timer.take() }?.cancel()
            continuation.resume(throwing: CancellationError())
        case .start:
            // GIO captures the thread-default context when the operation
            // starts and queues the callback there. Pushing requires owning
            // the context, which this thread does.
            g_main_context_push_thread_default(context)
            // SAFETY: the +1 for GIO's callback, balanced by
            // takeRetainedValue in `gioCallCallback`. GIO may run the
            // callback inside `start`; no lock is held here.
            let userData = Unmanaged.passRetained(self as GIOCallState).toOpaque()
            start(cancellable, gioCallCallback, userData)
            g_main_context_pop_thread_default(context)
        }
    }

    override func complete(result: OpaquePointer) {
        // Through the state lock before touching `finish`: `start` may have
        // run on the calling thread, and GLib hands the operation to the
        // iterating thread under its own futex-based lock, which
        // ThreadSanitizer does not see. The caller's `begin` took this lock
        // after init, so taking it here orders init's writes before us.
        state.withLock { _ in }
        var error: UnsafeMutablePointer<GError>?
        // SAFETY (unchecked transfer): the value goes from `finish` to the
        // caller and nowhere else. Without a timeout it stays in the
        // caller's region (finish ran while the caller was suspended); with
        // one, `finish` was `sending` and returns a `sending` value.
        nonisolated(unsafe) let outcome: Result<T, any Error>
        do {
            let value = try finish(result, &error)
            if let error {
                outcome = .failure(GLibError(taking: error))
            } else {
                outcome = .success(value)
            }
        } catch let thrown {
            if let error { g_error_free(error) }
            outcome = .failure(thrown)
        }
        let (continuation, cancelRequested, timer) = state.withLock { state in
            precondition(state.phase == .started || state.phase == .abandoned,
                         "GIOAsync.call: GIO ran the callback twice for one operation, or for one that `start` never began")
            let continuation = state.phase == .started ? state.continuation.take() : nil
            if state.phase == .started { state.phase = .finished }
            return (continuation, state.cancelRequested, state.timer.take())
        }
        timer?.cancel()
        // Abandoned (timed out): nobody waits; the outcome is dropped.
        guard let continuation else { return }
        switch outcome {
        case .failure(let error as GLibError) where cancelRequested && error.isIOError(G_IO_ERROR_CANCELLED):
            continuation.resume(throwing: CancellationError())
        default:
            continuation.resume(with: outcome)
        }
    }

    /// The task was cancelled (any thread).
    func cancel() {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            state.cancelRequested = true
            // Not started yet (waiting for the context's thread): nothing
            // reached GIO, so the caller can go now; runStart will skip.
            guard state.phase == .notStarted, let continuation = state.continuation.take() else { return nil }
            state.phase = .abandoned
            return continuation
        }
        if let continuation {
            state.withLock { $0.timer.take() }?.cancel()
            continuation.resume(throwing: CancellationError())
        } else {
            // Thread-safe; GIO's handlers run here and the operation ends
            // through its callback.
            g_cancellable_cancel(cancellable)
        }
    }

    /// The timeout expired (any thread).
    private func expire() {
        let taken = state.withLock { state -> (CheckedContinuation<T, any Error>, Bool)? in
            guard state.phase == .notStarted || state.phase == .started,
                  let continuation = state.continuation.take() else { return nil }
            let started = state.phase == .started
            state.phase = .abandoned
            state.timer = nil
            return (continuation, started)
        }
        guard let (continuation, started) = taken, let timeout else { return }
        // Whether a thread iterates the context, for the error message;
        // asked before cancelling, which wakes that thread.
        let owned = g_main_context_acquire(context) == 0
        if !owned { g_main_context_release(context) }
        g_cancellable_cancel(cancellable)
        continuation.resume(throwing: GIOTimeoutError(timeout: timeout, contextWasOwned: owned, started: started))
    }
}
