import Synchronization

/// `waitWhile` and `kick`: how a thread waits for a condition that other
/// threads change, while the loop it is responsible for keeps running.
///
/// Rules (QEMU's, `include/block/aio-wait.h`):
/// 1. A thread waits on a context it runs: its home thread, or a thread that
///    owns it. It polls that context until the condition is false.
/// 2. Otherwise it must be the main thread (the home thread of the context
///    registered with ``AioContext/makeMain()``), and it polls the main context.
/// 3. Waiting from any other thread traps: two non-main threads waiting on
///    each other's contexts can deadlock, with neither running the other's
///    loop.
/// 4. Whoever changes the condition calls ``AioWait/kick()`` afterwards
///    (a completion that runs as a BH in the waited-on context needs no kick).
public enum AioWait {
    /// Threads inside `waitWhile`. Read by `kick` after a full fence.
    static let waiters = Atomic<Int>(0)
    /// The contexts being waited on, with how many waits each has, so a
    /// kick wakes each of them.
    static let waitedContexts = Locked<[ObjectIdentifier: Waited]>([:])

    struct Weak { weak var context: AioContext? }
    struct Waited { weak var context: AioContext?; var count: Int }

    /// Wakes every `waitWhile` so it re-evaluates its condition. Costs a
    /// fence and a load when nobody waits. Thread-safe.
    /// QEMU: `aio_wait_kick()`.
    public static func kick() {
        // [wait-kick] The condition change must be visible before we read the
        // waiter count; pairs with [wait-enter] in `waitWhile`. Either the
        // waiter sees the new condition, or we see it waiting and notify.
        // QEMU 2022: "aio_wait_kick: add missing memory barrier".
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if waiters.load(ordering: .relaxed) == 0 { return }
        let contexts = waitedContexts.withLock { $0.values.compactMap(\.context) }
        for context in contexts { context.notify() }
    }
}

extension AioContext {
    private static let mainStorage = Locked<AioWait.Weak>(AioWait.Weak(context: nil))

    /// The main context, if one was registered with ``makeMain()``.
    public static var main: AioContext? { mainStorage.withLock { $0.context } }

    /// Registers this context as the main context: its home thread is "the
    /// main thread" of ``waitWhile(_:)``'s rules. Held weakly.
    /// QEMU: `qemu_get_aio_context()`'s context.
    public func makeMain() {
        Self.mainStorage.withLock { $0 = AioWait.Weak(context: self) }
    }

    /// Polls until `condition` is false: this context if the caller runs it
    /// (home thread or owner), else the main context if the caller is the
    /// main thread; anywhere else it traps (see ``AioWait``). The condition is
    /// evaluated on the calling thread, after a notify snapshot, so a change
    /// plus ``AioWait/kick()`` (or ``notify()``) is never slept through.
    /// QEMU: `AIO_WAIT_WHILE()`.
    public func waitWhile(_ condition: () -> Bool) {
        let target: AioContext
        if isHomeThread || isOwnedByCurrentThread {
            target = self
        } else if let main = AioContext.main, main.isHomeThread || main.isOwnedByCurrentThread {
            target = main
        } else {
            fatalError("AioContext '\(name)': waitWhile on a thread that is neither this context's home thread or owner nor the main context's thread. Waiting between two non-main threads can deadlock; wait on the main thread, or on the context's own thread.")
        }
        let key = ObjectIdentifier(target)
        AioWait.waitedContexts.withLock { waited in
            waited[key, default: AioWait.Waited(context: target, count: 0)].count += 1
        }
        AioWait.waiters.wrappingAdd(1, ordering: .relaxed)
        // [wait-enter] The waiter count must be visible before we evaluate the
        // condition; pairs with [wait-kick]. QEMU: the smp_mb() after
        // incrementing num_waiters in AIO_WAIT_WHILE.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        while true {
            let token = target.notifyToken
            if !condition() { break }
            target.poll(blocking: true, unlessNotifiedSince: token)
        }
        AioWait.waiters.wrappingSubtract(1, ordering: .relaxed)
        AioWait.waitedContexts.withLock { waited in
            waited[key]!.count -= 1
            if waited[key]!.count == 0 { waited[key] = nil }
        }
    }

    /// Runs `body` once on this context's thread and returns when it has run,
    /// polling meanwhile as ``waitWhile(_:)`` does (same rules on the caller).
    /// QEMU: `aio_wait_bh_oneshot()`.
    public func runAndWait(_ body: @escaping @Sendable () -> Void) {
        let done = DoneFlag()
        scheduleOneshot(name: "run-and-wait") {
            body()
            done.set()
            AioWait.kick()
        }
        waitWhile { !done.isSet }
    }
}

/// A one-way flag between threads. [done-flag] The releasing set pairs with
/// the acquiring read: whoever sees it set also sees what the setter wrote
/// before (runAndWait's body, a stop request). Without it the waiter could
/// return before the body's effects are visible.
final class DoneFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .releasing) }
    var isSet: Bool { flag.load(ordering: .acquiring) }
}
