import Aio
import CGLibShim
import Foundation
import Testing

/// Misuse traps with a message naming the object and the rule. Each case runs
/// in a child process (`#expect(processExitsWith:)`) and checks the message.
@Suite("Misuse traps with a message")
struct MisuseTests {
    static func stderr(_ result: ExitTest.Result?) -> String {
        String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    }

    @Test("a blocking poll without ownership traps")
    func blockingPollWithoutOwnership() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ctx = try! AioContext(name: "not-yours")
            let t = try! NativeThread(name: "intruder") {
                ctx.poll(blocking: true)
            }
            t.join()
        }
        #expect(Self.stderr(result).contains("AioContext 'not-yours': poll(blocking: true) on a thread that is neither the context's home thread nor its owner"))
    }

    @Test("a blocking poll from a thread that acquired ownership is allowed", .blockingLane)
    func blockingPollWithOwnership() throws {
        let ctx = try AioContext(name: "owned")
        let ran = Counter()
        let t = try NativeThread(name: "owner") {
            ctx.withOwnership {
                ctx.scheduleOneshot { ran.increment() }
                _ = ctx.poll(blocking: true)
            }
        }
        t.join()
        #expect(ran.count == 1)
    }

    @Test("schedule after delete traps")
    func scheduleAfterDelete() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ctx = try! AioContext(name: "ctx")
            let bh = ctx.makeBottomHalf(name: "gone") { _ in }
            bh.delete()
            ctx.poll(blocking: false)
            bh.schedule()
        }
        #expect(Self.stderr(result).contains("BottomHalf 'gone': schedule() after delete()"))
    }

    @Test("deleting a BH twice traps")
    func deleteTwice() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ctx = try! AioContext(name: "ctx")
            let bh = ctx.makeBottomHalf(name: "twice") { _ in }
            bh.delete()
            bh.delete()
        }
        #expect(Self.stderr(result).contains("BottomHalf 'twice': delete() after delete()"))
    }

    @Test("a BH leaked at teardown is reported by name")
    func leakedAtTeardown() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            do {
                let ctx = try! AioContext(name: "leaky-ctx")
                _ = ctx.makeBottomHalf(name: "forgotten") { _ in }
                withExtendedLifetime(ctx) {}
            }
        }
        let message = Self.stderr(result)
        #expect(message.contains("AioContext 'leaky-ctx' torn down with live bottom halves"))
        #expect(message.contains("'forgotten' (made with makeBottomHalf, never deleted)"))
    }

    @Test("a one-shot still pending at teardown is reported by name")
    func pendingOneshotAtTeardown() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            do {
                let ctx = try! AioContext(name: "ctx")
                ctx.scheduleOneshot(name: "never-ran") {}
                withExtendedLifetime(ctx) {}
            }
        }
        #expect(Self.stderr(result).contains("one-shot 'never-ran' (scheduled, never ran)"))
    }

    @Test("a deleted BH does not count as leaked, even if the loop never freed it", .blockingLane)
    func deletedButUnfreedIsFine() throws {
        let ctx = try AioContext(name: "ctx")
        let bh = ctx.makeBottomHalf(name: "deleted") { _ in }
        bh.schedule()
        bh.delete()
        // No poll: teardown frees it.
    }

    @Test("attaching twice traps")
    func attachTwice() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ctx = try! AioContext(name: "twice-attached")
            let mc = g_main_context_new()
            ctx.attach(to: mc)
            ctx.attach(to: mc)
        }
        #expect(Self.stderr(result).contains("AioContext 'twice-attached': attach(to:) while already attached"))
    }

    @Test("release without ownership traps")
    func releaseWithoutOwnership() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ctx = try! AioContext(name: "unowned")
            ctx.release()
        }
        #expect(Self.stderr(result).contains("AioContext 'unowned': release() on a thread that does not own the context"))
    }

    @Test("unlocking an AsyncMutex that is not locked traps (also a second unlock)")
    func asyncMutexUnlockWhenFree() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let mutex = AsyncMutex(name: "twice-unlocked")
            try await mutex.lock()
            mutex.unlock()
            mutex.unlock()
        }
        #expect(Self.stderr(result).contains("AsyncMutex 'twice-unlocked': unlock() of a mutex that is not locked"))
    }

    @Test("unlocking an AsyncMutex from a task that does not hold it traps")
    func asyncMutexUnlockByNonHolder() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let mutex = AsyncMutex(name: "not-yours")
            try await mutex.lock()
            await Task.detached { mutex.unlock() }.value
        }
        #expect(Self.stderr(result).contains("AsyncMutex 'not-yours': unlock() by a task or thread that does not hold the mutex"))
    }

    @Test("locking an AsyncMutex the task already holds traps instead of waiting forever")
    func asyncMutexRecursiveLock() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let mutex = AsyncMutex(name: "recursive")
            try await mutex.lock()
            try await mutex.lock()
        }
        #expect(Self.stderr(result).contains("AsyncMutex 'recursive': lock() by the task (or thread) that already holds it"))
    }
}
