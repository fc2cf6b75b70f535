import Dispatch

/// Fork-join for work a caller splits into whole outputs (a layer's channels or images, a GEMM's columns).
/// Part i always covers the same items and writes only its own outputs, so the bits never depend on the
/// thread count or on scheduling; only the time does.
public enum Parallel {
    /// Calls `body` on up to `threads` contiguous ranges covering 0..<items, each of at least
    /// `minimumPerPart` items (small jobs are not worth waking a thread for).
    @inlinable
    public static func forEach(_ items: Int, threads: Int, minimumPerPart: Int = 1,
                               _ body: @Sendable (Range<Int>) -> Void) {
        let parts = max(1, min(threads, items / max(1, minimumPerPart)))
        if parts == 1 {
            if items > 0 { body(0..<items) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            body((items * part / parts)..<(items * (part + 1) / parts))
        }
    }
}
