// FirstProgram: what a first Swift 6 program with swift-aio looks like. The
// main thread runs GLib's default GMainContext with a context attached; an
// IOThread computes on its thread pool, and a one-shot brings each result
// back to the main actor. No `@unchecked`, no `nonisolated(unsafe)`, no
// `assumeIsolated`: GLibMainLoop is Sendable and quits from any thread, and
// scheduleOneshot(onMainActor:) runs main-actor code (checked at run time).
//
//   swift run FirstProgram

import Aio
import Glibc  // exit

let count = 32

let home = try AioContext(name: "main")   // its home is the main thread
home.attach(to: nil)                      // GLib's default GMainContext runs it
let io = try IOThread(name: "io")
try io.start()
let loop = GLibMainLoop()

var squares: [Int] = []                   // top-level state: main actor

for n in 1...count {
    io.context.scheduleOneshot {
        // On the IOThread: the work goes to its pool, the result comes back here.
        io.context.threadPool.submit({ n * n }) { result in
            let square = (try? result.get()) ?? -1
            home.scheduleOneshot(onMainActor: {
                squares.append(square)
                if squares.count == count { loop.quit() }
            })
        }
    }
}

loop.run()

io.stop()
io.join()
home.detach()
let expected = (1...count).map { $0 * $0 }
guard squares.sorted() == expected else {
    print("FirstProgram: wrong results \(squares.sorted())")
    exit(1)
}
print("FirstProgram: \(count) results computed on the IOThread's pool arrived on the main actor; sum \(squares.reduce(0, +))")
