/// 128 bytes that keep a stored property that other threads write off the
/// cache lines of its object's other fields (and of its header, whose
/// reference count retains write).
///
/// A class declares one before and one after such a property. Swift lays out
/// a class's stored properties in declaration order, after the 16-byte
/// header, so the property shares no 64-byte line with any other field, and
/// with the header only if its padding before is under 48 bytes; 128 bytes
/// on each side also keep it off the neighbouring line that x86 cores
/// prefetch in pairs. Tests check the layout ("hot atomics sit alone on
/// their cache lines").
///
/// Why: the BH list's pending stack is compare-exchanged by every producer,
/// while the loop wrote the dispatch queue's head, in the same line, once per
/// callback; each producer's push then had to take the line back from the
/// loop's core. The one-shot pool's free stack and the loop's per-callback
/// recycle chain were in the same position.
struct CacheLinePadding {
    // A tuple of 16 words: no heap storage, written once with the object.
    // Each word holds `fill`, so that the layout tests tell padding from a
    // field whose value is zero.
    private var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                        UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
        = (fill, fill, fill, fill, fill, fill, fill, fill,
           fill, fill, fill, fill, fill, fill, fill, fill)

    static let size = 128
    /// "PADDING!" in ASCII, little-endian.
    static let fill: UInt64 = 0x2147_4E49_4444_4150
}
