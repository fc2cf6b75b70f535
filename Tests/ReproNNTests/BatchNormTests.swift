import Testing
import Foundation
import ReproKernels
import ReproNN
import ReproTestSupport

/// The layer against a direct Float64 evaluation of the notebook's formula, written here independently.
@Suite struct BatchNormFormulaTests {
    /// x̂ = (x − mean)/std per channel with unbiased std and optional eps; NCHW-free: input is [C][m].
    static func formula(_ x: [Double], channels: Int, gamma: [Double]?, beta: [Double]?, mean: [Double]? = nil, std: [Double]? = nil,
                        epsilon: Double = 0, unbiased: Bool = true) -> [Double] {
        let m = x.count / channels
        var y = x
        for c in 0..<channels {
            let seg = x[(c * m)..<((c + 1) * m)]
            let mu = mean?[c] ?? seg.reduce(0, +) / Double(m)
            let sd = std?[c] ?? (seg.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(unbiased ? m - 1 : m) + epsilon).squareRoot()
            for i in (c * m)..<((c + 1) * m) { y[i] = (x[i] - mu) / sd * (gamma?[c] ?? 1) + (beta?[c] ?? 0) }
        }
        return y
    }

    static func maxRelativeError(_ a: [Double], _ b: [Double]) -> Double {
        zip(a, b).map { abs($0 - $1) / max(abs($1), 1) }.max()!
    }

    @Test func trainingAndEvalMatchTheFormula() throws {
        let bn = BatchNorm<Double>("bn", channels: 3, kernels: blas)
        bn.gamma!.value = [0.5, 2, -1]
        bn.beta!.value = [0.1, -0.2, 0.3]
        let x = randomValues(3 * 5 * 4, seed: 41, scale: 3, offset: 1)
        let y = try bn.forward(FeatureMap(channels: 3, batch: 5, height: 2, width: 2, data: x), training: true).data
        let expected = Self.formula(x, channels: 3, gamma: [0.5, 2, -1], beta: [0.1, -0.2, 0.3])
        #expect(Self.maxRelativeError(y, expected) < 1e-14)
        // Eval mode normalizes with the running buffers.
        bn.runningMean!.value = [0.3, -0.1, 2]
        bn.runningStd!.value = [1.5, 0.7, 3]
        let e = try bn.forward(FeatureMap(channels: 3, batch: 5, height: 2, width: 2, data: x), training: false).data
        let expectedEval = Self.formula(x, channels: 3, gamma: [0.5, 2, -1], beta: [0.1, -0.2, 0.3], mean: [0.3, -0.1, 2], std: [1.5, 0.7, 3])
        #expect(Self.maxRelativeError(e, expectedEval) < 1e-14)
    }

    @Test func optionsAffineOffTrackingOffEpsilonBiased() throws {
        let x = randomValues(4 * 6, seed: 42, scale: 2)
        let plain = BatchNorm<Double>("bn", channels: 4, options: BatchNormOptions(affine: false, trackRunningStats: false), kernels: blas)
        #expect(plain.stateTensors.isEmpty)
        let expected = Self.formula(x, channels: 4, gamma: nil, beta: nil)
        // Without running stats, eval mode uses batch statistics too.
        for training in [true, false] {
            let y = try plain.forward(FeatureMap(channels: 4, batch: 6, data: x), training: training).data
            #expect(Self.maxRelativeError(y, expected) < 1e-14)
        }
        let textbook = BatchNorm<Double>("bn", channels: 4, options: BatchNormOptions(epsilon: 1e-5, unbiased: false), kernels: blas)
        let y = try textbook.forward(FeatureMap(channels: 4, batch: 6, data: x), training: true).data
        #expect(Self.maxRelativeError(y, Self.formula(x, channels: 4, gamma: nil, beta: nil, epsilon: 1e-5, unbiased: false)) < 1e-14)
        // Negative control: the notebook's variant is measurably not the textbook one.
        #expect(Self.maxRelativeError(y, expected) > 1e-3)
    }

