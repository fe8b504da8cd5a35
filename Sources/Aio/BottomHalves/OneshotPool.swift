import Glibc
import Synchronization

/// The context's recycled one-shot BHs, so that `scheduleOneshot` allocates
/// nothing in the steady state (a one-shot's only allocation was its BH).
///
/// - Any thread takes a node (`take`): one acquiring exchange takes the whole
///   free stack, the caller keeps the first node and gives the rest back
///   with a compare-exchange that expects the stack empty. If a recycle
///   landed in between, the caller takes that chain too, splices the rest
///   behind it and tries again. A taker never reads the `next` of a node it
///   does not own, so there is no ABA: the textbook pop (read the head and
///   its `next`, compare-exchange) would hand one node to two threads once
///   nodes come back. Model: Models/aio_bh_pool.pml, variant BUG_POP_CAS.
/// - The owner recycles a node it ran into a private chain, pushed onto the
///   free stack with one releasing compare-exchange at the end of the pass
///   (`flush`). A pass whose one-shots all found a node in the pool, while
///   the pool holds or has lent out more than `capacity` and more than its
///   demand needs, frees nodes of the free stack, and so does the loop on
///   its way to a sleep: a burst of one-shots does not stay allocated (see
///   `pooled`). Model: Models/aio_bh_pool.pml.
///
/// Each node on the free stack or in the chain holds one retain, the one
/// the BH list held while it was pending.
final class OneshotPool: @unchecked Sendable {
    // @unchecked Sendable: `free` is atomic; `chainHead`, `chainTail`,
    // `pooled` and the pass's counts are owner-only; a node's `next`
    // belongs to whoever holds it.

    /// Nodes the pool keeps once the producers stop taking them all.
    static let capacity = 1_024

    /// Top of the free stack. Alone on its cache line: every producer reads
    /// it per one-shot, while the owner writes its chain and counts below
    /// once per one-shot it recycles.
    let padBeforeFree = CacheLinePadding()
    private let free = Atomic<Unmanaged<BottomHalf>?>(nil)
    let padAfterFree = CacheLinePadding()
    /// Owner-only: the nodes the pool holds or lent out, as the owner counts
    /// them: one per node made for a one-shot that the owner recycled, less
    /// one per node it freed. A node a producer took from the free stack
    /// (marked `BHFlags.pooled`) stays counted until the dispatch hands it
    /// back. The pool has no fixed size: in a flood that outruns the loop
    /// every node comes back and is taken again, and none is freed (a node
    /// freed on the loop's core and made again on a producer's costs a
    /// `free`, a `malloc` and, while the flood grows the heap, page faults).
    /// A pass whose one-shots all found a node in the pool, while this is
    /// over `capacity` and over four times the pass's one-shots, frees
    /// what the free stack holds beyond that (`trim`); so does the loop on
    /// its way to a sleep, down to `capacity` (`trimBeforeSleep`).
    /// Only the owner writes it: a shared count cost a locked instruction on
    /// both sides per one-shot, on one line both cores wrote.
    @exclusivity(unchecked) private var pooled = 0
    /// Owner-only: the one-shots this pass recycled (its demand), plus
    /// `madeThisPass` if one of them had a node made for it, not taken from
    /// the pool (the pool fell short of demand). One word, so that a pass
    /// without one-shots pays one store for it.
    @exclusivity(unchecked) private var passCounts = 0
    private static let madeThisPass = 1 << 40
    /// A pool that serves every one-shot keeps this many passes' demand.
    static let demandFactor = 4

    /// Owner-only: nodes recycled during the current pass.
    @exclusivity(unchecked) private var chainHead: Unmanaged<BottomHalf>?
    @exclusivity(unchecked) private var chainTail: Unmanaged<BottomHalf>?

    /// A free node with its retain, or nil (the caller allocates and calls
    /// `madeNode`). Any thread, lock-free.
    @inline(__always)
    func take() -> Unmanaged<BottomHalf>? {
        // An empty stack is the common case of a flood that outruns the
        // loop: a load, not an exchange, then (the line stays shared).
        if free.load(ordering: .relaxed) == nil { return nil }
        // [pool-free] acquiring: pairs with the releasing compare-exchange in
        // `flush` (and in the give-back below): the nodes' `next`, and their
        // reset by the owner, are visible.
        guard let first = free.exchange(nil, ordering: .acquiring) else { return nil }
        first._withUnsafeGuaranteedRef { bh in
            if let rest = bh.next {
                bh.next = nil
                giveBack(rest)
            }
        }
        return first
    }

