import Foundation
import Testing
import ReproKernels
import ReproNN

/// The portable kernels against plain scalar code written here with the documented order of operations.
@Suite struct PortableKernelTests {
    /// Axpy form (op(B) = B): acc = fma(a, b, acc) for p = 0..<k. Dot form (op(B) = Bᵀ): 16 fused lanes over
    /// p mod 16, pairwise tree, then the tail in order, fused.
    static func reference(_ tA: Transpose, _ tB: Transpose, m: Int, n: Int, k: Int, alpha: Float, a: [Float], lda: Int,
                          b: [Float], ldb: Int, beta: Float, c: [Float], ldc: Int) -> [Float] {
        var c = c
        func av(_ i: Int, _ p: Int) -> Float { tA == .none ? a[i * lda + p] : a[p * lda + i] }
        for i in 0..<m { for j in 0..<n {
            var acc: Float = 0
            if tB == .none {
                for p in 0..<k { acc = acc.addingProduct(av(i, p), b[p * ldb + j]) }
            } else {
                var lanes = [Float](repeating: 0, count: 16)
                let blocks = k / 16
                for q in 0..<blocks { for l in 0..<16 { lanes[l] = lanes[l].addingProduct(av(i, q * 16 + l), b[j * ldb + q * 16 + l]) } }
                var width = 16
                while width > 1 {  // (lane l) + (lane l + width/2): low half plus high half, as SIMD lowHalf + highHalf
                    width /= 2
                    for l in 0..<width { lanes[l] = lanes[l] + lanes[l + width] }
                }
                acc = lanes[0]
                for p in (blocks * 16)..<k { acc = acc.addingProduct(av(i, p), b[j * ldb + p]) }
            }
            let r = alpha == 1 ? acc : alpha * acc
            let o = i * ldc + j
            c[o] = beta == 0 ? r : beta == 1 ? c[o] + r : beta * c[o] + r
        } }
        return c
    }

    static func values(_ count: Int, seed: UInt64) -> [Float] {
        var rng = Philox(seed: seed, .testData)
        // Mixed magnitudes make the summation order visible in the last bits.
        return (0..<count).map { _ in Float((rng.nextUnitDouble() - 0.5) * pow(10, Double(rng.nextBelow(7)) - 3)) }
    }

