import Aio
import Glibc
import Testing

@Suite("EventNotifier", .blockingLane)
struct EventNotifierTests {
    @Test("set makes it readable; testAndClear reports and clears")
    func setAndClear() throws {
        let n = try EventNotifier()
        #expect(!n.isSet)
        #expect(!n.testAndClear())
        n.set()
        n.set()
        #expect(n.isSet)
        #expect(n.testAndClear())
        #expect(!n.isSet)
        #expect(!n.testAndClear())
    }

    @Test("it can be created already set")
    func initiallySet() throws {
        let n = try EventNotifier(initiallySet: true)
        #expect(n.isSet)
        #expect(n.testAndClear())
    }

    @Test("the eventfd is non-blocking and close-on-exec")
    func flags() throws {
        let n = try EventNotifier()
        #expect(fcntl(n.fd, F_GETFL) & O_NONBLOCK != 0)
        #expect(fcntl(n.fd, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test("creation failure throws a typed error carrying errno and the call")
    func creationFailureThrows() throws {
        var saved = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
        // A child process keeps the lowered limit away from the other tests.
        #expect(throws: Never.self) {}
        let pid = fork()
        if pid == 0 {
            var low = saved
            low.rlim_cur = 0
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &low)
            do {
                _ = try EventNotifier()
                _exit(2)
            } catch {
                _exit(error == .system(SystemCallError(call: "eventfd", errno: EMFILE)) ? 0 : 3)
            }
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        #expect(status == 0, "the child saw the wrong outcome (exit status \(status >> 8))")
    }

    @Test("SystemCallError describes the call and errno")
    func errorDescription() {
        let e = SystemCallError(call: "eventfd", errno: EMFILE)
        #expect(e.description == "eventfd: Too many open files (errno 24)")
    }
}