    @Test func float32LayerMatchesFloat64Formula() throws {
        let x = randomValues(6 * 128 * 4, seed: 43, scale: 2, offset: 0.3)
        let bn = BatchNorm<Float>("bn", channels: 6, kernels: blas)
        let y = try bn.forward(FeatureMap(channels: 6, batch: 128, height: 2, width: 2, data: x.map { Float($0) }), training: true).data
        let expected = Self.formula(x.map { Double(Float($0)) }, channels: 6, gamma: nil, beta: nil)
        // x̂ is O(1); a handful of float32 roundings (mean, variance, sqrt, subtract, divide) each ≤ 2^-24
        // relative, plus accumulation error of the 512-term sums ≈ 512/16 lanes · 2^-24: well under 1e-5.
        #expect(Self.maxRelativeError(y.map(Double.init), expected) < 1e-5)
    }

    @Test func runningBuffersFollowTheMomentumRecurrence() throws {
        let bn = BatchNorm<Double>("bn", channels: 2, options: BatchNormOptions(momentum: 0.9), kernels: blas)
        var mean = [0.0, 0.0], std = [1.0, 1.0]
        for step in 0..<5 {
            let x = randomValues(2 * 7, seed: 50 + UInt64(step), scale: Double(step + 1), offset: Double(step))
            _ = try bn.forward(FeatureMap(channels: 2, batch: 7, data: x), training: true)
            for c in 0..<2 {
                let seg = Array(x[(c * 7)..<(c * 7 + 7)])
                let mu = seg.reduce(0, +) / 7
                let sd = (seg.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / 6).squareRoot()
                mean[c] = 0.9 * mean[c] + (1 - 0.9) * mu
                std[c] = 0.9 * std[c] + (1 - 0.9) * sd
            }
            #expect(zip(bn.runningMean!.value, mean).allSatisfy { abs($0 - $1) < 1e-13 })
            #expect(zip(bn.runningStd!.value, std).allSatisfy { abs($0 - $1) < 1e-13 })
        }
        // Eval does not move the buffers.
        let before = bn.runningMean!.value
        _ = try bn.forward(FeatureMap(channels: 2, batch: 7, data: randomValues(14, seed: 60)), training: false)
        #expect(bn.runningMean!.value == before)
        // Negative control: the PyTorch convention (weight on the new value) gives different buffers.
        let torchStyle = BatchNorm<Double>("bn", channels: 2, options: BatchNormOptions(momentum: 0.1), kernels: blas)
        for step in 0..<5 {
            let x = randomValues(2 * 7, seed: 50 + UInt64(step), scale: Double(step + 1), offset: Double(step))
            _ = try torchStyle.forward(FeatureMap(channels: 2, batch: 7, data: x), training: true)
        }
        #expect(!zip(torchStyle.runningMean!.value, mean).allSatisfy { abs($0 - $1) < 1e-13 })
    }
}

/// The Float layer's 16-lane loops against the same formulas written as plain scalar Float code, bit for bit,
/// with the fused ReLU on and off, on a channel length that leaves a tail (m = 3·7·5 = 105) and on inputs
/// with exact zeros after normalization's ReLU, so both sides of every select are taken.
@Suite struct BatchNormFloatPathTests {
    static func scalarReference(_ x: [Float], channels: Int, m: Int, gamma: [Float], beta: [Float], relu: Bool,
                                upstream: [Float], reciprocal: Bool = false) -> (y: [Float], dx: [Float]) {
        var y = [Float](repeating: 0, count: x.count), xhat = y, dx = y
        for c in 0..<channels {
            let seg = Array(x[(c * m)..<((c + 1) * m)])
            let mu = seg.withUnsafeBufferPointer { FixedOrderReductions.sum($0) } / Float(m)
            let s = (seg.withUnsafeBufferPointer { FixedOrderReductions.sumOfSquaredDeviations($0, from: mu) } / Float(m - 1)).squareRoot()
            for i in (c * m)..<((c + 1) * m) {
                let h = (x[i] - mu) / s
                xhat[i] = h
                y[i] = relu ? Swift.max(h * gamma[c] + beta[c], 0) : h * gamma[c] + beta[c]
            }
            var g = Array(upstream[(c * m)..<((c + 1) * m)])
            if relu { for i in 0..<m where y[c * m + i] <= 0 { g[i] = 0 } }
            let n = Array(xhat[(c * m)..<((c + 1) * m)])
            let sumDy = g.withUnsafeBufferPointer { FixedOrderReductions.sum($0) }
            let sumDyXhat = g.withUnsafeBufferPointer { gp in n.withUnsafeBufferPointer { FixedOrderReductions.dot(gp, $0) } }
            let meanDxhat = gamma[c] * sumDy / Float(m), projection = gamma[c] * sumDyXhat / Float(m - 1)
            for i in 0..<m {
                let numerator = gamma[c] * g[i] - meanDxhat - n[i] * projection
                dx[c * m + i] = reciprocal ? numerator * (1 / s) : numerator / s
            }
        }
        return (y, dx)
    }

