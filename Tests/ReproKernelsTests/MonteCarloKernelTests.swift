import Foundation
import ReproKernels
import ReproNN
import ReproTestSupport
import Testing

/// `MonteCarloKernels`: each result moves by at most its model's size u·√n·Σ|terms| (Σ|terms| from a Float64
/// reference), the moves are as wide as that size allows, a replica is deterministic and independent of the
/// thread count, and the model covers what it claims: the difference a reordered sum makes.
@Suite struct MonteCarloKernelTests {
    static let u = Double(Float.ulpOfOne) / 2

    static func replica(_ r: UInt32, threads: Int = 1, scale: Double = 1) -> MonteCarloKernels {
        MonteCarloKernels(base: PortableKernels(threads: threads), seed: 11, replica: r, scale: scale)
    }

    static func floats(_ count: Int, seed: UInt64, offset: Double = 0) -> [Float] {
        randomValues(count, seed: seed, offset: offset).map(Float.init)
    }

    /// C = A·Bᵀ (the transposed-B product the layers use) and A·B: every output within u·√(k)·Σ|a·b| of the
    /// exact Float64 product's plain float32 result, and replicas 1 and 2 differ.
    @Test(arguments: [Transpose.none, .transposed])
    func gemmMovesWithinItsModel(_ transB: Transpose) {
        let m = 7, n = 33, k = 150
        let a = Self.floats(m * k, seed: 1), b = Self.floats(k * n, seed: 2, offset: 0.3)
        let ldb = transB == .none ? n : k
        func product(_ kernels: any Kernels) -> [Float] {
            var c = [Float](repeating: .nan, count: m * n)  // beta = 0: C's old contents must not be read
            kernels.gemm(.none, transB, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: ldb, beta: 0, c: &c, ldc: n)
            return c
        }
        let plain = product(PortableKernels()), one = product(Self.replica(1)), two = product(Self.replica(2))
        var widest = 0.0
        for i in 0..<m {
            for j in 0..<n {
                let terms = (0..<k).map { p in Double(a[i * k + p]) * Double(transB == .none ? b[p * n + j] : b[j * k + p]) }
                let bound = Self.u * Double(k).squareRoot() * terms.reduce(0) { $0 + abs($1) }
                let move = abs(Double(one[i * n + j]) - Double(plain[i * n + j]))
                // The perturbed value is rounded once more to float32.
                #expect(move <= bound * (1 + 1e-6) + Double(plain[i * n + j].ulp), "C[\(i), \(j)] moved \(move), bound \(bound)")
                widest = max(widest, move / bound)
            }
        }
        #expect(widest > 0.5, "the moves use the model's width: widest \(widest)")
        #expect(one != two && one.allSatisfy(\.isFinite))
        #expect(product(Self.replica(1)) == one, "a replica is deterministic")
        #expect(product(Self.replica(1, scale: 0)) == plain, "scale 0 perturbs nothing")
    }

    /// A layer's own short sum (the loss's best + log(total) − z[target]): plain kernels return it unchanged;
    /// a replica moves it within u·√n·Σ|t|, as wide as that allows over many values (a tiny loss of large
    /// terms moves by about u·|terms|, not by its own ULP); scale 0 moves nothing.
    @Test func elementwiseSumsMoveWithinTheirModel() {
        let cases: [(r: Float, magnitude: Float)] = (0..<400).map { (i: Int) -> (r: Float, magnitude: Float) in
            (Float(i + 1) * 1e-7, 20 + Float(i % 7))
        }
        var widest = 0.0
        for (i, c) in cases.enumerated() {
            #expect(PortableKernels().elementwiseSum(c.r, terms: 3, magnitude: c.magnitude, index: i) == c.r)
            let moved = Self.replica(1).elementwiseSum(c.r, terms: 3, magnitude: c.magnitude, index: i)
            let bound = Self.u * 3.0.squareRoot() * Double(c.magnitude)
            let move: Double = abs(Double(moved) - Double(c.r))
            let allowed: Double = bound * (1 + 1e-6) + Double(c.r.ulp)
            #expect(move <= allowed)
            widest = max(widest, move / bound)
            #expect(Self.replica(1, scale: 0).elementwiseSum(c.r, terms: 3, magnitude: c.magnitude, index: i) == c.r)
        }
        #expect(widest > 0.9, "the moves use the model's width: widest \(widest)")
    }