    /// Puts a chain the caller owns back on the free stack.
    private func giveBack(_ chain: Unmanaged<BottomHalf>) {
        var rest = chain
        #if DEBUG
        // Tests widen the window in which a recycle lands between our
        // exchange and our give-back, so that the splice below runs.
        if Self.widenGiveBackWindow.load(ordering: .relaxed) { sched_yield() }
        #endif
        while true {
            // [pool-free] releasing: our writes of `next` are visible to the
            // next taker's acquiring exchange.
            let (exchanged, _) = free.compareExchange(
                expected: nil, desired: rest,
                successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { return }
            // A recycle landed meanwhile: take it, and put ours behind it.
            guard let more = free.exchange(nil, ordering: .acquiring) else { continue }
            #if DEBUG
            Self.splices.wrappingAdd(1, ordering: .relaxed)
            #endif
            var tail = more
            while let following = tail._withUnsafeGuaranteedRef({ $0.next }) { tail = following }
            tail._withUnsafeGuaranteedRef { $0.next = rest }
            rest = more
        }
    }

    /// Counts a node the caller allocated because the pool was empty (tests).
    @inline(__always)
    func madeNode() {
        #if DEBUG
        made.wrappingAdd(1, ordering: .relaxed)
        #endif
    }

    /// Takes back a one-shot that ran (or was cancelled), with the BH list's
    /// retain and the flags its producer set. Its callback is already
    /// cleared. Owner-only.
    @inline(__always)
    func recycle(_ node: Unmanaged<BottomHalf>, flags: UInt32) {
        // A node taken from the pool was counted while lent out; a node
        // made for this one-shot joins the pool now.
        if flags & BHFlags.pooled == 0 {
            pooled &+= 1
            passCounts |= Self.madeThisPass
        }
        passCounts &+= 1
        node._withUnsafeGuaranteedRef { $0.next = chainHead }
        if chainHead == nil { chainTail = node }
        chainHead = node
    }

    /// Pushes the pass's recycled nodes onto the free stack. Owner-only; the
    /// dispatch calls it at the end of every pass, before it can give
    /// ownership away.
    @inline(__always)
    func flush() {
        if pooled > Self.capacity { trimIfSurplus() }
        passCounts = 0
        guard let head = chainHead, let tail = chainTail else { return }
        chainHead = nil
        chainTail = nil
        var top = free.load(ordering: .relaxed)
        while true {
            tail._withUnsafeGuaranteedRef { $0.next = top }
            // [pool-free] releasing: pairs with the acquiring exchange in `take`.
            let (exchanged, current) = free.weakCompareExchange(
                expected: top, desired: head,
                successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { return }
            top = current
        }
    }

    /// Every one-shot of this pass found a node in the pool, and the pool
    /// holds more than `keep`: supply exceeds demand, trim what the
    /// producers left on the free stack. A flood that the pool serves keeps
    /// what it needs: its passes each run a batch, and the pool holds about
    /// two (the one in flight and the one just run). Owner-only.
    /// A pass without one-shots says nothing about demand (an fd or timer
    /// pass in the middle of a flood): it does not trim; the loop trims
    /// when it goes to sleep (`trimBeforeSleep`).
    @inline(never)
    private func trimIfSurplus() {
        if passCounts == 0 || passCounts >= Self.madeThisPass { return }
        let keep = max(Self.capacity, Self.demandFactor &* passCounts)
        if pooled > keep { trim(keeping: keep) }
    }

    /// Trims to `capacity` before the loop sleeps: nothing is pending, so
    /// what the pool holds beyond it is what a burst left. Owner-only;
    /// called by a native poll and by GLib's prepare, under ownership, on
    /// the way to a sleep.
    @inline(__always)
    func trimBeforeSleep() {
        if pooled > Self.capacity { trim(keeping: Self.capacity) }
    }

    /// Frees nodes of the free stack while the pool is over `keep`: the
    /// owner takes the stack as any taker does (one acquiring exchange) and
    /// gives the rest back. This pass's chain is kept: in a flood the
    /// producers take its nodes next, and what a flood left is freed by the
    /// passes after it, from the stack. Owner-only. Each node freed here
    /// was recycled once, so the walk is paid for.
    @inline(never)
    private func trim(keeping keep: Int) {
        // A relaxed peek, as in `take`; the exchange acquires [pool-free].
        guard free.load(ordering: .relaxed) != nil,
              var node = free.exchange(nil, ordering: .acquiring) else { return }
        while true {
            let following = node._withUnsafeGuaranteedRef { $0.next }
            freeNode(node)
            guard let following else { return }
            if pooled <= keep {
                giveBack(following)
                return
            }
            node = following
        }
    }

    @inline(__always)
    private func freeNode(_ node: Unmanaged<BottomHalf>) {
        pooled &-= 1
        #if DEBUG
        made.wrappingSubtract(1, ordering: .relaxed)
        #endif
        node._withUnsafeGuaranteedRef { $0.next = nil }
        node.release()
    }

    /// At teardown: frees every pooled node. Nothing else may use the pool.
    func drain() {
        flush()
        var node = free.exchange(nil, ordering: .acquiring)
        while let current = node {
            let bh = current.takeRetainedValue()
            node = bh.next
            bh.next = nil
            #if DEBUG
            made.wrappingSubtract(1, ordering: .relaxed)
            #endif
        }
        pooled = 0
        passCounts = 0
    }

    /// Nodes the pool holds or lent out, as the owner counts them. Owner-only.
    var nodesPooled: Int { pooled }

    #if DEBUG
    /// Tests: nodes made for one-shots and not freed (the pool's, in flight
    /// or not). Debug builds only: release builds keep no shared count.
    let made = Atomic<Int>(0)
    var nodesAlive: Int { made.load(ordering: .relaxed) }
    /// Tests: yield between taking the free stack and giving the rest back.
    static let widenGiveBackWindow = Atomic<Bool>(false)
    /// Tests: give-backs that found a recycle in their way and spliced.
    static let splices = Atomic<Int>(0)
    #endif
}
