import Synchronization

/// The context's bottom halves in flight: a lock-free LIFO stack that any
/// thread pushes onto, and a FIFO dispatch queue that only the thread owning
/// the context touches.
///
/// Each loop pass moves the whole stack into the queue at once (reversed, so
/// BHs run in the order they were first scheduled) and pops from the queue's
/// front. BHs scheduled while a pass runs land on the fresh stack and run in
/// the next pass; a nested pass (a callback that polls) drains what is left of
/// the outer pass first. This is QEMU's "slices" design (2020, "util/async:
/// make bh_aio_poll() O(1)") with the slices concatenated: the cost of a pass
/// is O(pending BHs), however many BHs exist.
final class BHList: @unchecked Sendable {
    // @unchecked Sendable: `pending` is atomic; `queueHead`/`queueTail` are
    // touched only by the thread that owns the context (the dispatcher).

    /// Top of the pending stack. A linked BH is kept alive by one retain the
    /// list holds (taken in `push`, given back when the dispatcher pops it),
    /// except a registered one (made with `makeBottomHalf`): the context's
    /// registry holds it from its creation until the dispatcher frees it,
    /// after popping it deleted, so the list needs no retain of its own
    /// (`AioContext.free`; `BottomHalf.run` defers the registry's release
    /// while a run of the BH is on the stack).
    ///
    /// Alone on its cache line: every producer compare-exchanges it, while
    /// the dispatcher writes `queueHead` once per BH it runs.
    let padBeforePending = CacheLinePadding()
    let pending = Atomic<Unmanaged<BottomHalf>?>(nil)
    let padAfterPending = CacheLinePadding()

    /// Owner-only: BHs taken from the stack and not yet dispatched.
    @exclusivity(unchecked) var queueHead: Unmanaged<BottomHalf>?
    @exclusivity(unchecked) var queueTail: Unmanaged<BottomHalf>?

    /// Links `bh` onto the pending stack. Called once per 0→PENDING transition.
    ///
    /// Thread-safe and lock-free.
    @inline(__always)
    func push(_ bh: BottomHalf) {
        // SAFETY: a registered BH is kept alive by the registry while linked
        // (see `pending`); any other BH's retain is owned by the list until
        // the dispatcher pops it (`popFront`, `popFrontNode`). A retain and
        // a release per schedule were two locked instructions and about 40
        // instructions of a named BH's callback. Tests: "a BH that deletes
        // itself and polls keeps its closure until it returns" and its
        // hand-over variant drop every reference but the registry's.
        if bh.isRegistered {
            pushRetained(Unmanaged.passUnretained(bh))
        } else {
            pushRetained(Unmanaged.passRetained(bh))
        }
    }

