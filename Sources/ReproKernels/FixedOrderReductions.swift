/// Reductions whose summation order is fixed by the code, not by the compiler, the CPU or a thread count:
/// element i goes to lane i mod 16 of one SIMD accumulator, the lanes are combined by a fixed pairwise tree,
/// and the tail (count mod 16) is added last, in index order. No FMA is used here (the portable GEMM's
/// explicit FMA is its own), so every IEEE-754 machine gives the same bits. Both kernel implementations
/// share these.
public enum FixedOrderReductions {
    @inlinable
    static func combine<T: KernelScalar>(_ v: SIMD16<T>) -> T {
        let h8 = v.lowHalf + v.highHalf
        let h4 = h8.lowHalf + h8.highHalf
        let h2 = h4.lowHalf + h4.highHalf
        return h2[0] + h2[1]
    }

    @inlinable
    public static func sum<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> T {
        let n = x.count, blocks = n / 16
        var acc = SIMD16<T>(repeating: 0)
        let base = UnsafeRawPointer(x.baseAddress!)
        for b in 0..<blocks {
            acc += base.loadUnaligned(fromByteOffset: b * 16 * MemoryLayout<T>.stride, as: SIMD16<T>.self)
        }
        var total = combine(acc)
        for i in (blocks * 16)..<n { total += x[i] }
        return total
    }

    @inlinable
    public static func sumOfSquaredDeviations<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, from center: T) -> T {
        let n = x.count, blocks = n / 16
        var acc = SIMD16<T>(repeating: 0)
        let c = SIMD16<T>(repeating: center)
        let base = UnsafeRawPointer(x.baseAddress!)
        for b in 0..<blocks {
            let d = base.loadUnaligned(fromByteOffset: b * 16 * MemoryLayout<T>.stride, as: SIMD16<T>.self) - c
            acc += d * d
        }
        var total = combine(acc)
        for i in (blocks * 16)..<n { let d = x[i] - center; total += d * d }
        return total
    }

    @inlinable
    public static func dot<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> T {
        precondition(x.count == y.count)
        let n = x.count, blocks = n / 16
        var acc = SIMD16<T>(repeating: 0)
        let bx = UnsafeRawPointer(x.baseAddress!), by = UnsafeRawPointer(y.baseAddress!)
        let stride = 16 * MemoryLayout<T>.stride
        for b in 0..<blocks {
            acc += bx.loadUnaligned(fromByteOffset: b * stride, as: SIMD16<T>.self)
                * by.loadUnaligned(fromByteOffset: b * stride, as: SIMD16<T>.self)
        }
        var total = combine(acc)
        for i in (blocks * 16)..<n { total += x[i] * y[i] }
        return total
    }
}
