// aio-stress: every thread role of an AioContext at once, for a bounded time.
//
//   swift run -c release aio-stress            # 60 s (AIO_STRESS_SECONDS overrides)
//   AIO_STRESS=1 swift run -c release aio-stress   # the long run: 10 minutes
//
// Roles, all on one context:
//   G  a GLib thread iterating the context's GMainContext (blocking)
//   V  an owner thread: acquire(), blocking native polls, release() now and then
//   H  the home thread waiting natively for requests only it handles
//      (work only the sleeping thread can do)
//   N  a non-home thread looping notify() and non-blocking polls
//   S* schedulers re-scheduling their named BH and one-shotting BHs
//   T  a thread re-arming a timer and waiting for it
//   F  a thread adding an fd handler, writing to it, waiting, removing it
//   R  a thread asking H for work and waiting for the answer
// Every requester waits at most 5 s per round. A round that is not served in
// time is a lost wake-up: the harness prints the context's wake-up state
// (notifyMe, notified, which wake-up fds are readable, pending BHs) and exits 1.

import Aio
import CGLibShim
import Glibc
import Synchronization

func env(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}

let seconds: Double = {
    if let s = env("AIO_STRESS_SECONDS"), let v = Double(s) { return v }
    return env("AIO_STRESS") == "1" ? 600 : 60
}()
let roundTimeout = 5.0

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// A one-way event with a timeout on an eventfd.
final class Event: Sendable {
    let notifier = try! EventNotifier()
    func signal() { notifier.set() }
    func wait(_ seconds: Double) -> Bool {
        var entry = pollfd(fd: notifier.fd, events: Int16(POLLIN), revents: 0)
        let deadline = now() + seconds
        while now() < deadline {
            if Glibc.poll(&entry, 1, Int32(max(1, (deadline - now()) * 1000))) > 0 {
                return notifier.testAndClear()
            }
        }
        return notifier.testAndClear()
    }
}

final class Count: Sendable {
    private let v = Atomic<Int>(0)
    func add() { v.wrappingAdd(1, ordering: .relaxed) }
    var value: Int { v.load(ordering: .relaxed) }
}

struct Ref: @unchecked Sendable { let raw: OpaquePointer }

/// Everything the role threads share.
final class Shared: Sendable {
    let ctx = try! AioContext(name: "stress")
    let mainContext = Ref(raw: g_main_context_new())
    /// Phase 1 of shutdown: requesters stop asking.
    let stopRequests = Atomic<Bool>(false)
    /// Phase 2: once every requester is done, the loop threads stop.
    let stop = Atomic<Bool>(false)
    let request = Atomic<Int>(0)
    let answered = Event()
    let homeReady = Event()
    var stopping: Bool { stop.load(ordering: .relaxed) }
    var requestsStopping: Bool { stopRequests.load(ordering: .relaxed) }
}
let shared = Shared()
let ctx = shared.ctx
let mainContext = shared.mainContext
ctx.attach(to: mainContext.raw)

@Sendable func lostWakeup(_ role: String, _ what: String) -> Never {
    let ctx = shared.ctx
    print("aio-stress: LOST WAKE-UP in role \(role): \(what) not served within \(roundTimeout) s")
    print("aio-stress: \(ctx.debugState)")
    print("aio-stress: \(ctx.statistics)")
    fflush(nil)
    _exit(1)
}

final class Roles: @unchecked Sendable {
    // Touched only by the main thread, before the joiners start.
    var loopThreads: [NativeThread] = []
    var requesters: [NativeThread] = []
    var counters: [(String, Count)] = []
    var threads: [NativeThread] { loopThreads + requesters }
    func spawn(_ name: String, loop: Bool, _ body: @escaping @Sendable (Count) -> Void) {
        let count = Count()
        counters.append((name, count))
        let thread = try! NativeThread(name: name) { body(count) }
        if loop { loopThreads.append(thread) } else { requesters.append(thread) }
    }
}
let roles = Roles()
/// A thread that runs the loop until the end.
func spawnLoop(_ name: String, _ body: @escaping @Sendable (Count) -> Void) {
    roles.spawn(name, loop: true, body)
}
/// A thread that asks for work and checks it is served.
func spawn(_ name: String, _ body: @escaping @Sendable (Count) -> Void) {
    roles.spawn(name, loop: false, body)
}

// G: GLib iterations.
spawnLoop("G-glib") { count in
    while !shared.stopping {
        g_main_context_iteration(shared.mainContext.raw, 1)
        count.add()
    }
}

// V: an owner thread in blocking native polls; gives ownership back now and then.
spawnLoop("V-owner") { count in
    while !shared.stopping {
        shared.ctx.acquire()
        for _ in 0..<50 where !shared.stopping {
            shared.ctx.poll(blocking: true)
            count.add()
        }
        shared.ctx.release()
        sched_yield()
    }
}

