/// Reductions whose summation order is fixed by the code, not by the compiler, the CPU or a thread count, and
/// whose rounding error grows like log n, not n. The one tree, for n terms t₀ … t₍ₙ₋₁₎:
///
/// 1. Vectors: term i goes to lane i mod 16 of vector ⌊i/16⌋; there are v = ⌊n/16⌋ whole vectors.
/// 2. Blocks of 16 vectors (256 terms; the last block may be shorter): within a block each lane adds its
///    vectors in a row.
/// 3. The block sums are added lane-wise by a pairwise tree: S(lo..<hi) = S(lo..<lo+h) + S(lo+h..<hi), h the
///    largest power of two below hi − lo (every left subtree is perfect), S of one block = that block's sum.
/// 4. The 16 lanes of S are combined pairwise (`combine`: halves, then quarters, …).
/// 5. The n mod 16 terms after the last whole vector are added last, in index order.
///
/// A term passes through at most (min(v, 16) − 1) + ⌈log₂ ⌈v/16⌉⌉ + 4 + (n mod 16) roundings, so
/// |error| ≤ γ(d)·Σ|tᵢ| with that d (`errorBoundRoundings`): 31 for n = 10⁶ against 62,500 for 16 lanes added
/// in a row (the order before). The terms are x (sum), (x − c)² (sum of squared deviations: two more
/// roundings) and x·y (dot: one more). No FMA is used here, so every IEEE-754 machine gives the same bits;
/// both kernel implementations share these. Speed: the blocks are the plain 16-lane loop; the tree above
/// them costs one add per 256 terms.
public enum FixedOrderReductions {
    /// Step 4: the lanes of one vector, pairwise.
    @inlinable @inline(__always)
    static func combine<T: KernelScalar>(_ v: SIMD16<T>) -> T {
        let h8 = v.lowHalf + v.highHalf
        let h4 = h8.lowHalf + h8.highHalf
        let h2 = h4.lowHalf + h4.highHalf
        return h2[0] + h2[1]
    }

    /// Vectors per block of step 2.
    public static let blockVectors = 16

    /// The number of roundings d a term of an n-term sum can go through (see above); a dot product or squared
    /// deviation adds one or two for forming the term.
    public static func errorBoundRoundings(count n: Int) -> Int {
        let vectors = n / 16
        guard vectors > 0 else { return n }
        let blocks = (vectors + blockVectors - 1) / blockVectors
        var levels = 0
        while (1 << levels) < blocks { levels += 1 }
        return (Swift.min(vectors, blockVectors) - 1) + levels + 4 + n % 16
    }

    @inlinable
    public static func sum<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> T {
        reduce(Values(x: x.baseAddress, count: x.count))
    }

    @inlinable
    public static func sumOfSquaredDeviations<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, from center: T) -> T {
        reduce(SquaredDeviations(x: x.baseAddress, count: x.count, center: center))
    }

    @inlinable
    public static func dot<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> T {
        precondition(x.count == y.count)
        return reduce(Products(x: x.baseAddress, y: y.baseAddress, count: x.count))
    }

    /// Steps 2–5. The block sums enter a binary counter (slot l holds the sum of a perfect subtree of 2^l
    /// blocks waiting for its right sibling); at the end the pending slots fold from the right, smallest
    /// first, which is the halving rule's tree.
    @inlinable @inline(__always)
    static func reduce<Terms: ReductionTerms>(_ terms: Terms) -> Terms.Scalar {
        typealias V = SIMD16<Terms.Scalar>
        let n = terms.count, vectors = n / 16
        var result = Terms.Scalar.zero
        if vectors > 0 {
            let blocks = (vectors + blockVectors - 1) / blockVectors
            @inline(__always) func block(_ k: Int) -> V {
                let first = k &* blockVectors, last = Swift.min(vectors, first &+ blockVectors)
                var acc = terms.vector(first &* 16)
                for v in (first &+ 1)..<last { acc += terms.vector(v &* 16) }
                return acc
            }
            if blocks == 1 {
                result = combine(block(0))
            } else {
                result = combine(withUnsafeTemporaryAllocation(of: V.self, capacity: 64) { slots in
                    var occupied: UInt64 = 0
                    for k in 0..<blocks {
                        var carry = block(k), level = 0
                        while occupied & (1 << level) != 0 {
                            carry = slots[level] + carry
                            occupied &= ~(1 << level)
                            level += 1
                        }
                        slots[level] = carry
                        occupied |= 1 << level
                    }
                    var total: V? = nil
                    for level in 0..<64 where occupied & (1 << level) != 0 {
                        total = total.map { slots[level] + $0 } ?? slots[level]
                    }
                    return total!
                })
            }
        }
        for i in (vectors * 16)..<n { result += terms.scalar(i) }
        return result
    }
}

/// The terms of one reduction: 16 at once from index i (a whole vector), or one. A generic parameter, not a
/// closure, so that each kind of term is specialized and inlined into the tree.
@usableFromInline
protocol ReductionTerms {
    associatedtype Scalar: KernelScalar
    var count: Int { get }
    func vector(_ i: Int) -> SIMD16<Scalar>
    func scalar(_ i: Int) -> Scalar
}

@usableFromInline
struct Values<Scalar: KernelScalar>: ReductionTerms {
    @usableFromInline let x: UnsafePointer<Scalar>?
    @usableFromInline let count: Int
    @inlinable init(x: UnsafePointer<Scalar>?, count: Int) { self.x = x; self.count = count }
    @inlinable @inline(__always) func vector(_ i: Int) -> SIMD16<Scalar> { UnsafeRawPointer(x! + i).loadUnaligned(as: SIMD16<Scalar>.self) }
    @inlinable @inline(__always) func scalar(_ i: Int) -> Scalar { x![i] }
}

@usableFromInline
struct SquaredDeviations<Scalar: KernelScalar>: ReductionTerms {
    @usableFromInline let x: UnsafePointer<Scalar>?
    @usableFromInline let count: Int
    @usableFromInline let center: Scalar
    @inlinable init(x: UnsafePointer<Scalar>?, count: Int, center: Scalar) { self.x = x; self.count = count; self.center = center }
    @inlinable @inline(__always) func vector(_ i: Int) -> SIMD16<Scalar> {
        let d = UnsafeRawPointer(x! + i).loadUnaligned(as: SIMD16<Scalar>.self) - SIMD16(repeating: center)
        return d * d
    }
    @inlinable @inline(__always) func scalar(_ i: Int) -> Scalar { let d = x![i] - center; return d * d }
}

@usableFromInline
struct Products<Scalar: KernelScalar>: ReductionTerms {
    @usableFromInline let x: UnsafePointer<Scalar>?, y: UnsafePointer<Scalar>?
    @usableFromInline let count: Int
    @inlinable init(x: UnsafePointer<Scalar>?, y: UnsafePointer<Scalar>?, count: Int) { self.x = x; self.y = y; self.count = count }
    @inlinable @inline(__always) func vector(_ i: Int) -> SIMD16<Scalar> {
        UnsafeRawPointer(x! + i).loadUnaligned(as: SIMD16<Scalar>.self) * UnsafeRawPointer(y! + i).loadUnaligned(as: SIMD16<Scalar>.self)
    }
    @inlinable @inline(__always) func scalar(_ i: Int) -> Scalar { x![i] * y![i] }
}