    static func runBoth(_ tA: Transpose, _ tB: Transpose, m: Int, n: Int, k: Int, alpha: Float, beta: Float, threads: Int,
                        seed: UInt64) -> (portable: [Float], reference: [Float]) {
        let lda = tA == .none ? k + 1 : m + 2, ldb = tB == .none ? n + 3 : k  // padded leading dimensions
        let a = values((tA == .none ? m : k) * lda, seed: seed)
        let b = values((tB == .none ? k : n) * ldb, seed: seed + 1)
        let ldc = n + 1
        let c0 = values(m * ldc, seed: seed + 2)
        var c = c0
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            PortableKernels(threads: threads).gemm(tA, tB, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!, lda: lda,
                                                   b: bp.baseAddress!, ldb: ldb, beta: beta, c: cp.baseAddress!, ldc: ldc)
        } } }
        return (c, reference(tA, tB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c0, ldc: ldc))
    }

    @Test(arguments: [(1, 1, 1), (3, 5, 7), (6, 100, 75), (16, 33, 150), (5, 17, 16), (7, 300, 31), (120, 9, 400), (10, 128, 84), (2, 65, 33)])
    func gemmMatchesScalarReferenceBitForBit(shape: (Int, Int, Int)) {
        let (m, n, k) = shape
        for tA in [Transpose.none, .transposed] { for tB in [Transpose.none, .transposed] {
            for (alpha, beta) in [(Float(1), Float(0)), (1, 1), (0.5, -2)] { for threads in [1, 2, 3] {
                let r = Self.runBoth(tA, tB, m: m, n: n, k: k, alpha: alpha, beta: beta, threads: threads, seed: UInt64(m * 1000 + n + k))
                #expect(r.portable.map(\.bitPattern) == r.reference.map(\.bitPattern),
                        "m \(m) n \(n) k \(k) \(tA) \(tB) alpha \(alpha) beta \(beta) threads \(threads)")
            } }
        } }
    }

    @Test func negativeControlAnotherOrderIsDetected() {
        // Summing the same products in reverse order, or in the same order without fusing, must change some
        // bits on these inputs; otherwise the bit-for-bit test above could not tell the orders apart.
        let (m, n, k) = (6, 40, 75)
        let a = Self.values(m * k, seed: 5), b = Self.values(k * n, seed: 6)
        var c = [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            PortableKernels().gemm(.none, .none, m: m, n: n, k: k, alpha: 1, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: n,
                                   beta: 0, c: cp.baseAddress!, ldc: n)
        } } }
        var reversed = [Float](repeating: 0, count: m * n), unfused = reversed, fused = reversed
        for i in 0..<m { for j in 0..<n {
            for p in (0..<k).reversed() { reversed[i * n + j] = reversed[i * n + j].addingProduct(a[i * k + p], b[p * n + j]) }
            for p in 0..<k {
                let product = a[i * k + p] * b[p * n + j]  // rounded on its own: not fused
                unfused[i * n + j] = unfused[i * n + j] + product
                fused[i * n + j] = fused[i * n + j].addingProduct(a[i * k + p], b[p * n + j])
            }
        } }
        #expect(c.map(\.bitPattern) == fused.map(\.bitPattern))
        #expect(c.map(\.bitPattern) != reversed.map(\.bitPattern))
        #expect(c.map(\.bitPattern) != unfused.map(\.bitPattern))
    }

    static func ulps(_ a: Double, _ b: Double) -> Int64 {
        if a == b { return 0 }
        func ordered(_ x: Double) -> Int64 { let bits = Int64(bitPattern: x.bitPattern); return bits < 0 ? Int64.min - bits : bits }
        return abs(ordered(a) - ordered(b))
    }

    /// Dense sweeps against glibc's libm (itself within 1 ULP of correct rounding for exp and log).
    @Test func expAndLogAccuracy() {
        var worstLogAt = 0.0
        var worstExp: Int64 = 0, worstLog: Int64 = 0, worstExpF: Int64 = 0, worstLogF: Int64 = 0
        var x = -708.0
        while x < 709 {
            worstExp = max(worstExp, Self.ulps(PortableMath.exp(x), Foundation.exp(x)))
            let xf = Float(x / 8)
            worstExpF = max(worstExpF, Self.ulps(Double(PortableMath.exp(xf)), Double(Float(Foundation.exp(Double(xf)))) ))
            x += 0.000731
        }
        var y = 1e-300
        while y < 1e300 {
            let u = Self.ulps(PortableMath.log(y), Foundation.log(y))
            if u > worstLog { worstLog = u; worstLogAt = y }
            y *= 1.0000371
        }
        var z: Float = 1e-30
        while z < 1e30 {
            worstLogF = max(worstLogF, Self.ulps(Double(PortableMath.log(z)), Double(Float(Foundation.log(Double(z))))))
            z *= 1.0001
        }
        // Float ULPs compared as Double bit patterns of Float values: 1 Float ULP = 2^29 Double ULPs.
        #expect(worstExp <= 1, "exp: \(worstExp) ULP")
        #expect(worstLog <= 1, "log: \(worstLog) ULP at \(worstLogAt): \(PortableMath.log(worstLogAt)) vs \(Foundation.log(worstLogAt))")
        #expect(worstExpF <= 1 << 29, "Float exp: \(worstExpF >> 29) ULP")
        #expect(worstLogF <= 1 << 29, "Float log: \(worstLogF >> 29) ULP")
        #expect(PortableMath.exp(0.0) == 1 && PortableMath.log(1.0) == 0 && PortableMath.exp(-Double.infinity) == 0)
        #expect(PortableMath.log(0.0) == -.infinity && PortableMath.log(-1.0).isNaN && PortableMath.exp(Double.nan).isNaN)
        #expect(PortableMath.exp(710.0) == .infinity && PortableMath.log(Double.leastNonzeroMagnitude) < -744)
    }

    @Test func portableTrainingIsIndependentOfThreadCount() throws {
        func run(threads: Int) throws -> [UInt32] {
            let net = LeNet5<Float>(normalized: true, kernels: PortableKernels(threads: threads))
            net.initialize(seed: 9)
            let sgd = SGD(parameters: net.parameters, options: SGDOptions())
            var out = [UInt32]()
            for step in 0..<5 {
                var rng = Philox(seed: 77, .testData, substream: UInt32(step))
                let x = (0..<(16 * 3 * 1024)).map { _ in Float(rng.nextUnitDouble() * 2 - 1) }
                let t = (0..<16).map { ($0 * 3 + step) % 10 }
                out.append(try net.trainStep(FeatureMap(channels: 3, batch: 16, height: 32, width: 32, data: x),
                                             targets: t, optimizer: sgd).loss.bitPattern)
            }
            return out + net.stateDict.flatMap { $0.value.map(\.bitPattern) }
        }
        let one = try run(threads: 1), two = try run(threads: 2), three = try run(threads: 3)
        #expect(one == two, "1 vs 2 threads")
        #expect(one == three, "1 vs 3 threads")
    }
}