// H: the home thread; requests from R are work only it does.
spawnLoop("H-home") { count in
    shared.ctx.setHomeThread()
    shared.homeReady.signal()
    var seen = 0
    while !shared.stopping {
        // A plain poll(blocking: true) after the check: the thread's own
        // notify memory keeps it awake for a request made since its last poll.
        let r = shared.request.load(ordering: .acquiring)
        if r != seen {
            seen = r
            count.add()
            shared.answered.signal()
            continue
        }
        shared.ctx.poll(blocking: true)
    }
}
_ = shared.homeReady.wait(roundTimeout)

// N: notify() plus non-blocking polls, from a thread that is neither home nor owner.
spawn("N-nonblocking") { count in
    while !shared.requestsStopping {
        shared.ctx.notify()
        shared.ctx.poll(blocking: false)
        count.add()
        if count.value % 64 == 0 { usleep(50) }
    }
}

// S*: schedulers.
let schedulerCount = 3
for s in 0..<schedulerCount {
    spawn("S\(s)-scheduler") { count in
        let ran = Event()
        let bh = shared.ctx.makeBottomHalf(name: "S\(s)-bh") { _ in ran.signal() }
        let oneshotRan = Event()
        while !shared.requestsStopping {
            bh.schedule()
            if !ran.wait(roundTimeout) { lostWakeup("S\(s)", "re-scheduled BH 'S\(s)-bh'") }
            shared.ctx.scheduleOneshot(name: "S\(s)-oneshot") { oneshotRan.signal() }
            if !oneshotRan.wait(roundTimeout) { lostWakeup("S\(s)", "one-shot 'S\(s)-oneshot'") }
            count.add()
        }
        bh.delete()
    }
}

// T: a timer re-armed from another thread.
spawn("T-timer") { count in
    let fired = Event()
    let timer = shared.ctx.makeTimer(name: "T-timer") { _ in fired.signal() }
    var i = 0
    while !shared.requestsStopping {
        i += 1
        timer.schedule(after: .microseconds(50 + (i % 10) * 40))
        if !fired.wait(roundTimeout) { lostWakeup("T", "timer armed from another thread") }
        count.add()
    }
    timer.cancel()
}

// F: fd handlers added and removed from another thread.
spawn("F-fdhandler") { count in
    var pipeFDs: [Int32] = [-1, -1]
    precondition(pipe(&pipeFDs) == 0)
    for fd in pipeFDs { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    let fds = pipeFDs
    let readable = Event()
    while !shared.requestsStopping {
        try! shared.ctx.setHandler(for: fds[0], name: "F-pipe", read: {
            var buffer = [UInt8](repeating: 0, count: 16)
            while Glibc.read(fds[0], &buffer, 16) > 0 {}
            readable.signal()
        })
        var byte: UInt8 = 1
        _ = Glibc.write(fds[1], &byte, 1)
        if !readable.wait(roundTimeout) { lostWakeup("F", "fd handler added from another thread") }
        shared.ctx.removeHandler(for: fds[0])
        count.add()
    }
    close(fds[0]); close(fds[1])
}

// R: asks the home thread for work only it does, and waits for the answer.
spawn("R-requester") { count in
    var r = 0
    while !shared.requestsStopping {
        r += 1
        shared.request.store(r, ordering: .releasing)
        shared.ctx.notify()
        if !shared.answered.wait(roundTimeout) { lostWakeup("R", "request \(r) to the sleeping home thread") }
        count.add()
    }
}

print("aio-stress: \(roles.threads.count) threads on one context for \(seconds) s")
let start = now()
while now() - start < seconds {
    usleep(200_000)
}
/// Joins `threads` while kicking every sleeper; exits 1 if they do not stop.
func joinAll(_ threads: [NativeThread], _ what: String) {
    let joined = Event()
    let joiner = try! NativeThread(name: "joiner") {
        for t in threads { t.join() }
        joined.signal()
    }
    var waited = 0.0
    while !joined.wait(0.1) {
        ctx.notify()
        g_main_context_wakeup(mainContext.raw)
        waited += 0.1
        if waited > 10 {
            print("aio-stress: \(what) did not stop: \(ctx.debugState)")
            fflush(nil)
            _exit(1)
        }
    }
    joiner.join()
}

shared.stopRequests.store(true, ordering: .relaxed)
joinAll(roles.requesters, "the requesters")
shared.stop.store(true, ordering: .relaxed)
joinAll(roles.loopThreads, "the loop threads")
while ctx.poll(blocking: false) {}
ctx.detach()
while g_main_context_iteration(mainContext.raw, 0) != 0 {}
g_main_context_unref(mainContext.raw)

for (name, count) in roles.counters {
    print("aio-stress: \(name): \(count.value) rounds")
}
print("aio-stress: \(ctx.statistics)")
print("aio-stress: PASS")
