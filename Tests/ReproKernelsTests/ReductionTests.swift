import Foundation
import ReproKernels
import ReproNN
import ReproTestSupport
import Testing

/// `FixedOrderReductions` against a plain scalar transcription of its documented tree, and its error growth
/// against the bound of that tree.
@Suite struct ReductionTests {
    /// The documented order, written as its definition (blocks of 16 vectors summed lane by lane in a row, the
    /// block sums by recursive halving, then the lanes pairwise, then the tail in order) rather than as the
    /// kernel's binary counter.
    static func documentedTree<T: KernelScalar>(_ terms: [T]) -> T {
        let n = terms.count, vectors = n / 16, blocks = (vectors + 15) / 16
        var result = T.zero
        if vectors > 0 {
            func block(_ k: Int) -> [T] {
                var acc = Array(terms[(k * 256)..<(k * 256 + 16)])
                for v in (k * 16 + 1)..<min(vectors, k * 16 + 16) { for lane in 0..<16 { acc[lane] += terms[v * 16 + lane] } }
                return acc
            }
            func lanes(_ lo: Int, _ hi: Int) -> [T] {
                if hi - lo == 1 { return block(lo) }
                var h = 1
                while h * 2 < hi - lo { h *= 2 }
                return zip(lanes(lo, lo + h), lanes(lo + h, hi)).map { $0 + $1 }
            }
            var l = lanes(0, blocks), width = 16
            while width > 1 {
                width /= 2
                for i in 0..<width { l[i] = l[i] + l[i + width] }
            }
            result = l[0]
        }
        for i in (vectors * 16)..<n { result += terms[i] }
        return result
    }

    /// The order before this tree: 16 lanes each summed in a row, lanes pairwise, tail in order.
    static func lanesInARow<T: KernelScalar>(_ terms: [T]) -> T {
        let vectors = terms.count / 16
        var l = [T](repeating: 0, count: 16)
        for v in 0..<vectors { for lane in 0..<16 { l[lane] += terms[v * 16 + lane] } }
        var width = 16
        while width > 1 {
            width /= 2
            for i in 0..<width { l[i] = l[i] + l[i + width] }
        }
        var result = l[0]
        for i in (vectors * 16)..<terms.count { result += terms[i] }
        return result
    }

    static let sizes = [0, 1, 15, 16, 17, 31, 33, 255, 256, 257, 511, 4095, 4096 + 16 * 5 + 7, 16 * 256 * 7 + 3, 100_352, 100_355]

    @Test(arguments: sizes)
    func floatReductionsMatchTheDocumentedTreeBitForBit(n: Int) {
        let x = PortableKernelTests.values(n, seed: UInt64(n) + 1), y = PortableKernelTests.values(n, seed: UInt64(n) + 2)
        let center = x.isEmpty ? 0 : x[x.count / 2]
        x.withUnsafeBufferPointer { xp in y.withUnsafeBufferPointer { yp in
            #expect(FixedOrderReductions.sum(xp).bitPattern == Self.documentedTree(x).bitPattern)
            #expect(FixedOrderReductions.dot(xp, yp).bitPattern == Self.documentedTree(zip(x, y).map { $0 * $1 }).bitPattern)
            #expect(FixedOrderReductions.sumOfSquaredDeviations(xp, from: center).bitPattern
                == Self.documentedTree(x.map { ($0 - center) * ($0 - center) }).bitPattern)
            // Through the kernel seam (the path layers take), both implementations.
            #expect(PortableKernels(threads: 3).sum(xp).bitPattern == Self.documentedTree(x).bitPattern)
            #expect(BLASKernels().dot(xp, yp).bitPattern == Self.documentedTree(zip(x, y).map { $0 * $1 }).bitPattern)
        } }
    }

    @Test(arguments: [17, 4097, 100_355])
    func doubleReductionsMatchTheDocumentedTreeBitForBit(n: Int) {
        let x = randomValues(n, seed: 7, scale: 1e3, offset: 5)
        x.withUnsafeBufferPointer { xp in
            #expect(FixedOrderReductions.sum(xp).bitPattern == Self.documentedTree(x).bitPattern)
            #expect(FixedOrderReductions.dot(xp, xp).bitPattern == Self.documentedTree(x.map { $0 * $0 }).bitPattern)
        }
    }

    /// Negative control: the bit comparison above tells another order apart (here the previous one).
    @Test func negativeControlAnotherOrderIsDetected() {
        let x = PortableKernelTests.values(100_352, seed: 3)
        let differs = x.withUnsafeBufferPointer { FixedOrderReductions.sum($0) }.bitPattern != Self.lanesInARow(x).bitPattern
        #expect(differs)
    }

    /// |computed − exact| ≤ γ(d)·Σ|t| with d = `errorBoundRoundings` (γ(d) = d·u/(1 − d·u), u = 2⁻²⁴), for n up to
    /// 10⁶ of values whose exact sum Float64 gives (an error of at most 10⁶·2⁻⁵³ of the sum, 10⁻⁷ of the bound).
    /// The sum of 0.1f repeated is the hard case for adding in a row: every partial sum rounds the same way.
    static func relativeErrors(_ x: [Float]) -> (tree: Double, inARow: Double, bound: Double) {
        let exact = x.reduce(0.0) { $0 + Double($1) }, absolute = x.reduce(0.0) { $0 + abs(Double($1)) }
        let d = Double(FixedOrderReductions.errorBoundRoundings(count: x.count)), u = 0x1p-24
        let tree = x.withUnsafeBufferPointer { FixedOrderReductions.sum($0) }
        return (abs(Double(tree) - exact) / absolute, abs(Double(Self.lanesInARow(x)) - exact) / absolute, d * u / (1 - d * u))
    }

    @Test(arguments: [100, 1_000, 10_000, 100_000, 1_000_000])
    func errorStaysWithinTheTreeBound(n: Int) {
        var rng = Philox(seed: UInt64(n), .testData)
        let uniform = (0..<n).map { _ in Float(rng.nextUnitDouble()) }
        let signed = (0..<n).map { _ in Float(rng.nextUnitDouble() - 0.5) * 1e3 }
        for x in [uniform, signed, [Float](repeating: 0.1, count: n)] {
            let e = Self.relativeErrors(x)
            #expect(e.tree <= e.bound, "n = \(n): error \(e.tree) of Σ|x| exceeds the bound \(e.bound)")
        }
    }

    /// The old order breaks the same bound at 10⁶ (62,500 additions in a row per lane).
    @Test func addingInARowExceedsTheTreeBound() {
        let e = Self.relativeErrors([Float](repeating: 0.1, count: 1_000_000))
        #expect(e.inARow > e.bound, "in a row: \(e.inARow), bound \(e.bound)")
        #expect(e.inARow > 100 * e.tree)
    }
}
