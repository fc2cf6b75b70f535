import Testing
import ReproKernels
import ReproNN

/// Max-pool's 8-lane Float path against a scalar statement of PyTorch's CPU rule, on data full of ties,
/// NaNs (two payloads), signed zeros and infinities.
@Suite struct PoolingTests {
    /// PyTorch's rule: scan (0,0), (0,1), (1,0), (1,1); replace when larger or NaN. Returns (max, index).
    static func window(_ v: [Float], firstOnTies: Bool = true) -> (Float, Int) {
        var best = v[0], at = 0
        for i in 1..<4 where (firstOnTies ? v[i] > best : v[i] >= best) || v[i].isNaN { best = v[i]; at = i }
        return (best, at)
    }

    static func input(channels: Int, batch: Int, height: Int, width: Int, seed: UInt64) -> [Float] {
        var rng = Philox(seed: seed, .testData)
        let quietNaN = Float(nan: 1, signaling: false), otherNaN = Float(nan: 7, signaling: false)
        let palette: [Float] = [0, -0.0, 1, 1, 1, -1, 2, .infinity, -.infinity, quietNaN, otherNaN, 0.5]
        return (0..<(channels * batch * height * width)).map { _ in
            rng.nextBelow(3) == 0 ? palette[rng.nextBelow(palette.count)] : Float(rng.nextBelow(4))
        }
    }

    static func reference(_ x: [Float], planes: Int, height h: Int, width w: Int, firstOnTies: Bool = true)
        -> (y: [Float], dx: [Float]) {
        let oh = h / 2, ow = w / 2
        var y = [Float](), dx = [Float](repeating: 0, count: x.count)
        for p in 0..<planes { for r in 0..<oh { for q in 0..<ow {
            let base = p * h * w + 2 * r * w + 2 * q
            let (best, at) = window([x[base], x[base + 1], x[base + w], x[base + w + 1]], firstOnTies: firstOnTies)
            dx[base + (at / 2) * w + at % 2] = Float(y.count + 1)  // upstream gradient: the output's index + 1
            y.append(best)
        } } }
        return (y, dx)
    }

    @Test(arguments: [(28, 28), (10, 10), (6, 18), (4, 16), (2, 2), (5, 7)])
    func floatPathFollowsPyTorchsRule(size: (Int, Int)) {
        // 51 planes: 2 and 3 threads split them into parts (16 planes at least each), so a part's last row and
        // the rows whose extra lanes spill into the part's next plane are both checked.
        let (h, w) = size, channels = 3, batch = 17
        let x = Self.input(channels: channels, batch: batch, height: h, width: w, seed: UInt64(h * 100 + w))
        let expected = Self.reference(x, planes: channels * batch, height: h, width: w)
        for threads in [1, 2, 3] {
            let pool = MaxPool2x2<Float>(threads: threads)
            let y = pool.forward(FeatureMap(channels: channels, batch: batch, height: h, width: w, data: x))
            #expect(y.data.map(\.bitPattern) == expected.y.map(\.bitPattern), "\(h)×\(w), \(threads) threads")
            let upstream = (0..<y.data.count).map { Float($0 + 1) }
            // Rows of 16 and more: spread in registers; others: zero-filled and scattered. Bits: +0 elsewhere.
            let dx = pool.backward(FeatureMap(channels: channels, batch: batch, height: h / 2, width: w / 2, data: upstream))
            #expect(dx.data.map(\.bitPattern) == expected.dx.map(\.bitPattern), "\(h)×\(w), \(threads) threads: gradient to the first maximum")
        }
    }

    /// y = max(x̂·γ + β, 0) per channel, stored (the reference the unstored output must reproduce).
    static func activated(_ x: [Float], channels: Int, perChannel m: Int, gamma: [Float], beta: [Float], affine: Bool) -> [Float] {
        x.indices.map { i in
            let c = i / m, v = affine ? x[i] * gamma[c] + beta[c] : x[i]
            return 0 >= v ? 0 : v  // Swift.max(v, 0): NaN stays NaN, −0 becomes +0
        }
    }

