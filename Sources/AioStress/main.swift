// aio-stress: every thread role of an AioContext at once, for a bounded time.
//
//   swift run -c release aio-stress            # 60 s (AIO_STRESS_SECONDS overrides)
//   AIO_STRESS=1 swift run -c release aio-stress   # the long run: 10 minutes
//
//   swift run -c release aio-stress multithread   # QEMU's test-aio-multithread
//                                                 # workloads (Multithread.swift)
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
// (notifyMe, the notify generation, which wake-up fds are readable, pending
// BHs) and exits 1.
//
// The run alternates phases: all requesters at once, then each requester
// alone. A lost wake-up in a busy phase is often rescued by someone else's
// notify a moment later; alone, nothing rescues it, so the watchdog sees it.
// At the end, with no work left, the loop threads must go to sleep: more than
// 1,000 iterations in an idle second is a busy loop and also fails.

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
/// How long a requester waits for one round; AIO_STRESS_ROUND_TIMEOUT overrides.
let roundTimeout: Double = Double(env("AIO_STRESS_ROUND_TIMEOUT") ?? "") ?? 2.0

// The other mode: five IOThreads instead of every role on one context.
if CommandLine.arguments.dropFirst().first == "multithread" || env("AIO_STRESS_MODE") == "multithread" {
    runMultithreadMode(seconds: seconds, roundTimeout: roundTimeout)
}

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
    /// Bit i set: requester i may work in the current phase.
    let activeRequesters = Atomic<Int>(~0)
    /// Requesters with a round in flight. A phase ends only once it is 0, so
    /// a round lost in a quiet phase is never rescued by the next phase.
    let roundsInFlight = Atomic<Int>(0)
    var stopping: Bool { stop.load(ordering: .relaxed) }
    /// Whether requester `i` may start a round now; sleeps a little if not.
    /// Every other round it first pauses for a random moment, so the loop
    /// threads are caught at every stage: running, about to sleep, asleep.
    func mayWork(_ i: Int) -> Bool {
        if activeRequesters.load(ordering: .relaxed) & (1 << i) == 0 {
            usleep(1_000)
            return false
        }
        if Bool.random() { usleep(UInt32.random(in: 1...300)) }
        roundsInFlight.wrappingAdd(1, ordering: .relaxed)
        if activeRequesters.load(ordering: .relaxed) & (1 << i) == 0 {
            // The phase ended while we paused.
            roundsInFlight.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func roundDone() {
        roundsInFlight.wrappingSubtract(1, ordering: .relaxed)
    }
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

// N: non-blocking polls from a thread that is neither home nor owner. It
// never notifies, so it cannot rescue a wake-up it stole.
spawn("N-nonblocking") { count in
    while !shared.requestsStopping {
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
            guard shared.mayWork(s) else { continue }
            bh.schedule()
            if !ran.wait(roundTimeout) { lostWakeup("S\(s)", "re-scheduled BH 'S\(s)-bh'") }
            shared.ctx.scheduleOneshot(name: "S\(s)-oneshot") { oneshotRan.signal() }
            if !oneshotRan.wait(roundTimeout) { lostWakeup("S\(s)", "one-shot 'S\(s)-oneshot'") }
            shared.roundDone()
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
        guard shared.mayWork(3) else { continue }
        i += 1
        timer.schedule(after: .microseconds(50 + (i % 10) * 40))
        if !fired.wait(roundTimeout) { lostWakeup("T", "timer armed from another thread") }
        shared.roundDone()
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
        guard shared.mayWork(4) else { continue }
        try! shared.ctx.setHandler(for: fds[0], name: "F-pipe", read: {
            var buffer = [UInt8](repeating: 0, count: 16)
            while Glibc.read(fds[0], &buffer, 16) > 0 {}
            readable.signal()
        })
        var byte: UInt8 = 1
        _ = Glibc.write(fds[1], &byte, 1)
        if !readable.wait(roundTimeout) { lostWakeup("F", "fd handler added from another thread") }
        shared.ctx.removeHandler(for: fds[0])
        shared.roundDone()
        count.add()
    }
    close(fds[0]); close(fds[1])
}

// B0, B1: two threads hammering one shared BH with schedule() without waiting
// in between, so re-schedules race with its dequeue (PENDING cleared only
// after the unlink); each round then waits until it has run again.
final class Hammer: Sendable {
    let runs = Atomic<Int>(0)
    let ran = Event()
}
let hammer = Hammer()
let hammered = ctx.makeBottomHalf(name: "B-shared") { _ in
    hammer.runs.wrappingAdd(1, ordering: .releasing)
    hammer.ran.signal()
}
for b in 0..<2 {
    spawn("B\(b)-hammer") { count in
        while !shared.requestsStopping {
            guard shared.mayWork(6 + b) else { continue }
            let before = hammer.runs.load(ordering: .acquiring)
            for _ in 0..<200 { hammered.schedule() }
            let deadline = now() + roundTimeout
            while hammer.runs.load(ordering: .acquiring) == before {
                if now() > deadline { lostWakeup("B\(b)", "shared BH 'B-shared' re-scheduled 200 times") }
                _ = hammer.ran.wait(0.01)
            }
            shared.roundDone()
            count.add()
        }
    }
}

// R: asks the home thread for work only it does, and waits for the answer.
spawn("R-requester") { count in
    var r = 0
    while !shared.requestsStopping {
        guard shared.mayWork(5) else { continue }
        r += 1
        shared.request.store(r, ordering: .releasing)
        shared.ctx.notify()
        if !shared.answered.wait(roundTimeout) { lostWakeup("R", "request \(r) to the sleeping home thread") }
        shared.roundDone()
        count.add()
    }
}

print("aio-stress: \(roles.threads.count) threads on one context for \(seconds) s")
// Phases: everyone (3 s), then each requester alone (3 s each), repeated.
// AIO_STRESS_ROLES (e.g. "R" or "S0,T") limits the run to those requesters.
let requesterNames = ["S0", "S1", "S2", "T", "F", "R", "B0", "B1"]
let requesterCount = requesterNames.count
let allowedMask: Int = {
    guard let list = env("AIO_STRESS_ROLES") else { return ~0 }
    var mask = 0
    for name in list.split(separator: ",") {
        if let i = requesterNames.firstIndex(of: String(name)) { mask |= 1 << i }
    }
    return mask
}()
let start = now()
// The phases, as bit masks over requesterNames: R alone first (the role that
// no other role can rescue), the two hammers together, each other one alone,
// then everyone.
let phases: [Int] = [1 << 5, 1 << 6 | 1 << 7, 1 << 4, 1 << 3, 1 << 0, 1 << 1, 1 << 2, ~0]
var phase = 0
while now() - start < seconds {
    shared.activeRequesters.store(phases[phase % phases.count] & allowedMask, ordering: .relaxed)
    let phaseStart = now()
    while now() - phaseStart < 3 && now() - start < seconds { usleep(50_000) }
    // Quiesce: no new rounds, and wait for those in flight (a lost one ends
    // the process from its own watchdog).
    shared.activeRequesters.store(0, ordering: .relaxed)
    while shared.roundsInFlight.load(ordering: .relaxed) > 0 { usleep(1_000) }
    // No busy wait: with no work in flight the loop threads must sleep. The
    // non-blocking poller keeps polling, so count blocking waits, not polls.
    usleep(50_000)
    let waitsBefore = ctx.statistics.blockingWaits
    usleep(200_000)
    let idleWaits = ctx.statistics.blockingWaits - waitsBefore
    if idleWaits > 200 {
        print("aio-stress: BUSY LOOP: \(idleWaits) blocking waits in 200 ms with no work; the loop threads do not sleep")
        print("aio-stress: \(ctx.debugState)")
        fflush(nil)
        _exit(1)
    }
    phase += 1
}
shared.activeRequesters.store(allowedMask, ordering: .relaxed)
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

// No busy wait: with no work left, the loop threads must go to sleep. Let
// them settle, then count loop iterations over one idle second.
usleep(300_000)
let idleStart = ctx.statistics.iterations
usleep(1_000_000)
let idleIterations = ctx.statistics.iterations - idleStart
print("aio-stress: \(idleIterations) loop iterations in 1 s with no work")
if idleIterations > 1_000 {
    print("aio-stress: BUSY LOOP: the loop threads keep running with no work to do")
    print("aio-stress: \(ctx.debugState)")
    fflush(nil)
    _exit(1)
}
shared.stop.store(true, ordering: .relaxed)
joinAll(roles.loopThreads, "the loop threads")
hammered.delete()
while ctx.poll(blocking: false) {}
ctx.detach()
while g_main_context_iteration(mainContext.raw, 0) != 0 {}
g_main_context_unref(mainContext.raw)

for (name, count) in roles.counters {
    print("aio-stress: \(name): \(count.value) rounds")
}
print("aio-stress: \(ctx.statistics)")
print("aio-stress: PASS")
