import ReproKernels
import ReproNN

public let blas = BLASKernels()

/// Seeded test inputs: standard-normal-ish values from the test stream (sum of 4 uniforms, rescaled).
public func randomValues(_ count: Int, seed: UInt64, substream: UInt32 = 0, scale: Double = 1, offset: Double = 0) -> [Double] {
    var rng = Philox(seed: seed, .testData, substream: substream)
    return (0..<count).map { _ in
        let s = (0..<4).reduce(0.0) { acc, _ in acc + rng.nextUnitDouble() } - 2
        return offset + scale * s * 1.7320508075688772  // var of a sum of 4 U(0,1) is 1/3
    }
}

/// Σ w ⊙ y: a loss with a random upstream gradient (a plain sum would make BN's input gradient vanish).
public func weightedSum(_ y: [Double], _ w: [Double]) -> Double {
    var s = 0.0
    for i in y.indices { s += y[i] * w[i] }
    return s
}

public func spreadIndices(count: Int, picks: Int, seed: UInt64) -> [Int] {
    if picks >= count { return Array(0..<count) }
    var rng = Philox(seed: seed, .testData, substream: 99)
    return (0..<picks).map { _ in rng.nextBelow(count) }
}

/// A BatchNorm input of 3 channels × 4 images (values in [−2, 2)) and the gradient flowing back into a 2×2
/// max-pool after it (values in [−0.5, 0.5)): the BN-then-pool tests' shapes.
public func pooledBatchNormCase(height h: Int, width w: Int, seed: UInt64) -> (x: FeatureMap<Float>, upstream: FeatureMap<Float>) {
    let channels = 3, batch = 4
    var rng = Philox(seed: seed, .testData)
    let x = FeatureMap(channels: channels, batch: batch, height: h, width: w,
                       data: (0..<(channels * batch * h * w)).map { _ in Float(rng.nextUnitDouble() * 4 - 2) })
    let upstream = FeatureMap(channels: channels, batch: batch, height: h / 2, width: w / 2,
                              data: (0..<(channels * batch * (h / 2) * (w / 2))).map { _ in Float(rng.nextUnitDouble() - 0.5) })
    return (x, upstream)
}
