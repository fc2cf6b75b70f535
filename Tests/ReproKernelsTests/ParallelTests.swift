import Dispatch
import Foundation
import Synchronization
import Testing
import ReproKernels

/// `Parallel.forEach` runs every item of every call exactly once, whichever thread claims its part: over many
/// calls back to back (workers spinning), after pauses (workers asleep and woken), nested, and from two
/// callers at once (the second goes to libdispatch).
@Suite struct ParallelTests {
    /// How many times each of 0..<items was visited by `forEach`.
    static func visits(_ items: Int, _ forEach: (Int, @Sendable (Range<Int>) -> Void) -> Void) -> [Int] {
        let counts = Mutex([Int](repeating: 0, count: items))
        forEach(items) { range in counts.withLock { c in for i in range { c[i] += 1 } } }
        return counts.withLock { $0 }
    }

    @Test func everyItemOnceOverManyCalls() {
        var failures = 0
        for call in 0..<3000 {
            let items = call % 37 + 1, threads = call % 4 + 1
            if call % 200 == 199 { usleep(1_000) }  // longer than the workers spin: they sleep and are woken
            let counts = Self.visits(items) { n, body in Parallel.forEach(n, threads: threads, body) }
            if counts != [Int](repeating: 1, count: items) { failures += 1 }
        }
        #expect(failures == 0)
    }

    @Test func nestedAndConcurrentCalls() {
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 2) { caller in
            for _ in 0..<500 {
                let outer = Self.visits(8 + caller) { n, body in
                    Parallel.forEach(n, threads: 2) { range in
                        let inner = Self.visits(5) { m, b in Parallel.forEach(m, threads: 2, b) }
                        if inner != [1, 1, 1, 1, 1] { failures.add(1, ordering: .relaxed) }
                        body(range)
                    }
                }
                if outer != [Int](repeating: 1, count: 8 + caller) { failures.add(1, ordering: .relaxed) }
            }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
    }

    @Test func negativeControlAMissedPartIsSeen() {
        // A split that drops its last item, or runs one part twice, must fail the check the tests above use.
        let dropped = Self.visits(10) { n, body in body(0..<(n - 1)) }
        let doubled = Self.visits(10) { n, body in body(0..<n); body(5..<n) }
        #expect(dropped != [Int](repeating: 1, count: 10))
        #expect(doubled != [Int](repeating: 1, count: 10))
    }
}
