import Synchronization

/// The armed timers of one clock of one context: a binary min-heap by
/// deadline, protected by a mutex (timers are armed from any thread).
/// Callbacks run without the lock, so they may re-arm.
/// QEMU: `QEMUTimerList` (a sorted list there).
final class TimerList: @unchecked Sendable {
    // @unchecked Sendable: `heap` and `tornDown` are protected by `lock`.

    let clock: AioClock
    private let lock = PThreadMutex()
    private var heap: [AioTimer] = []
    private var tornDown = false
    /// Number of armed timers, readable without the lock so an empty list
    /// costs a poll one load. Written under `lock`. A poll that reads a stale
    /// 0 misses a timer armed concurrently, whose arming notifies: the poll
    /// then does not sleep, and the next poll's acquiring snapshot of the
    /// notify generation makes the new count visible.
    private let armedCount = Atomic<Int>(0)
    /// How many timers are armed. Thread-safe, racy by nature.
    var armedTimers: Int { armedCount.load(ordering: .relaxed) }
    /// Bumped by every arming; a pass runs only timers armed before it
    /// started, so a callback that re-arms into the past waits for the next pass.
    private var serial: UInt64 = 0
    /// Set once by the owning context's init. A timer may outlive its
    /// context (timers need no deletion): arming it then traps through
    /// `tornDown`, and the link is cut, so it never touches freed memory.
    var link: ContextLink?
    /// The context's count of armed timers over every clock. Set once by init.
    var total: ArmedTimers?
    /// The context's virtual clock, held here so reading the time never goes
    /// through the context. Set once by the context's init.
    var virtualClock: VirtualClock?

    /// The context's name, for traps.
    let contextName: String

    init(clock: AioClock, contextName: String) {
        self.clock = clock
        self.contextName = contextName
    }

    @inline(__always) func withLock<R>(_ body: () throws -> R) rethrows -> R {
        try lock.withLock(body)
    }

    func nowNs() -> Int64 {
        switch clock {
        case .realtime: return monotonicNowNs()
        case .virtual: return virtualClock!.now.nanoseconds
        }
    }

    /// Arms `timer` `ns` from now, saturating (a huge duration never wraps
    /// into the past).
    func arm(_ timer: AioTimer, afterNs ns: Int64) {
        let now = nowNs()
        let delay = max(ns, 0)
        arm(timer, atNs: delay > Int64.max - now ? Int64.max : now + delay)
    }

    func arm(_ timer: AioTimer, atNs deadline: Int64) {
        let becameFirst: Bool = withLock {
            if tornDown {
                fatalError("AioTimer '\(timer.name)': schedule(...) after its AioContext '\(contextName)' was torn down; a timer may only be armed while its context is alive (cancel it, or stop using it, before the context goes away)")
            }
            if timer.heapIndex >= 0 { removeLocked(timer) }
            timer.expireNs = max(deadline, 0)
            serial &+= 1
            timer.armSerial = serial
            timer.heapIndex = heap.count
            heap.append(timer)
            setArmedCount(heap.count)
            siftUp(heap.count - 1)
            return heap[0] === timer
        }
        // Only a new earliest deadline can shorten a sleep. QEMU: the timer
        // list's notify callback, aio_notify for a context.
        if becameFirst { link?.notify() }
    }

    func disarm(_ timer: AioTimer) {
        withLock {
            if timer.heapIndex >= 0 { removeLocked(timer) }
        }
    }

    /// The earliest deadline (ns on the list's clock), -1 if none.
    func firstDeadlineNs() -> Int64 {
        if armedCount.load(ordering: .relaxed) == 0 { return -1 }
        return withLock { heap.first?.expireNs ?? -1 }
    }

    /// ns until the earliest deadline: 0 if due, -1 if none (or, on the
    /// virtual clock, if not due: it only moves when advanced, which notifies).
    func timeoutNs() -> Int64 {
        if armedCount.load(ordering: .relaxed) == 0 { return -1 }
        lock.lock()
        let first = heap.first?.expireNs ?? -1
        lock.unlock()
        if first < 0 { return -1 }
        let left = first - nowNs()
        if left <= 0 { return 0 }
        return clock == .virtual ? -1 : left
    }

