import ReproKernels
import ReproNN
import Testing

/// The per-step probes: their documented summation order, their accuracy, and the trace a training step
/// emits (order derived from the model, values of the tensors they name).
@Suite struct ProbeTests {
    /// The documented order as its definition: chunks of 65,536; in each, element i into lane i mod 16 (each
    /// lane in a row, in Float64), the lanes by halving; the chunks' results in order.
    static func documented<T: BinaryFloatingPoint>(_ x: [T]) -> (sum: Double, squares: Double) {
        func halving(_ l: [Double]) -> Double {  // the tree written out
            let a = (0..<8).map { l[$0] + l[$0 + 8] }, b = (0..<4).map { a[$0] + a[$0 + 4] }, c = (0..<2).map { b[$0] + b[$0 + 2] }
            return c[0] + c[1]
        }
        var total = (sum: 0.0, squares: 0.0)
        for lower in stride(from: 0, to: x.count, by: 65_536) {
            var s = [Double](repeating: 0, count: 16), q = [Double](repeating: 0, count: 16)
            for i in lower..<min(lower + 65_536, x.count) { let d = Double(x[i]); s[(i - lower) % 16] += d; q[(i - lower) % 16] += d * d }
            total.sum += halving(s)
            total.squares += halving(q)
        }
        return total
    }

    static let sizes = [0, 1, 7, 8, 9, 15, 63, 100, 1_001, 4_096, 65_536, 65_537, 100_355, 602_115]

    @Test(arguments: sizes)
    func probeFollowsTheDocumentedOrderBitForBit(n: Int) {
        let values = randomValues(n, seed: 41, scale: 3, offset: 0.5)
        let floats = values.map { Float($0) }
        let rf = Self.documented(floats), rd = Self.documented(values)
        let f = floats.withUnsafeBufferPointer { Probe($0) }, d = values.withUnsafeBufferPointer { Probe($0) }
        #expect(f.sum.bitPattern == rf.sum.bitPattern && f.sumOfSquares.bitPattern == rf.squares.bitPattern, "n = \(n)")
        // Chunks shared between threads: the same bits for every count.
        for threads in [2, 3] {
            let t = floats.withUnsafeBufferPointer { Probe($0, threads: threads) }
            #expect(t.sum.bitPattern == rf.sum.bitPattern && t.sumOfSquares.bitPattern == rf.squares.bitPattern, "n = \(n), \(threads) threads")
        }
        #expect(d.sum.bitPattern == rd.sum.bitPattern && d.sumOfSquares.bitPattern == rd.squares.bitPattern, "n = \(n)")
        // The update probes' own loop (new − old, formed in Float64) gives the bits of the probe of the differences.
        let old = floats.map { $0 * 0.999 }
        let u = floats.withUnsafeBufferPointer { nb in old.withUnsafeBufferPointer { Probe(differencesOf: nb, from: $0) } }
        let ru = Self.documented(zip(floats, old).map { Double($0) - Double($1) })
        #expect(u.sum.bitPattern == ru.sum.bitPattern && u.sumOfSquares.bitPattern == ru.squares.bitPattern, "n = \(n)")
    }

