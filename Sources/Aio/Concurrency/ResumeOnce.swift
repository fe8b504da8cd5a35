/// A continuation that is resumed exactly once, by whichever comes first:
/// the event it waits for (a timer, a descriptor, a pool completion) or the
/// cancellation of its task.
///
/// The result may arrive before the continuation is installed (an already
/// cancelled task runs its cancellation handler before the operation), so the
/// state remembers it and the install resumes at once.
final class ResumeOnce<T: Sendable>: @unchecked Sendable {
    // @unchecked Sendable: `state` is only touched under `lock`.

    private enum State {
        case pending
        case waiting(CheckedContinuation<T, any Error>)
        case resolved(Result<T, any Error>)
        case done
    }

    private var state = State.pending
    private let lock = PThreadMutex()

    /// Installs the continuation; resumes it at once if the result is in.
    func install(_ continuation: CheckedContinuation<T, any Error>) {
        let early: Result<T, any Error>? = lock.withLock {
            switch state {
            case .pending:
                state = .waiting(continuation)
                return nil
            case .resolved(let result):
                state = .done
                return result
            case .waiting, .done:
                preconditionFailure("ResumeOnce: continuation installed twice")
            }
        }
        if let early { continuation.resume(with: early) }
    }

    /// Delivers the result. Returns false if a result was delivered before
    /// (the other side won the race); the caller then does nothing more.
    @discardableResult
    func resolve(_ result: Result<T, any Error>) -> Bool {
        let (won, waiting): (Bool, CheckedContinuation<T, any Error>?) = lock.withLock {
            switch state {
            case .pending:
                state = .resolved(result)
                return (true, nil)
            case .waiting(let continuation):
                state = .done
                return (true, continuation)
            case .resolved, .done:
                return (false, nil)
            }
        }
        waiting?.resume(with: result)
        return won
    }

    /// Whether a result has been delivered. Thread-safe, racy by nature.
    var isResolved: Bool {
        lock.withLock {
            switch state {
            case .pending, .waiting: return false
            case .resolved, .done: return true
            }
        }
    }

    /// Resolves with `CancellationError`; returns false if already resolved.
    @discardableResult
    func cancel() -> Bool {
        resolve(.failure(CancellationError()))
    }
}