    @Test func convolutionsAreDeterministicAndThreadIndependent() {
        let shape = ConvolutionShape(inChannels: 3, batch: 4, height: 12, width: 12, kernelSize: 5, outChannels: 6)
        let x = Self.floats(3 * 4 * 144, seed: 3), w = Self.floats(6 * 75, seed: 4), bias = Self.floats(6, seed: 5)
        let dy = Self.floats(6 * 4 * 64, seed: 6)
        func run(_ kernels: any Kernels) -> [Float] {
            var columns = [Float](), y = [Float](repeating: 0, count: 6 * 4 * 64), dw = [Float](repeating: 0, count: 6 * 75)
            var dx = [Float](repeating: 0, count: x.count)
            kernels.convolutionForward(shape, input: x, weight: w, bias: bias, output: &y, columns: &columns)
            kernels.convolutionWeightGradient(shape, input: x, outputGradient: dy, weightGradient: &dw, columns: &columns)
            kernels.convolutionInputGradient(shape, weight: w, outputGradient: dy, inputGradient: &dx)
            return y + dw + dx
        }
        let plain = run(PortableKernels()), one = run(Self.replica(1)), two = run(Self.replica(1, threads: 2))
        #expect(one == two, "the thread count changes a replica")
        #expect(one != plain)
        #expect(run(Self.replica(1, scale: 0)) == plain)
        // Every value moved by little against its tensor's scale: u·√n·Σ|t| with n ≤ 256 terms here, and
        // Σ|t| within a few times the tensor's largest value.
        let sizes = [6 * 4 * 64, 6 * 75, x.count]
        var start = 0
        for size in sizes {
            let range = start..<(start + size)
            let scale = plain[range].map { abs(Double($0)) }.max()!
            let worst = range.map { abs(Double(one[$0]) - Double(plain[$0])) }.max()! / scale
            #expect(worst < 1e-4 && worst > 0, "tensor \(range): worst move \(worst) of its scale")
            start += size
        }
    }

    /// The model's claim: a sum taken in another order — reversed, or pairwise — differs from the fixed
    /// order by no more than u·√n·Σ|x|, and 8 replicas spread at least a quarter of that. With scale 0
    /// (the negative control) the replicas do not move and cover none of the reorderings that moved.
    @Test func replicasCoverReorderedSums() {
        var covered = 0, moved = 0, uncoveredAtZero = 0
        for (case_, n) in [10, 100, 1_000, 10_000, 100_000].enumerated() {
            for offset in [0.0, 3.0] {  // centred terms cancel; offset ones do not
                let x = Self.floats(n, seed: UInt64(100 + case_), offset: offset)
                let fixed = x.withUnsafeBufferPointer { PortableKernels().sum($0) }
                let reversed = Array(x.reversed()).reduce(Float(0), +)
                func pairwise(_ s: ArraySlice<Float>) -> Float { s.count <= 2 ? s.reduce(0, +) : pairwise(s.prefix(s.count / 2)) + pairwise(s.suffix(s.count - s.count / 2)) }
                let bound = Self.u * Double(n).squareRoot() * x.reduce(0.0) { $0 + abs(Double($1)) }
                let spread = (1...8).map { r in x.withUnsafeBufferPointer { abs(Double(Self.replica(UInt32(r)).sum($0)) - Double(fixed)) } }.max()!
                let spreadAtZero = (1...8).map { r in x.withUnsafeBufferPointer { abs(Double(Self.replica(UInt32(r), scale: 0).sum($0)) - Double(fixed)) } }.max()!
                for other in [reversed, pairwise(x[...])] {
                    let difference = abs(Double(other) - Double(fixed))
                    #expect(difference <= bound, "n \(n): a reordered sum moved \(difference), bound \(bound)")
                    guard difference > 0 else { continue }
                    moved += 1
                    if difference <= 4 * spread { covered += 1 }
                    if difference > 4 * spreadAtZero { uncoveredAtZero += 1 }
                }
                #expect(spread >= bound / 4, "n \(n): 8 replicas spread \(spread), the model allows \(bound)")
            }
        }
        #expect(moved >= 10, "too few reorderings moved the sum to test anything: \(moved)")
        #expect(covered == moved, "\(moved - covered) of \(moved) reordered sums fall outside 4× the replicas' spread")
        #expect(uncoveredAtZero == moved, "with scale 0 the replicas must cover nothing")
    }
}