    /// A BatchNorm layer's unstored output (`NormalizedOutput`) is probed as if stored: the bits of the probe of
    /// the stored y, for channels that end inside a chunk and chunks that span several channels, at 1, 2 and 3
    /// threads; channel lengths that are not a multiple of 16 and Double take the one-at-a-time path.
    @Test(arguments: [(3, 40_000), (6, 100_352), (2, 16), (5, 12_345), (1, 65_552)])
    func unstoredBatchNormOutputIsProbedAsIfStored(shape: (channels: Int, perChannel: Int)) {
        let (channels, m) = shape
        let x = randomValues(channels * m, seed: 47, scale: 2).map { Float($0) }
        let gamma: [Float] = (0..<channels).map { [1.25, -0.75, 0, 2, 0.5, -1][$0 % 6] }
        let beta: [Float] = (0..<channels).map { [0.5, 0.25, -0.125, 0, 1, -2][$0 % 6] }
        for affine in [true, false] {
            let y = PoolingTests.activated(x, channels: channels, perChannel: m, gamma: gamma, beta: beta, affine: affine)
            let expected = Self.documented(y)
            let pending = NormalizedOutput(normalized: FeatureMap(channels: channels, batch: m, data: x), gamma: gamma, beta: beta, affine: affine)
            for threads in [1, 2, 3] {
                let p = Probe(pending, threads: threads)
                #expect(p.sum.bitPattern == expected.sum.bitPattern && p.sumOfSquares.bitPattern == expected.squares.bitPattern,
                        "\(channels) × \(m), affine \(affine), \(threads) threads")
            }
            let pendingDouble = NormalizedOutput(normalized: FeatureMap(channels: channels, batch: m, data: x.map(Double.init)),
                                                 gamma: gamma.map(Double.init), beta: beta.map(Double.init), affine: affine)
            let yd = x.indices.map { i in
                let c = i / m, v = affine ? Double(x[i]) * Double(gamma[c]) + Double(beta[c]) : Double(x[i])
                return 0 >= v ? 0 : v
            }
            let d = Probe(pendingDouble), expectedDouble = Self.documented(yd)
            #expect(d.sum.bitPattern == expectedDouble.sum.bitPattern && d.sumOfSquares.bitPattern == expectedDouble.squares.bitPattern)
        }
        // Negative control: the channels' parameters rotated by one give another probe.
        let y = PoolingTests.activated(x, channels: channels, perChannel: m, gamma: gamma, beta: beta, affine: true)
        let rotated = NormalizedOutput(normalized: FeatureMap(channels: channels, batch: m, data: x),
                                       gamma: Array(gamma.dropFirst() + gamma.prefix(1)), beta: Array(beta.dropFirst() + beta.prefix(1)), affine: true)
        if channels > 1 { #expect(Probe(rotated) != y.withUnsafeBufferPointer { Probe($0) }) }
    }

    /// Negative control: the bit-for-bit check tells orders apart (a plain running sum gives other bits).
    /// Float64 inputs: sums of float32 values in Float64 are often exact in any order (24-bit significands
    /// leave 29 bits of headroom), which is part of why the probes are robust, and no test of order.
    @Test func negativeControlARunningSumIsDetected() {
        let values = randomValues(100_355, seed: 42, scale: 3, offset: 0.5)
        let running = values.reduce(0.0, +)
        #expect(values.withUnsafeBufferPointer { Probe($0) }.sum.bitPattern != running.bitPattern)
    }

    /// Against a compensated Float64 reference: within a bound of (⌈n/16⌉ + 4)·2⁻⁵³·Σ|x| (sixteen lanes of
    /// ⌈n/16⌉ terms, four halving levels; the chunks' running sum adds fewer roundings than it saves).
    @Test(arguments: [1_000, 100_000, 1_000_000])
    func probeIsWithinItsErrorBound(n: Int) {
        let floats = randomValues(n, seed: 43, scale: 1e3, offset: 10).map { Float($0) }
        let probe = floats.withUnsafeBufferPointer { Probe($0) }
        func compensated(_ terms: [Double]) -> Double {  // Neumaier
            var s = 0.0, c = 0.0
            for t in terms {
                let u = s + t
                c += abs(s) >= abs(t) ? (s - u) + t : (t - u) + s
                s = u
            }
            return s + c
        }
        let x = floats.map(Double.init)
        let bound = Double((n + 15) / 16 + 4) * 0x1p-53
        #expect(abs(probe.sum - compensated(x)) <= bound * x.reduce(0) { $0 + abs($1) })
        #expect(abs(probe.sumOfSquares - compensated(x.map { $0 * $0 })) <= 2 * bound * x.reduce(0) { $0 + $1 * $1 })
    }

    /// What the probes are for: one value moved by one ULP anywhere in an activation-sized tensor changes Σx.
    @Test func oneULPAnywhereChangesTheProbe() {
        var floats = randomValues(602_112, seed: 44).map { Float($0) }
        let before = floats.withUnsafeBufferPointer { Probe($0) }
        for i in [0, 1, 7, 301_056, 602_111] {
            let kept = floats[i]
            floats[i] = kept.nextUp
            let after = floats.withUnsafeBufferPointer { Probe($0) }
            #expect(after.sum != before.sum, "index \(i)")
            floats[i] = kept
        }
    }