    /// Timer callbacks run. Written by the owner only.
    let fired = Atomic<Int>(0)

    /// Runs every timer whose deadline has passed, each once, without the
    /// lock. Returns whether any ran. Owner-only.
    func runExpired() -> Bool {
        if armedCount.load(ordering: .relaxed) == 0 { return false }
        var progress = false
        let now = nowNs()
        lock.lock()
        let passSerial = serial
        lock.unlock()
        while true {
            lock.lock()
            guard let first = heap.first, first.expireNs <= now, first.armSerial <= passSerial else {
                lock.unlock()
                return progress
            }
            removeLocked(first)
            #if AIO_FAULT_CALLBACK_AFTER_REMOVE
            lock.unlock()
            faultWindow()
            #else
            // Under the lock that `cancel` takes: a cancel from another
            // thread either disarms first or sees the callback running and
            // waits for it (no callback starts after cancel returned). A
            // count: a callback that re-arms and polls may run nested.
            first.runningCount += 1
            lock.unlock()
            #endif
            first.callback(first)
            Counters.bump(fired)
            progress = true
            #if !AIO_FAULT_CALLBACK_AFTER_REMOVE
            lock.lock()
            first.runningCount -= 1
            if first.runningCount == 0 && first.cancelWaiters > 0 { callbackEnded.broadcast() }
            lock.unlock()
            #endif
        }
    }

    /// Where `cancel` waits for a running callback. Used with `lock`.
    private let callbackEnded = PThreadCondition()

    /// Disarms `timer`. From a thread that does not own the context, it
    /// also waits for a running callback to end, and disarms again after it
    /// (a periodic callback re-arms itself): after it returns, no callback
    /// starts until the timer is armed again. A caller that owns the context
    /// does not wait: a running callback is then on its own stack, or on a
    /// thread parked in a nested blocking poll that needs our ownership.
    func cancel(_ timer: AioTimer) {
        let owner = link?.ownedByCurrentThread ?? false
        lock.lock()
        defer { lock.unlock() }
        if timer.heapIndex >= 0 { removeLocked(timer) }
        if owner || timer.runningCount == 0 { return }
        #if DEBUG
        // The callback runs under ownership: waiting for it is waiting for
        // ownership (`AioContext.checkLockOrderBeforeWaiting`).
        lock.unlock()
        link?.checkLockOrderBeforeWaiting()
        lock.lock()
        #endif
        while true {
            // Again after every wait: the callback may have re-armed.
            if timer.heapIndex >= 0 { removeLocked(timer) }
            if timer.runningCount == 0 { return }
            timer.cancelWaiters += 1
            callbackEnded.wait(lock)
            timer.cancelWaiters -= 1
        }
    }

    /// Disarms everything; later arming traps.
    func tearDown() {
        withLock {
            for timer in heap { timer.heapIndex = -1; timer.expireNs = -1 }
            heap.removeAll()
            setArmedCount(0)
            tornDown = true
        }
    }

    // MARK: Heap, under `lock`

    private func setArmedCount(_ count: Int) {
        let old = armedCount.load(ordering: .relaxed)
        armedCount.store(count, ordering: .relaxed)
        if count != old { total?.count.wrappingAdd(count - old, ordering: .relaxed) }
    }

    private func removeLocked(_ timer: AioTimer) {
        let i = timer.heapIndex
        let last = heap.removeLast()
        setArmedCount(heap.count)
        if i < heap.count {
            heap[i] = last
            last.heapIndex = i
            siftDown(i)
            siftUp(last.heapIndex)
        }
        timer.heapIndex = -1
        timer.expireNs = -1
    }

    private func less(_ a: Int, _ b: Int) -> Bool { heap[a].expireNs < heap[b].expireNs }

    private func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        heap[a].heapIndex = a
        heap[b].heapIndex = b
    }

    private func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let parent = (i - 1) / 2
            if !less(i, parent) { return }
            swapAt(i, parent)
            i = parent
        }
    }

    private func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < heap.count && less(l, smallest) { smallest = l }
            if r < heap.count && less(r, smallest) { smallest = r }
            if smallest == i { return }
            swapAt(i, smallest)
            i = smallest
        }
    }
}
