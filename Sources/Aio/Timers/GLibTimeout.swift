/// The library's single nanosecond → millisecond conversion, for the timeout
/// GLib takes from a GSource's prepare.
enum GLibTimeout {
    /// Converts a timeout in ns (negative: infinite) to GLib's ms, rounding up
    /// so a sub-millisecond deadline never becomes a 0 ms busy spin.
    /// - negative → -1 (infinite)
    /// - 0 → 0
    /// - 1 ns ... 1 ms → 1
    /// - larger values saturate at `Int32.max`.
    static func milliseconds(fromNs ns: Int64) -> Int32 {
        if ns < 0 { return -1 }
        if ns == 0 { return 0 }
        let ms = (ns - 1) / 1_000_000 + 1
        return ms > Int64(Int32.max) ? Int32.max : Int32(ms)
    }
}