    /// `push` for a node whose retain the caller hands to the list (a
    /// one-shot taken from the pool, or just made).
    @inline(__always)
    func pushRetained(_ node: Unmanaged<BottomHalf>) {
        // The node is written through the caller's retain, never copied out
        // as a strong reference: a copy costs a retain and a release (two
        // locked instructions) per schedule.
        var head = pending.load(ordering: .relaxed)
        while true {
            node._withUnsafeGuaranteedRef { $0.next = head }
            // [bh-push] releasing: the node's `next` and the caller's work are visible to
            // the dispatcher's acquiring exchange in `takeAll`.
            let (exchanged, current) = pending.weakCompareExchange(
                expected: head, desired: node,
                successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { return }
            head = current
        }
    }

    /// Moves every pending BH to the back of the dispatch queue, oldest first.
    /// Owner-only.
    func takeAll() {
        // [bh-push] acquiring: pairs with the releasing CAS in `push`.
        guard var node = pending.exchange(nil, ordering: .acquiring) else { return }
        // Reverse the LIFO stack into FIFO order: O(pending).
        var reversed: Unmanaged<BottomHalf>? = nil
        let last = node
        while true {
            let bh = node.takeUnretainedValue()
            let following = bh.next
            bh.next = reversed
            reversed = node
            guard let nextNode = following else { break }
            node = nextNode
        }
        if let tail = queueTail {
            tail.takeUnretainedValue().next = reversed
        } else {
            queueHead = reversed
        }
        queueTail = last
    }

    /// Unlinks the front of the dispatch queue and returns it as a strong
    /// reference (the list's retain, or a new one for a registered BH).
    /// Owner-only.
    @inline(__always)
    func popFront() -> BottomHalf? {
        guard let node = popFrontNode() else { return nil }
        return Self.owned(node)
    }

    /// A node the list let go of as a strong reference: it takes over the
    /// list's retain, or, for a registered BH (which the list holds none
    /// of), retains it.
    @inline(__always)
    static func owned(_ node: Unmanaged<BottomHalf>) -> BottomHalf {
        node._withUnsafeGuaranteedRef { $0.isRegistered }
            ? node.takeUnretainedValue() : node.takeRetainedValue()
    }

    /// `popFront` without the reference counting: the node comes with the
    /// list's retain (none for a registered BH), which the caller now owns.
    /// Owner-only.
    @inline(__always)
    func popFrontNode() -> Unmanaged<BottomHalf>? {
        guard let node = queueHead else { return nil }
        node._withUnsafeGuaranteedRef { bh in
            queueHead = bh.next
            bh.next = nil
        }
        if queueHead == nil { queueTail = nil }
        return node
    }

    /// Whether any BH in the stack or the queue is scheduled and not deleted:
    /// `busy` if one of them is not idle, `idle` if only idle ones are.
    /// Owner-only (it walks the queue), O(pending), allocates nothing.
    @inline(__always)
    func scanScheduled() -> (busy: Bool, idle: Bool) {
        // The common case first.
        if newestIsBusy { return (true, false) }
        return scanAll()
    }

    /// Whether the newest pending BH is scheduled and neither deleted nor
    /// idle (acquiring, as in `scanAll`): `scanScheduled`'s fast path, and
    /// GLib's prepare's. False says nothing. Owner-only.
    @inline(__always)
    var newestIsBusy: Bool {
        guard let top = pending.load(ordering: .acquiring) else { return false }
        let f = top._withUnsafeGuaranteedRef { $0.flags.load(ordering: .relaxed) }
        return f & (BHFlags.scheduled | BHFlags.deleted | BHFlags.idle) == BHFlags.scheduled
    }

    @inline(never)
    private func scanAll() -> (busy: Bool, idle: Bool) {
        // Acquiring: the stack's nodes and their `next` links, pushed with
        // releasing CASes [bh-push], are safe to walk. Nodes cannot leave the
        // stack while we walk it: only the owner (us) takes them.
        let stack = Self.scan(from: pending.load(ordering: .acquiring))
        if stack.busy { return stack }
        let queue = Self.scan(from: queueHead)
        return (queue.busy, stack.idle || queue.idle)
    }

    private static func scan(from start: Unmanaged<BottomHalf>?) -> (busy: Bool, idle: Bool) {
        var idle = false
        var node = start
        while let current = node {
            // Linked BHs are alive (the list's retain, or the registry's):
            // read them without retaining.
            let (f, following) = current._withUnsafeGuaranteedRef { bh in
                (bh.flags.load(ordering: .relaxed), bh.next)
            }
            if f & BHFlags.scheduled != 0 && f & BHFlags.deleted == 0 {
                if f & BHFlags.idle == 0 { return (true, idle) }
                idle = true
            }
            node = following
        }
        return (false, idle)
    }

    /// After the context's teardown: lets go of whatever was pushed since
    /// (the list's retains; a registered BH only loses its link), without
    /// running anything. Any thread.
    func discardPending() {
        var node = pending.exchange(nil, ordering: .acquiring)
        while let current = node {
            let bh = Self.owned(current)
            node = bh.next
            bh.next = nil
        }
    }

    /// Whether anything at all waits in the stack or the queue (including
    /// deleted or cancelled BHs that only need freeing). Owner-only.
    var hasEntries: Bool {
        queueHead != nil || pending.load(ordering: .relaxed) != nil
    }
}
