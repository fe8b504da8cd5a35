import CGIOShim

/// GIO's asynchronous calls as Swift `async` calls.
///
/// Every GIO operation comes as a pair: `g_foo_async(..., cancellable,
/// callback, user_data)` starts it, and `g_foo_finish(..., result, &error)`,
/// called inside the callback, collects its outcome. `GIOAsync.call` runs one
/// such pair and suspends the calling task until the callback has run:
///
/// ```swift
/// let file = g_file_new_for_path("/etc/hostname")!
/// defer { g_object_unref(UnsafeMutableRawPointer(file)) }
/// let text = try await GIOAsync.call { cancellable, callback, userData in
///     g_file_load_contents_async(file, cancellable, callback, userData)
/// } finish: { result, error in
///     var contents: UnsafeMutablePointer<CChar>?
///     guard g_file_load_contents_finish(file, result, &contents, nil, nil, error) != 0 else { return "" }
///     defer { g_free(contents) }
///     return String(cString: contents!)
/// }
/// ```
///
/// GIO: `GAsyncReadyCallback`, `GAsyncResult`, `GCancellable`.
public enum GIOAsync {
    /// Starts a GIO operation with `start` and returns what `finish` makes of
    /// its result, or throws its `GError` as a `GLibError`.
    ///
    /// - Parameters:
    ///   - context: The `GMainContext` whose thread runs `start` and GIO's
    ///     callback (with it, `finish`). `nil` (the default) means the
    ///     thread-default context of the thread the call begins on
    ///     (`g_main_context_ref_thread_default()`): GLib's global default
    ///     context unless that thread pushed another one. Some thread must
    ///     iterate it, or the callback never runs and the call waits
    ///     forever; `call(on:timeout:start:finish:)` bounds that.
    ///   - isolation: The caller's actor (leave the default, `#isolation`):
    ///     the call suspends and resumes there.
    ///   - start: Calls the `_async` function, passing it the three
    ///     arguments it gets: the call's `GCancellable`, the callback and
    ///     its user data. It must start exactly one operation with exactly
    ///     these, and return without waiting for it, as in C: the user data
    ///     carries one reference that the callback gives back, so starting
    ///     none leaves the call waiting (and the call's state alive) for
    ///     ever, and starting two releases that reference twice.
    ///   - finish: Calls the matching `_finish` function with the
    ///     `GAsyncResult` and the `GError**` it gets, and turns the outcome
    ///     into a Swift value. It runs inside GIO's callback (the result is
    ///     valid only there), once, on the context's thread. If it leaves an
    ///     error in the out-parameter, the call throws it as a `GLibError`
    ///     (and frees it) and what `finish` returned is dropped; so on failure
    ///     it may return any placeholder. It may also throw a Swift error.
    ///
    /// `start` and `finish` may run on another thread (the context's), but
    /// never concurrently with the caller: it is suspended from before
    /// `start` runs until after `finish` returned, and is resumed without
    /// them only when `start` never ran. That is why they may capture
    /// non-`Sendable` values such as GObject pointers.
    ///
    /// ## Threads
    ///
    /// GIO delivers an operation's callback to the thread-default
    /// `GMainContext` of the thread that called the `_async` function. So
    /// `start` runs with `context` pushed as that thread's thread-default
    /// (`g_main_context_push_thread_default`), which requires owning it: if
    /// the calling thread can acquire `context` (nobody iterates it right
    /// now, or this thread does), `start` runs at once on the calling
    /// thread; otherwise the thread iterating `context` runs it from an idle
    /// source at `G_PRIORITY_DEFAULT`. Either way the callback, and `finish`,
    /// run on whichever thread iterates `context` next.
    ///
    /// ## Cancellation
    ///
    /// - Cancelled before it starts (the task was already cancelled, or was
    ///   cancelled while `start` waited for the context's thread): `start`
    ///   never runs and the call throws `CancellationError`.
    /// - Cancelled while the operation runs: the bridge cancels its
    ///   `GCancellable` and waits for GIO's callback. If the operation ended
    ///   with `G_IO_ERROR_CANCELLED`, the call throws `CancellationError`;
    ///   if it finished anyway (success or another error), that outcome is
    ///   returned or thrown as usual. So cancelling never resumes the caller
    ///   before GIO is done with the operation.
    ///
    /// Thread-safe: may be called from any task, on any thread or actor.
    ///
    /// GIO: `g_main_context_push_thread_default()`, `GAsyncReadyCallback`,
    /// `g_cancellable_cancel()`.
    public static func call<T>(
        on context: OpaquePointer? = nil,
        isolation: isolated (any Actor)? = #isolation,
        start: @escaping (
            _ cancellable: UnsafeMutablePointer<GCancellable>,
            _ callback: GAsyncReadyCallback,
            _ userData: gpointer
        ) -> Void,
        finish: @escaping (
            _ result: OpaquePointer,
            _ error: UnsafeMutablePointer<UnsafeMutablePointer<GError>?>
        ) throws -> T
    ) async throws -> T {
        try await run(context, nil, start, finish)
    }

