/// Reductions whose summation order is fixed by the code, not by the compiler, the CPU or a thread count, and
/// whose rounding error grows like log n, not n. The one tree, for n terms t₀ … t₍ₙ₋₁₎:
///
/// 1. Vectors: term i goes to lane i mod 16 of vector ⌊i/16⌋; there are v = ⌊n/16⌋ whole vectors.
/// 2. The vectors are summed lane-wise by a pairwise tree: S(lo..<hi) = S(lo..<lo+h) + S(lo+h..<hi), h the
///    largest power of two below hi − lo (so every left subtree is perfect), S of one vector = that vector.
/// 3. The 16 lanes of S are combined pairwise (`combine`: halves, then quarters, …).
/// 4. The n mod 16 terms after the last whole vector are added last, in index order.
///
/// A term passes through at most ⌈log₂ v⌉ + 4 + (n mod 16) roundings, so |error| ≤ γ(d)·Σ|tᵢ| with that d
/// (`errorBoundRoundings`): 20 for n = 10⁶ against 62,500 for 16 lanes added in a row (the order before).
/// The terms are x (sum), (x − c)² (sum of squared deviations: two more roundings) and x·y (dot: one more).
/// No FMA is used here, so every IEEE-754 machine gives the same bits; both kernel implementations share
/// these. Speed: the bottom four levels of the tree are one expression over 16 vectors; above them a
/// binary counter (carry on a full level) builds exactly the tree of step 2 in one pass.
public enum FixedOrderReductions {
    /// Step 3: the lanes of one vector, pairwise.
    @inlinable
    static func combine<T: KernelScalar>(_ v: SIMD16<T>) -> T {
        let h8 = v.lowHalf + v.highHalf
        let h4 = h8.lowHalf + h8.highHalf
        let h2 = h4.lowHalf + h4.highHalf
        return h2[0] + h2[1]
    }

    /// The number of roundings d a term of an n-term sum can go through (see above); a dot product or squared
    /// deviation adds one for forming the term.
    public static func errorBoundRoundings(count n: Int) -> Int {
        let vectors = n / 16
        var levels = 0
        while (1 << levels) < vectors { levels += 1 }
        return levels + (vectors > 0 ? 4 : 0) + n % 16
    }

    @inlinable
    public static func sum<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> T {
        reduce(count: x.count, vector: { i in UnsafeRawPointer(x.baseAddress! + i).loadUnaligned(as: SIMD16<T>.self) }, scalar: { x[$0] })
    }

    @inlinable
    public static func sumOfSquaredDeviations<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, from center: T) -> T {
        let c = SIMD16<T>(repeating: center)
        return reduce(count: x.count, vector: { i in
            let d = UnsafeRawPointer(x.baseAddress! + i).loadUnaligned(as: SIMD16<T>.self) - c
            return d * d
        }, scalar: { i in let d = x[i] - center; return d * d })
    }

    @inlinable
    public static func dot<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> T {
        precondition(x.count == y.count)
        return reduce(count: x.count, vector: { i in
            UnsafeRawPointer(x.baseAddress! + i).loadUnaligned(as: SIMD16<T>.self)
                * UnsafeRawPointer(y.baseAddress! + i).loadUnaligned(as: SIMD16<T>.self)
        }, scalar: { x[$0] * y[$0] })
    }

    /// Steps 2–4. Levels of the counter: slot l holds the sum of a perfect subtree of 2^l vectors waiting for
    /// its right sibling; the 16-vector groups enter at level 4.
    @inlinable @inline(__always)
    static func reduce<T: KernelScalar>(count n: Int, vector: (Int) -> SIMD16<T>, scalar: (Int) -> T) -> T {
        typealias V = SIMD16<T>
        let vectors = n / 16
        guard vectors > 0 else {
            var total = T.zero
            for i in 0..<n { total += scalar(i) }
            return total
        }
        return withUnsafeTemporaryAllocation(of: V.self, capacity: 64) { slots in
            var occupied: UInt64 = 0  // bit l set: slots[l] holds a pending left subtree of level l
            @inline(__always) func push(_ value: V, level: Int) {
                var carry = value, l = level
                while occupied & (1 << l) != 0 {
                    carry = slots[l] + carry
                    occupied &= ~(1 << l)
                    l += 1
                }
                slots[l] = carry
                occupied |= 1 << l
            }
            let groups = vectors / 16
            for g in 0..<groups {
                let i = g &* 256
                @inline(__always) func pair(_ k: Int) -> V { vector(i &+ 32 &* k) + vector(i &+ 32 &* k &+ 16) }
                let q0 = pair(0) + pair(1), q1 = pair(2) + pair(3), q2 = pair(4) + pair(5), q3 = pair(6) + pair(7)
                push((q0 + q1) + (q2 + q3), level: 4)
            }
            for v in (groups * 16)..<vectors { push(vector(v &* 16), level: 0) }
            // The pending subtrees, smallest (rightmost) first: S = P_high + (… + (P_next + P_low)).
            var total: V? = nil
            for l in 0..<64 where occupied & (1 << l) != 0 {
                total = total.map { slots[l] + $0 } ?? slots[l]
            }
            var result = combine(total!)
            for i in (vectors * 16)..<n { result += scalar(i) }
            return result
        }
    }
}
