@_spi(AioInternals) @testable import Aio
import Testing

@Suite("The ns → ms conversion for GLib's prepare timeout", .blockingLane)
struct GLibTimeoutTests {
    static let cases: [(Int64, Int32)] = [
        (-1, -1),
        (Int64.min, -1),
        (0, 0),
        (1, 1),
        (999_999, 1),
        (1_000_000, 1),
        (1_000_001, 2),
        (10_000_000, 10),
        (Int64.max, Int32.max),
    ]

    @Test("rounds up and never turns a positive wait into 0", arguments: cases)
    func conversion(ns: Int64, ms: Int32) {
        #expect(GLibTimeout.milliseconds(fromNs: ns) == ms)
    }
}