    /// `call(on:start:finish:)` that gives up after `timeout`: for contexts
    /// that may not be iterated, and operations that may never end.
    ///
    /// If nobody iterates `context`, GIO's callback never runs. The bridge
    /// cannot know whether a thread will iterate it later (a program may
    /// begin calls before it enters `g_main_loop_run`), and some operations
    /// legitimately wait without end (a read from a quiet pipe), so only the
    /// caller can bound the wait. When `timeout` expires before the
    /// callback, the bridge cancels the `GCancellable` and throws
    /// `GIOTimeoutError` at once, without waiting for GIO. The error says
    /// whether any thread owned the context at that moment and whether
    /// `start` had run.
    ///
    /// The rule this puts on `start` and `finish`: after a timeout GIO may
    /// still hold the operation, so everything it may touch must be owned by
    /// GIO or by the bridge, never by the resumed caller. GIO copies strings
    /// and takes its own references on the GObjects, GVariants and GBytes it
    /// is given; the bridge keeps `start` and `finish`, and everything they
    /// capture, alive until the callback has run, and lets go of them then.
    /// So a buffer handed to GIO (e.g. to `g_input_stream_read_async`) must
    /// be an object the closures capture, never a pointer into memory the
    /// caller frees, such as one from `withUnsafeMutableBytes`. Since
    /// `finish` may run after the caller resumed, both closures are
    /// `sending`: what they capture must be `Sendable` or no longer used by
    /// the caller. A callback that arrives after the timeout still runs
    /// `finish` (which frees GIO's result) and its value is dropped, so
    /// `finish` should return Swift-managed values, not C references that
    /// would leak. If the context is destroyed without ever being iterated,
    /// GLib drops the pending callback without running it, and what the
    /// bridge holds for that call is leaked, never freed early.
    ///
    /// `timeout` must be positive (a trap otherwise). Everything else is as
    /// for `call(on:start:finish:)`.
    ///
    /// Thread-safe: may be called from any task, on any thread or actor.
    ///
    /// GIO: `g_cancellable_cancel()`, `GAsyncReadyCallback`.
    public static func call<T>(
        on context: OpaquePointer? = nil,
        timeout: Duration,
        isolation: isolated (any Actor)? = #isolation,
        start: sending @escaping (
            _ cancellable: UnsafeMutablePointer<GCancellable>,
            _ callback: GAsyncReadyCallback,
            _ userData: gpointer
        ) -> Void,
        finish: sending @escaping (
            _ result: OpaquePointer,
            _ error: UnsafeMutablePointer<UnsafeMutablePointer<GError>?>
        ) throws -> sending T
    ) async throws -> T {
        precondition(timeout > .zero, "GIOAsync.call: timeout must be positive, got \(timeout)")
        return try await run(context, timeout, start, finish)
    }

    private static func run<T>(
        _ context: OpaquePointer?,
        _ timeout: Duration?,
        isolation: isolated (any Actor)? = #isolation,
        _ start: @escaping (UnsafeMutablePointer<GCancellable>, GAsyncReadyCallback, gpointer) -> Void,
        _ finish: @escaping (OpaquePointer, UnsafeMutablePointer<UnsafeMutablePointer<GError>?>) throws -> T
    ) async throws -> T {
        if Task.isCancelled { throw CancellationError() }
        // One reference, owned by the call; g_main_context_ref_thread_default
        // returns a new one too.
        let mainContext = context.map { g_main_context_ref($0)! } ?? g_main_context_ref_thread_default()!
        let call = GIOCall<T>(context: mainContext, timeout: timeout, start: start, finish: finish)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation(isolation: isolation) { continuation in
                call.begin(continuation)
            }
        } onCancel: {
            call.cancel()
        }
    }
}