    @Test(arguments: [false, true])
    func floatLoopsMatchScalarCodeBitForBit(relu: Bool) throws {
        let channels = 4, batch = 3, h = 7, w = 5, m = batch * h * w
        var rng = Philox(seed: 21, .testData)
        let x = (0..<(channels * m)).map { _ in Float(rng.nextUnitDouble() * 4 - 2) }
        let upstream = (0..<(channels * m)).map { _ in Float(rng.nextUnitDouble() - 0.5) }
        let bn = BatchNorm<Float>("bn", channels: channels, kernels: PortableKernels(threads: 2))
        bn.gamma!.value = [1.5, -0.5, 2, 0.25]
        bn.beta!.value = [0.1, -0.2, 0.3, 0]
        let y = try bn.forward(FeatureMap(channels: channels, batch: batch, height: h, width: w, data: x),
                               training: true, fusedReLU: relu)
        let dx = bn.backward(FeatureMap(channels: channels, batch: batch, height: h, width: w, data: upstream))
        let expected = Self.scalarReference(x, channels: channels, m: m, gamma: bn.gamma!.value, beta: bn.beta!.value,
                                            relu: relu, upstream: upstream)
        #expect(y.data.map(\.bitPattern) == expected.y.map(\.bitPattern))
        #expect(dx.data.map(\.bitPattern) == expected.dx.map(\.bitPattern))
        if relu { #expect(y.data.contains(0) && y.data.contains { $0 > 0 }) }
        // Negative control: the same reference multiplying by 1/s instead of dividing by s differs in some bits.
        let reciprocal = Self.scalarReference(x, channels: channels, m: m, gamma: bn.gamma!.value, beta: bn.beta!.value,
                                              relu: relu, upstream: upstream, reciprocal: true)
        #expect(reciprocal.dx.map(\.bitPattern) != dx.data.map(\.bitPattern))
    }

    /// The backward from a max-pool's unspread gradient (`PooledGradient`, spread as the ReLU's gradient reads
    /// it) gives the bits of the backward from the stored gradient, for rows of 16 and more (two blocks that
    /// overlap, or one), narrower rows in planes of 16 and more (a plane at a time: 10 × 10 is blocks at 0, 16, …,
    /// 80 and 84; 6 × 6 at 0, 16 and 20) and the stored fallback below that (2 × 6), at 1, 2 and 3 threads; the
    /// upstream gradient has values in every window position and the ReLU clears some, so every select is
    /// taken both ways.
    @Test(arguments: [(28, 28), (6, 18), (4, 16), (10, 10), (6, 6), (2, 6)])
    func backwardFromAPooledGradientMatchesTheStoredOne(size: (Int, Int)) throws {
        let (h, w) = size, channels = 3
        let (x, upstream) = pooledBatchNormCase(height: h, width: w, seed: UInt64(23 + h * w))
        for threads in [1, 2, 3] {
            func layer() -> BatchNorm<Float> {
                let bn = BatchNorm<Float>("bn", channels: channels, kernels: PortableKernels(threads: threads))
                bn.gamma!.value = [1.5, -0.5, 0.25]
                bn.beta!.value = [0.1, -0.2, 0.3]
                return bn
            }
            let stored = layer(), spread = layer()
            let pool = MaxPool2x2<Float>(threads: threads)
            _ = pool.forward(try stored.forwardLeavingOutputNormalized(x, training: true))
            _ = try spread.forwardLeavingOutputNormalized(x, training: true)
            let dx = stored.backward(pool.backward(upstream))
            let pooled = pool.backwardLeftPooled(upstream)
            #expect(pooled.spreadsInPlace == (w >= 16 || h * w >= 16))
            #expect(pooled.dense().data.map(\.bitPattern) == pool.backward(upstream).data.map(\.bitPattern))
            let dxSpread = spread.backward(pooled)
            #expect(dxSpread.data.map(\.bitPattern) == dx.data.map(\.bitPattern), "\(h)×\(w), \(threads) threads")
            #expect(spread.gamma!.grad.map(\.bitPattern) == stored.gamma!.grad.map(\.bitPattern)
                    && spread.beta!.grad.map(\.bitPattern) == stored.beta!.grad.map(\.bitPattern), "\(h)×\(w), \(threads) threads")
        }
    }

