@testable import Aio
import CAllocCounter
import Testing

/// Counts this thread's heap allocations through the malloc interposer in
/// CAllocCounter (unavailable under sanitizers, which own malloc).
@Suite("Allocations on the hot path", .blockingLane)
struct AllocationTests {
    static var counting: Bool { aio_test_thread_allocations() != UInt.max }
    /// Under a sanitizer the interposer is left out on purpose (the sanitizer
    /// owns malloc): the tests are skipped, visibly. Anywhere else a missing
    /// interposer fails them.
    static var sanitized: Bool { aio_test_sanitized() != 0 }
    static func requireCounting() throws {
        try #require(counting, "the malloc interposer (CAllocCounter) is not linked into the test executable: allocations cannot be counted")
    }

    @Test("re-scheduling an existing BH allocates nothing", .disabled(if: sanitized, "a sanitizer owns malloc"))
    func rescheduleAllocatesNothing() throws {
        try Self.requireCounting()
        let ctx = try AioContext(name: "alloc")
        let runs = Counter()
        let bh = ctx.makeBottomHalf(name: "hot") { _ in runs.increment() }
        // Warm up: the first pass may size internal buffers.
        for _ in 0..<10 { bh.schedule(); ctx.poll(blocking: false) }
        let before = aio_test_thread_allocations()
        for _ in 0..<1_000 { bh.schedule() }
        let afterSchedules = aio_test_thread_allocations()
        for _ in 0..<1_000 {
            bh.schedule()
            ctx.poll(blocking: false)
        }
        let afterCycles = aio_test_thread_allocations()
        #expect(afterSchedules - before == 0, "schedule() of a pending BH allocated")
        #expect(afterCycles - afterSchedules == 0, "schedule() + poll(blocking: false) allocated")
        #expect(runs.count == 1_010)
        bh.delete()
        ctx.poll(blocking: false)
    }

    @Test("a blocking poll that sleeps and is woken allocates nothing", .disabled(if: sanitized, "a sanitizer owns malloc"))
    func blockingCycleAllocatesNothing() throws {
        try Self.requireCounting()
        let ctx = try AioContext(name: "alloc-blocking")
        let bh = ctx.makeBottomHalf(name: "hot") { _ in }
        bh.schedule(); ctx.poll(blocking: true)
        let before = aio_test_thread_allocations()
        for _ in 0..<100 {
            bh.schedule()
            ctx.poll(blocking: true)
        }
        #expect(aio_test_thread_allocations() - before == 0)
        bh.delete()
        ctx.poll(blocking: false)
    }

    @Test("a one-shot allocates nothing once the pool has nodes", .disabled(if: sanitized, "a sanitizer owns malloc"))
    func oneshotAllocations() throws {
        try Self.requireCounting()
        let ctx = try AioContext(name: "alloc-oneshot")
        let runs = Counter()
        // The first 100 make the nodes; the pass that runs them recycles them.
        for _ in 0..<100 { ctx.scheduleOneshot {} }
        ctx.poll(blocking: false)
        let before = aio_test_thread_allocations()
        for _ in 0..<100 { ctx.scheduleOneshot {} }
        let afterBurst = aio_test_thread_allocations()
        ctx.poll(blocking: false)
        // One reference captured: Swift uses it as the closure's context.
        for _ in 0..<1_000 {
            ctx.scheduleOneshot { runs.increment() }
            ctx.poll(blocking: false)
        }
        let afterCycles = aio_test_thread_allocations()
        #expect(afterBurst - before == 0, "100 one-shots with 100 pooled nodes allocated")
        #expect(afterCycles - afterBurst == 0, "a one-shot + poll cycle allocated")
        #expect(runs.count == 1_000)
        // More than the pool keeps: a burst allocates, and the pass that
        // runs it takes every node back (a flood would take them again).
        for _ in 0..<(3 * 1_024) { ctx.scheduleOneshot {} }
        ctx.poll(blocking: false)
        #expect(ctx.oneshots.nodesAlive == 3 * 1_024)
        // The owner's count is exact once nothing is in flight.
        #expect(ctx.oneshots.nodesPooled == ctx.oneshots.nodesAlive)
        // A pass without one-shots says nothing about demand: no trim.
        ctx.poll(blocking: false)
        #expect(ctx.oneshots.nodesAlive == 3 * 1_024)
        // A pass whose one-shot the pool serves: supply exceeds demand, so
        // it trims the free stack down to the capacity.
        ctx.scheduleOneshot {}
        ctx.poll(blocking: false)
        #expect(ctx.oneshots.nodesAlive == OneshotPool.capacity, "the pool kept \(ctx.oneshots.nodesAlive) nodes")
        #expect(ctx.oneshots.nodesPooled == ctx.oneshots.nodesAlive)
        // At capacity the pool keeps what it has.
        ctx.scheduleOneshot {}
        ctx.poll(blocking: false)
        #expect(ctx.oneshots.nodesAlive == OneshotPool.capacity)
    }
}