    /// A BatchNorm layer's unstored output (`NormalizedOutput`), pooled: the y formed while loading x̂ gives the
    /// bits and window choices of pooling the stored y, for every path of the pool (8-lane rows, the short rows
    /// of pool2, the scalar windows, Double) and thread count. γ includes a negative and a zero value, so
    /// the ReLU clears whole windows (ties at 0 that the first maximum must win).
    @Test(arguments: [(28, 28), (10, 10), (6, 18), (5, 7), (2, 2)], [true, false])
    func unstoredBatchNormOutputPoolsLikeTheStoredOne(size: (Int, Int), affine: Bool) {
        let (h, w) = size, channels = 3, batch = 17, m = batch * h * w
        let x = Self.input(channels: channels, batch: batch, height: h, width: w, seed: UInt64(h * 1000 + w)).map { $0 - 1.5 }
        let gamma: [Float] = [1.25, -0.75, 0], beta: [Float] = [0.5, 0.25, -0.125]
        let y = Self.activated(x, channels: channels, perChannel: m, gamma: gamma, beta: beta, affine: affine)
        let expected = Self.reference(y, planes: channels * batch, height: h, width: w)
        let upstream = (0..<(channels * batch * (h / 2) * (w / 2))).map { Float($0 + 1) }
        for threads in [1, 2, 3] {
            let pool = MaxPool2x2<Float>(threads: threads)
            let pending = NormalizedOutput(normalized: FeatureMap(channels: channels, batch: batch, height: h, width: w, data: x),
                                           gamma: gamma, beta: beta, affine: affine)
            let pooled = pool.forward(pending)
            #expect(pooled.data.map(\.bitPattern) == expected.y.map(\.bitPattern), "\(h)×\(w), \(threads) threads")
            let dx = pool.backward(FeatureMap(channels: channels, batch: batch, height: h / 2, width: w / 2, data: upstream))
            #expect(dx.data == expected.dx, "\(h)×\(w), \(threads) threads: gradient to the first maximum")
        }
        // The generic path (Double), against the same reference.
        let pool = MaxPool2x2<Double>(threads: 2)
        let pooled = pool.forward(NormalizedOutput(normalized: FeatureMap(channels: channels, batch: batch, height: h, width: w,
                                                                           data: x.map(Double.init)),
                                                   gamma: gamma.map(Double.init), beta: beta.map(Double.init), affine: affine))
        let yd = x.indices.map { i in
            let c = i / m, v = affine ? Double(x[i]) * Double(gamma[c]) + Double(beta[c]) : Double(x[i])
            return 0 >= v ? 0 : v
        }
        let referenceDouble = Self.referenceDouble(yd, planes: channels * batch, height: h, width: w)
        #expect(pooled.data.map(\.bitPattern) == referenceDouble.map(\.bitPattern), "Double, \(h)×\(w)")
    }

    static func referenceDouble(_ x: [Double], planes: Int, height h: Int, width w: Int) -> [Double] {
        var y = [Double]()
        for p in 0..<planes { for r in 0..<(h / 2) { for q in 0..<(w / 2) {
            let base = p * h * w + 2 * r * w + 2 * q
            var best = x[base]
            for v in [x[base + 1], x[base + w], x[base + w + 1]] where v > best || v.isNaN { best = v }
            y.append(best)
        } } }
        return y
    }

    /// Negative control: each plane must take its own channel's γ and β; with the channels' parameters
    /// rotated by one the pooled values differ.
    @Test func negativeControlAnotherChannelsParametersAreDetected() {
        let (h, w, channels, batch) = (28, 28, 3, 5)
        let x = Self.input(channels: channels, batch: batch, height: h, width: w, seed: 2829).map { $0 - 1.5 }
        let gamma: [Float] = [1.25, -0.75, 0], beta: [Float] = [0.5, 0.25, -0.125]
        let y = Self.activated(x, channels: channels, perChannel: batch * h * w, gamma: gamma, beta: beta, affine: true)
        let expected = Self.reference(y, planes: channels * batch, height: h, width: w)
        let rotated = NormalizedOutput(normalized: FeatureMap(channels: channels, batch: batch, height: h, width: w, data: x),
                                       gamma: [gamma[1], gamma[2], gamma[0]], beta: [beta[1], beta[2], beta[0]], affine: true)
        #expect(MaxPool2x2<Float>(threads: 1).forward(rotated).data.map(\.bitPattern) != expected.y.map(\.bitPattern))
    }

    /// Negative control: with "last maximum on ties" the gradients land elsewhere on this data.
    @Test func negativeControlLastMaximumIsDetected() {
        let x = Self.input(channels: 3, batch: 5, height: 28, width: 28, seed: 2828)
        let first = Self.reference(x, planes: 15, height: 28, width: 28)
        let last = Self.reference(x, planes: 15, height: 28, width: 28, firstOnTies: false)
        #expect(first.dx != last.dx)
    }
}