    /// Negative control: the window choices must be read as they were made; the same gradient with every
    /// choice moved to the next position of its window gives other gradients.
    @Test func negativeControlMovedWindowChoicesAreDetected() throws {
        let (h, w, channels) = (28, 28, 3)
        let (x, upstream) = pooledBatchNormCase(height: h, width: w, seed: 24)
        let bn = BatchNorm<Float>("bn", channels: channels, kernels: PortableKernels(threads: 1))
        let pool = MaxPool2x2<Float>(threads: 1)
        _ = pool.forward(try bn.forwardLeavingOutputNormalized(x, training: true))
        let right = pool.backwardLeftPooled(upstream)
        let moved = PooledGradient(gradient: upstream, argmax: right.argmax.map { ($0 + 1) % 4 }, height: h, width: w)
        #expect(bn.backward(moved).data.map(\.bitPattern) != bn.backward(right).data.map(\.bitPattern))
    }

    /// The forward that leaves its output unstored (for the max-pool after it) keeps the same x̂ and state:
    /// its output formed from x̂ is the stored one bit for bit, in training and in eval, and the backward
    /// after it gives the same gradients.
    @Test func forwardLeavingOutputNormalizedMatchesTheStoredForward() throws {
        let channels = 4, batch = 3, h = 7, w = 5, m = batch * h * w
        var rng = Philox(seed: 22, .testData)
        let x = FeatureMap(channels: channels, batch: batch, height: h, width: w,
                           data: (0..<(channels * m)).map { _ in Float(rng.nextUnitDouble() * 4 - 2) })
        let upstream = FeatureMap(channels: channels, batch: batch, height: h, width: w,
                                  data: (0..<(channels * m)).map { _ in Float(rng.nextUnitDouble() - 0.5) })
        func layer() -> BatchNorm<Float> {
            let bn = BatchNorm<Float>("bn", channels: channels, kernels: PortableKernels(threads: 2))
            bn.gamma!.value = [1.5, -0.5, 2, 0.25]
            bn.beta!.value = [0.1, -0.2, 0.3, 0]
            return bn
        }
        let stored = layer(), unstored = layer()
        for training in [true, false] {
            let y = try stored.forward(x, training: training, fusedReLU: true)
            let pending = try unstored.forwardLeavingOutputNormalized(x, training: training)
            #expect(pending.materialized().data.map(\.bitPattern) == y.data.map(\.bitPattern), "training \(training)")
            #expect(stored.runningMean!.value == unstored.runningMean!.value && stored.runningStd!.value == unstored.runningStd!.value)
            let dx = stored.backward(upstream), dxUnstored = unstored.backward(upstream)
            #expect(dx.data.map(\.bitPattern) == dxUnstored.data.map(\.bitPattern), "training \(training)")
            #expect(stored.gamma!.grad == unstored.gamma!.grad && stored.beta!.grad == unstored.beta!.grad)
        }
    }
}
