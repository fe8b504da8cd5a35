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
///   (`flush`), or frees it while more than `capacity` pool nodes are alive
///   (a burst of one-shots does not stay allocated).
///
/// Each node on the free stack or in the chain holds one retain, the one
/// the BH list held while it was pending.
final class OneshotPool: @unchecked Sendable {
    // @unchecked Sendable: `free` and `alive` are atomic; `chainHead` and
    // `chainTail` are owner-only; a node's `next` belongs to whoever holds it.

    /// Nodes alive at most before the owner frees instead of recycling.
    static let capacity = 1_024

    /// Top of the free stack.
    private let free = Atomic<Unmanaged<BottomHalf>?>(nil)
    /// Nodes the pool made and has not freed: the free stack, the chain, and
    /// one-shots in flight. Written on allocation and on free only.
    private let alive = Atomic<Int>(0)

    /// Owner-only: nodes recycled during the current pass.
    @exclusivity(unchecked) private var chainHead: Unmanaged<BottomHalf>?
    @exclusivity(unchecked) private var chainTail: Unmanaged<BottomHalf>?

    /// A free node with its retain, or nil (the caller allocates and calls
    /// `madeNode`). Any thread, lock-free.
    @inline(__always)
    func take() -> Unmanaged<BottomHalf>? {
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

    /// Counts a node the caller allocated because the pool was empty.
    @inline(__always)
    func madeNode() {
        alive.wrappingAdd(1, ordering: .relaxed)
    }

    /// Takes back a one-shot that ran (or was cancelled), with the BH list's
    /// retain. Its callback is already cleared. Owner-only.
    @inline(__always)
    func recycle(_ node: Unmanaged<BottomHalf>) {
        if alive.load(ordering: .relaxed) > Self.capacity {
            alive.wrappingSubtract(1, ordering: .relaxed)
            node.release()
            return
        }
        node._withUnsafeGuaranteedRef { $0.next = chainHead }
        if chainHead == nil { chainTail = node }
        chainHead = node
    }

    /// Pushes the pass's recycled nodes onto the free stack. Owner-only; the
    /// dispatch calls it before it can give ownership away.
    @inline(__always)
    func flush() {
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

    /// At teardown: frees every pooled node. Nothing else may use the pool.
    func drain() {
        flush()
        var node = free.exchange(nil, ordering: .acquiring)
        while let current = node {
            let bh = current.takeRetainedValue()
            node = bh.next
            bh.next = nil
            alive.wrappingSubtract(1, ordering: .relaxed)
        }
    }

    /// Nodes the pool made and has not freed (tests).
    var nodesAlive: Int { alive.load(ordering: .relaxed) }

    #if DEBUG
    /// Tests: yield between taking the free stack and giving the rest back.
    static let widenGiveBackWindow = Atomic<Bool>(false)
    /// Tests: give-backs that found a recycle in their way and spliced.
    static let splices = Atomic<Int>(0)
    #endif
}
