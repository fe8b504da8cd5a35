@testable import Aio
import Glibc
import Testing

/// glibc's `malloc_usable_size` (in <malloc.h>, which `Glibc` does not
/// export); the sanitizers' allocators provide it too.
@_silgen_name("malloc_usable_size")
private func mallocUsableSize(_ pointer: UnsafeMutableRawPointer?) -> Int

/// The atomics that producer threads write sit alone on their cache lines
/// (`CacheLinePadding`): no other field of their object, and not its header,
/// shares the 128-byte block around them (two 64-byte lines: x86 cores
/// prefetch lines in pairs). Checked on the objects' real memory: the
/// atomic's word is found by a value the test gives it, and every other word
/// of its block must be padding (`CacheLinePadding.fill`) or a field allowed
/// beside it. A field moved next to the atomic, zero or not, or a layout
/// that Swift reordered, fails here.
@Suite("Hot atomics sit alone on their cache lines")
struct LayoutTests {
    /// The words of `object`'s allocation (header included), read in place.
    static func words(of object: AnyObject) -> (base: UnsafeRawPointer, count: Int) {
        let base = UnsafeRawPointer(Unmanaged.passUnretained(object).toOpaque())
        // The allocation's size as malloc knows it (the sanitizers' own
        // allocators answer with the size asked for): we read within it only.
        let size = mallocUsableSize(UnsafeMutableRawPointer(mutating: base))
        return (base, size / 8)
    }

    /// Finds the single word equal to `value` and checks its 128-byte block:
    /// every other word in it is padding or recognised by `neighbours` as the
    /// value of a field allowed to share it.
    static func expectAlone(_ value: UInt, in object: AnyObject, _ what: String,
                            neighbours: (UInt) -> Bool = { _ in false }) {
        let (base, count) = words(of: object)
        let hits = (2..<count).filter { base.load(fromByteOffset: $0 * 8, as: UInt.self) == value }
        #expect(hits.count == 1, "\(what): expected its value once in the object, found it at words \(hits)")
        guard hits.count == 1 else { return }
        let address = UInt(bitPattern: base) + UInt(hits[0] * 8)
        let blockStart = address & ~UInt(CacheLinePadding.size - 1)
        let blockEnd = blockStart + UInt(CacheLinePadding.size)
        let objectStart = UInt(bitPattern: base)
        #expect(blockStart >= objectStart + 16, "\(what): the block at offset \(blockStart - objectStart) holds the object's header")
        #expect(blockEnd <= objectStart + UInt(count * 8), "\(what): the block runs past the object (\(count * 8) bytes)")
        guard blockStart >= objectStart + 16, blockEnd <= objectStart + UInt(count * 8) else { return }
        var word = blockStart
        while word < blockEnd {
            if word != address {
                let v = UnsafeRawPointer(bitPattern: word)!.load(as: UInt.self)
                #expect(UInt64(v) == CacheLinePadding.fill || neighbours(v),
                        "\(what): the word at offset \(word - objectStart) shares its block and holds \(v)")
            }
            word += 8
        }
    }

    static func address(_ object: AnyObject) -> UInt {
        UInt(bitPattern: Unmanaged.passUnretained(object).toOpaque())
    }

    @Test("the BH list's pending stack: not beside the dispatch queue")
    func bhListPending() throws {
        let ctx = try AioContext(name: "layout-bh")
        let a = ctx.makeBottomHalf(name: "a") { _ in }
        let b = ctx.makeBottomHalf(name: "b") { _ in }
        defer { a.delete(); b.delete(); ctx.poll(blocking: false) }
        let list = ctx.bhList
        // queueHead and queueTail non-zero (a), pending non-zero (b).
        a.schedule()
        ctx.acquire()
        list.takeAll()
        ctx.release()
        b.schedule()
        #expect(list.queueHead != nil && list.queueTail != nil)
        Self.expectAlone(UInt(bitPattern: Unmanaged.passUnretained(b).toOpaque()), in: list, "BHList.pending")
    }

    @Test("the one-shot pool's free stack: not beside the owner's recycle chain and counts")
    func poolFree() throws {
        let ctx = try AioContext(name: "layout-pool")
        let pool = OneshotPool()
        func node(_ name: String) -> Unmanaged<BottomHalf> {
            Unmanaged.passRetained(BottomHalf(context: ctx, name: name,
                                              flags: BHFlags.oneshot, registered: false, callback: .plain({})))
        }
        let onStack = node("on the free stack")
        let inChain = node("in the chain")
        pool.recycle(onStack, flags: BHFlags.oneshot)
        pool.flush()              // free = onStack; pooled = 1
        pool.recycle(inChain, flags: BHFlags.oneshot)   // chain = inChain; pooled = 2; pass counts
        #expect(pool.nodesPooled == 2)
        Self.expectAlone(UInt(bitPattern: onStack.toOpaque()), in: pool, "OneshotPool.free")
        pool.drain()
    }

    @Test("the notify generation and notifyMe: alone together")
    func wakeState() throws {
        let ctx = try AioContext(name: "layout-notify")
        // Never polled: the values are the test's, made recognisable.
        let generation: UInt64 = 0x5A5A_1234_5678_9ABC
        ctx.core.notifyGeneration.store(generation, ordering: .relaxed)
        ctx.core.notifyMe.store(0x11, ordering: .relaxed)
        defer {
            ctx.core.notifyMe.store(0, ordering: .relaxed)
            ctx.core.notifyGeneration.store(0, ordering: .relaxed)
        }
        // notifyMe is 4 bytes: the other 4 of its word are alignment padding,
        // which Swift leaves uninitialised.
        Self.expectAlone(UInt(generation), in: ctx.core, "NotifyCore.notifyGeneration",
                         neighbours: { $0 & 0xFFFF_FFFF == 0x11 })
    }

    @Test("what a scheduler reads of the context is not beside what the owner writes per pass")
    func schedulersFields() throws {
        let ctx = try AioContext(name: "layout-context")
        // Owner-written fields non-zero, as during a pass.
        ctx.dispatchDepth = 7
        defer { ctx.dispatchDepth = 0 }
        let fields = [("core", Self.address(ctx.core)), ("oneshots", Self.address(ctx.oneshots)),
                      ("bhList", Self.address(ctx.bhList))]
        for (name, value) in fields {
            Self.expectAlone(value, in: ctx, "AioContext.\(name)",
                             neighbours: { v in fields.contains { $0.1 == v } })
        }
    }
}