    /// The layout's trace, derived by running a step: data, forward layer by layer (BN statistics just before
    /// the BN layer's output), loss, backward in the reverse layer order, then every parameter's update in
    /// the optimizer's order.
    @Test(arguments: [true, false])
    func traceOrderIsTheModelsExecutionOrder(normalized: Bool) {
        let model = LeNet5<Float>(normalized: normalized, kernels: PortableKernels(threads: 1))
        let trace = model.layout.trace
        let passes = trace.map(\.pass)
        let rank: [TracePoint.Pass: Int] = [.data: 0, .forward: 1, .loss: 2, .backward: 3, .update: 4]
        #expect(zip(passes, passes.dropFirst()).allSatisfy { rank[$0]! <= rank[$1]! })
        #expect(trace.prefix(2).map(\.quantity) == [.labels, .images])
        let forward = trace.filter { $0.pass == .forward && $0.quantity == .output }.map(\.layer)
        let expectedForward = normalized
            ? ["conv1", "bn1", "pool1", "conv2", "bn2", "pool2", "fc3", "bn3", "fc4", "bn4", "fc5"]
            : ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc3", "relu3", "fc4", "relu4", "fc5"]
        #expect(forward == expectedForward)
        #expect(trace.filter { $0.pass == .backward && $0.quantity == .outputGradient }.map(\.layer) == expectedForward.reversed())
        #expect(trace.filter { $0.pass == .update }.map(\.quantity) == model.parameters.map { .update($0.name) })
        for bn in model.batchNorms {
            let output = trace.firstIndex(of: TracePoint(.forward, bn.name, .output))!
            #expect(trace[(output - 4)..<output].map(\.quantity) == bn.statisticNames.map { .statistic($0) })
        }
        #expect(model.layout.probePoints.count == (normalized ? 60 : 44))
    }

    /// A step without a trace (the pool's gradient spread as bn1 reads it, BN outputs never stored) and a traced
    /// step (the gradient flowing into bn1 stored, for its probe) train to the same bits.
    @Test func tracedAndUntracedStepsGiveTheSameBits() throws {
        func run(traced: Bool) throws -> [[Float]] {
            let model = LeNet5<Float>(normalized: true, kernels: PortableKernels(threads: 2))
            model.initialize(seed: 5)
            let optimizer = SGD(parameters: model.parameters, options: SGDOptions())
            if traced { model.trace = StepTrace(threads: 2) }
            for step in 0..<3 {
                let x = FeatureMap(channels: 3, batch: 8, height: 32, width: 32,
                                   data: randomValues(3 * 8 * 1024, seed: 50 + UInt64(step)).map { Float($0) })
                model.trace?.reset()
                _ = try model.trainStep(x, targets: (0..<8).map { ($0 + step) % 10 }, optimizer: optimizer)
            }
            return model.stateDict.map(\.value)
        }
        let untraced = try run(traced: false), traced = try run(traced: true)
        #expect(untraced.map { $0.map(\.bitPattern) } == traced.map { $0.map(\.bitPattern) })
    }

    /// A traced step's probes are the probes of the tensors they name (checked for a parameter gradient and
    /// an update, recomputed here from the model after the step), and its points are the layout's.
    @Test func tracedStepProbesWhatItNames() throws {
        let model = LeNet5<Float>(normalized: true, kernels: PortableKernels(threads: 1))
        model.initialize(seed: 3)
        let n = 8
        let x = FeatureMap(channels: 3, batch: n, height: 32, width: 32,
                           data: randomValues(3 * n * 1024, seed: 45).map { Float($0) })
        let optimizer = SGD(parameters: model.parameters, options: SGDOptions())
        let trace = StepTrace()
        model.trace = trace
        let old = model.fc4.weight.value
        _ = try model.trainStep(x, targets: (0..<n).map { $0 % 10 }, optimizer: optimizer)
        #expect(trace.points.filter(\.isProbed) == model.layout.probePoints)
        func probe(_ point: TracePoint) -> Probe { trace.probes[trace.points.filter(\.isProbed).firstIndex(of: point)!] }
        #expect(probe(TracePoint(.backward, "conv2", .parameterGradient("conv2.weight"))) == model.conv2.weight.grad.withUnsafeBufferPointer { Probe($0) })
        let delta = zip(model.fc4.weight.value, old).map { Double($0) - Double($1) }
        #expect(probe(TracePoint(.update, "fc4", .update("fc4.weight"))) == delta.withUnsafeBufferPointer { Probe($0) })
        #expect(probe(TracePoint(.data, "input", .images)) == x.data.withUnsafeBufferPointer { Probe($0) })
        // Negative control: another tensor's probe is not taken for this one.
        #expect(probe(TracePoint(.backward, "conv2", .parameterGradient("conv2.weight"))) != model.conv1.weight.grad.withUnsafeBufferPointer { Probe($0) })
    }
}
