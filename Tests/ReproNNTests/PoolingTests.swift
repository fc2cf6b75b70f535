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
        let (h, w) = size, channels = 3, batch = 5
        let x = Self.input(channels: channels, batch: batch, height: h, width: w, seed: UInt64(h * 100 + w))
        let expected = Self.reference(x, planes: channels * batch, height: h, width: w)
        for threads in [1, 2] {
            let pool = MaxPool2x2<Float>(threads: threads)
            let y = pool.forward(FeatureMap(channels: channels, batch: batch, height: h, width: w, data: x))
            #expect(y.data.map(\.bitPattern) == expected.y.map(\.bitPattern), "\(h)×\(w), \(threads) threads")
            let upstream = (0..<y.data.count).map { Float($0 + 1) }
            let dx = pool.backward(FeatureMap(channels: channels, batch: batch, height: h / 2, width: w / 2, data: upstream))
            #expect(dx.data == expected.dx, "\(h)×\(w), \(threads) threads: gradient to the first maximum")
        }
    }

    /// Negative control: with "last maximum on ties" the gradients land elsewhere on this data.
    @Test func negativeControlLastMaximumIsDetected() {
        let x = Self.input(channels: 3, batch: 5, height: 28, width: 28, seed: 2828)
        let first = Self.reference(x, planes: 15, height: 28, width: 28)
        let last = Self.reference(x, planes: 15, height: 28, width: 28, firstOnTies: false)
        #expect(first.dx != last.dx)
    }
}
