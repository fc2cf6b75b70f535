import ReproKernels
import ReproNN
import ReproTestSupport
import Testing

/// The per-step probes: their definition (order-free), the probes layers form in their own loops, and the
/// trace a training step emits (order derived from the model, values of the tensors they name).
@Suite struct ProbeTests {
    /// The definition, written out one value at a time: the bit patterns summed as UInt32 modulo 2^32 (a
    /// Float64 value's two halves), and the largest magnitude (a NaN larger than any number).
    static func defined<T: BinaryFloatingPoint>(_ x: [T]) -> Probe {
        var checksum: UInt32 = 0, largest = 0.0
        for v in x {
            if let f = v as? Float {
                checksum &+= f.bitPattern
            } else {
                let bits = Double(v).bitPattern
                checksum &+= UInt32(truncatingIfNeeded: bits) &+ UInt32(truncatingIfNeeded: bits >> 32)
            }
            let m = Double(v).magnitude
            if m.isNaN || largest.isNaN { largest = .nan } else if m > largest { largest = m }
        }
        return Probe(checksum: checksum, largest: largest)
    }

    static func same(_ a: Probe, _ b: Probe) -> Bool { a.checksum == b.checksum && a.largest.bitPattern == b.largest.bitPattern }

    static let sizes = [0, 1, 7, 8, 9, 15, 16, 17, 63, 100, 1_001, 4_096, 65_536, 65_537, 100_355, 602_115]

    @Test(arguments: sizes)
    func probeFollowsItsDefinition(n: Int) {
        let values = randomValues(n, seed: 41, scale: 3, offset: 0.5)
        let floats = values.map { Float($0) }
        let f = floats.withUnsafeBufferPointer { Probe($0) }, d = values.withUnsafeBufferPointer { Probe($0) }
        #expect(Self.same(f, Self.defined(floats)), "n = \(n)")
        #expect(Self.same(d, Self.defined(values)), "n = \(n)")
        // Chunks shared between threads, and any order of the values: the same probe.
        for threads in [2, 3] {
            #expect(Self.same(floats.withUnsafeBufferPointer { Probe($0, threads: threads) }, f), "n = \(n), \(threads) threads")
        }
        #expect(Self.same(floats.reversed().withUnsafeBufferPointer { Probe($0) }, f), "n = \(n), reversed")
        // The update probe: the new values' checksum minus the old ones', the largest |new − old| in Float64.
        let old = floats.map { $0 * 0.999 }
        let u = floats.withUnsafeBufferPointer { nb in old.withUnsafeBufferPointer { Probe(differencesOf: nb, from: $0) } }
        let differences = Self.defined(zip(floats, old).map { Double($0) - Double($1) })
        #expect(u.checksum == Self.defined(floats).checksum &- Self.defined(old).checksum && u.largest == differences.largest, "n = \(n)")
    }

    /// The norm against an independent reference: √Σx² accumulated in Float80 in index order (and a
    /// hand-computed case), for sizes around the eight lanes and the tail; the update's norm of differences
    /// likewise. Bound: each of the 8 lanes sums n/8 squares in Float64, relative error ≤ (n/8 + 3)·2⁻⁵³.
    @Test(arguments: [0, 1, 2, 7, 8, 9, 15, 17, 450, 2_400, 48_000, 48_007])
    func normFollowsItsDefinition(n: Int) {
        let floats = randomValues(n, seed: 47, scale: 3, offset: 0.5).map { Float($0) }
        let old = floats.map { $0 * 0.999 + 1e-3 }
        func reference(_ terms: [Double]) -> Double { Double(terms.reduce(Float80(0)) { $0 + Float80($1) * Float80($1) }.squareRoot()) }
        let bound = (Double(n) / 8 + 3) * 0x1p-53
        let norm = floats.withUnsafeBufferPointer { Probe.norm(of: $0) }
        let expected = reference(floats.map(Double.init))
        #expect(abs(norm - expected) <= bound * expected, "n = \(n): \(norm) vs \(expected)")
        let differences = floats.withUnsafeBufferPointer { nv in old.withUnsafeBufferPointer { Probe.norm(differencesOf: nv, from: $0) } }
        let expectedDifferences = reference(zip(floats, old).map { Double($0) - Double($1) })
        #expect(abs(differences - expectedDifferences) <= bound * expectedDifferences, "n = \(n)")
        // Negative control: the reference tells a norm that drops the tail (the last n mod 8 values) apart.
        if n % 8 != 0 {
            let truncated = floats.prefix(n - n % 8).withUnsafeBufferPointer { Probe.norm(of: $0) }
            #expect(abs(truncated - expected) > bound * expected, "n = \(n)")
        }
    }

    @Test func normOfAHandComputedCase() {
        let x: [Float] = [3, 4, 0, 0, 0, 0, 0, 0, 12]  // √(9 + 16 + 144) = 13, the 12 in the tail
        #expect(x.withUnsafeBufferPointer { Probe.norm(of: $0) } == 13)
        let new: [Float] = [1.5, -2], old: [Float] = [1.5, 0]
        #expect(new.withUnsafeBufferPointer { nv in old.withUnsafeBufferPointer { Probe.norm(differencesOf: nv, from: $0) } } == 2)
        #expect([Float]().withUnsafeBufferPointer { Probe.norm(of: $0) } == 0)
        #expect([Float(1), .nan].withUnsafeBufferPointer { Probe.norm(of: $0) }.isNaN)
    }

    /// Special values: −0 differs from +0 (a bit), a NaN makes the largest magnitude NaN, infinities count.
    @Test func probeOfSpecialValues() {
        func probe(_ x: [Float]) -> Probe { x.withUnsafeBufferPointer { Probe($0) } }
        #expect(probe([0, 0]).checksum == 0 && probe([-0.0, 0]).checksum == 0x8000_0000)
        #expect(probe([-3, 2]).largest == 3 && probe([.infinity, 1]).largest == .infinity)
        #expect(probe(Array(repeating: 1, count: 40) + [.nan]).largest.isNaN)
        #expect(Self.same(probe([-0.0, 0]), Self.defined([Float(-0.0), 0])))
        // The lane-wise max at the ends of its range, in every lane: the smallest subnormal, the largest finite
        // magnitude, an infinity and a NaN among zeros.
        let extremes = (0..<67).map { i -> Float in
            [0, .leastNonzeroMagnitude, -.greatestFiniteMagnitude, .greatestFiniteMagnitude.nextDown][i % 4] }
        #expect(Self.same(probe(extremes), Self.defined(extremes)) && probe(extremes).largest == Double(Float.greatestFiniteMagnitude))
        #expect(probe(extremes + [-.infinity]).largest == .infinity && probe([.nan] + extremes).largest.isNaN)
    }

    /// What the probes are for: one value moved by one ULP anywhere in an activation-sized tensor changes the
    /// checksum (by ±1: never a multiple of 2^32), and so does a sign flip of a zero.
    @Test func oneULPAnywhereChangesTheProbe() {
        var floats = randomValues(602_112, seed: 44).map { Float($0) }
        floats[5] = 0
        let before = floats.withUnsafeBufferPointer { Probe($0) }
        for i in [0, 1, 5, 7, 301_056, 602_111] {
            let kept = floats[i]
            for changed in [kept.nextUp, kept.nextDown, -kept] where changed.bitPattern != kept.bitPattern {
                floats[i] = changed
                let after = floats.withUnsafeBufferPointer { Probe($0) }
                #expect(after.checksum != before.checksum, "index \(i)")
            }
            floats[i] = kept
        }
    }

    /// The probes a layer forms in its own loops are the probes of the tensors it reads and writes: a
    /// BatchNorm layer's input and output (stored or left normalized), the gradient flowing in (stored, or a
    /// max-pool's spread as the layer reads it, rows of 16 and more with blocks that overlap) and ∂L/∂x, at 1,
    /// 2 and 3 threads; the optimizer's update probes against `Probe(differencesOf:from:)`.
    @Test(arguments: [(28, 28), (6, 18), (4, 16), (10, 10), (6, 6), (5, 7)])
    func layersFormTheProbesOfWhatTheyReadAndWrite(size: (Int, Int)) throws {
        let (h, w) = size, channels = 3, batch = 4
        let (x, upstream) = pooledBatchNormCase(height: h, width: w, seed: UInt64(31 + h * w))
        func probe(_ v: [Float]) -> Probe { v.withUnsafeBufferPointer { Probe($0) } }
        for threads in [1, 2, 3] {
            let bn = BatchNorm<Float>("bn", channels: channels, kernels: PortableKernels(threads: threads))
            bn.gamma!.value = [1.5, -0.5, 0.25]
            bn.beta!.value = [0.1, -0.2, 0.3]
            let context = "\(h)×\(w), \(threads) threads"
            // Stored output.
            let y = try bn.forward(x, training: true, fusedReLU: true, probing: true)
            #expect(bn.forwardProbes.map { Self.same($0.input, probe(x.data)) && Self.same($0.output, probe(y.data)) } == true, "\(context)")
            let dy = FeatureMap(channels: channels, batch: batch, height: h, width: w,
                                data: randomValues(channels * batch * h * w, seed: UInt64(32 + h * w), scale: 0.3).map { Float($0) })
            let dx = bn.backward(dy, probing: true)
            #expect(bn.backwardProbes.map { Self.same($0.incoming, probe(dy.data)) && Self.same($0.inputGradient, probe(dx.data)) } == true, "\(context)")
            // Output left normalized, the gradient flowing in a max-pool's.
            if h % 2 == 0 && w % 2 == 0 {
                let pool = MaxPool2x2<Float>(threads: threads)
                let pending = try bn.forwardLeavingOutputNormalized(x, training: true, probing: true)
                #expect(bn.forwardProbes.map { Self.same($0.input, probe(x.data)) && Self.same($0.output, probe(pending.materialized().data)) } == true, "\(context)")
                _ = pool.forward(pending)
                let dense = pool.backward(upstream)
                let dxSpread = bn.backward(pool.backwardLeftPooled(upstream), probing: true)
                #expect(bn.backwardProbes.map { Self.same($0.incoming, probe(dense.data)) && Self.same($0.inputGradient, probe(dxSpread.data)) } == true,
                        "\(context)")
                // Without probing the layer leaves none (so a stale one is never taken for this step's).
                _ = bn.backward(pool.backwardLeftPooled(upstream))
                #expect(bn.backwardProbes == nil)
            }
        }
    }

    /// The same for a Float64 layer (its probes formed after each channel, one value at a time), with a
    /// negative control: the output's probe is not the input's.
    @Test func float64LayersFormTheProbesOfWhatTheyReadAndWrite() throws {
        let (channels, batch, h, w) = (3, 4, 6, 5)
        let x = FeatureMap(channels: channels, batch: batch, height: h, width: w, data: randomValues(channels * batch * h * w, seed: 48, scale: 2))
        let dy = FeatureMap(channels: channels, batch: batch, height: h, width: w, data: randomValues(channels * batch * h * w, seed: 49))
        func probe(_ v: [Double]) -> Probe { v.withUnsafeBufferPointer { Probe($0) } }
        for threads in [1, 2] {
            let bn = BatchNorm<Double>("bn", channels: channels, kernels: PortableKernels(threads: threads))
            bn.gamma!.value = [1.5, -0.5, 0.25]
            let y = try bn.forward(x, training: true, fusedReLU: true, probing: true)
            #expect(bn.forwardProbes.map { Self.same($0.input, probe(x.data)) && Self.same($0.output, probe(y.data)) } == true)
            #expect(bn.forwardProbes.map { Self.same($0.output, probe(x.data)) } == false)
            let dx = bn.backward(dy, probing: true)
            #expect(bn.backwardProbes.map { Self.same($0.incoming, probe(dy.data)) && Self.same($0.inputGradient, probe(dx.data)) } == true)
        }
    }

    /// The optimizer's update probes (formed as it updates, eight lanes at a time, a large parameter in parts
    /// on 2 and 3 threads) are those of the definition, and every way of stepping gives the plain loop's bits:
    /// odd sizes, the first step (no momentum yet) and later ones.
    @Test(arguments: [1, 2, 3])
    func optimizerFormsTheUpdateProbes(threads: Int) {
        func parameters() -> [NamedTensor<Float>] {
            [1, 7, 8, 13, 450, 40_001].enumerated().map { i, n in
                let p = NamedTensor<Float>(name: "p\(i)", shape: [n], isParameter: true, value: randomValues(n, seed: 60 + UInt64(i)).map { Float($0) })
                p.grad = randomValues(n, seed: 70 + UInt64(i), scale: 0.1).map { Float($0) }
                return p
            }
        }
        let probed = parameters(), split = parameters(), plain = parameters()
        let options = SGDOptions(learningRate: 0.05, momentum: 0.9, weightDecay: 1e-3)
        let a = SGD(parameters: probed, options: options), b = SGD(parameters: split, options: options), c = SGD(parameters: plain, options: options)
        for step in 0..<3 {
            let old = probed.map(\.value)
            let probes = a.probedStep(threads: threads)
            b.step(threads: threads)
            c.step()
            for (i, p) in probed.enumerated() {
                let expected = p.value.withUnsafeBufferPointer { nv in old[i].withUnsafeBufferPointer { Probe(differencesOf: nv, from: $0) } }
                #expect(Self.same(probes[i], expected), "step \(step), \(p.name), \(threads) threads")
                for (other, optimizer) in [(split, b), (plain, c)] {
                    #expect(p.value.map(\.bitPattern) == other[i].value.map(\.bitPattern), "step \(step), \(p.name), \(threads) threads")
                    #expect(a.momentumBuffers[i].map(\.bitPattern) == optimizer.momentumBuffers[i].map(\.bitPattern), "step \(step), \(p.name)")
                }
            }
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

    /// A step without a trace and a traced step (the layers forming their probes, the optimizer updating eight
    /// lanes at a time) train to the same bits.
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
        var gradient = model.conv2.weight.grad.withUnsafeBufferPointer { Probe($0) }
        gradient.norm = model.conv2.weight.grad.withUnsafeBufferPointer { Probe.norm(of: $0) }
        #expect(probe(TracePoint(.backward, "conv2", .parameterGradient("conv2.weight"))) == gradient)
        var update = model.fc4.weight.value.withUnsafeBufferPointer { nv in old.withUnsafeBufferPointer { Probe(differencesOf: nv, from: $0) } }
        update.norm = model.fc4.weight.value.withUnsafeBufferPointer { nv in old.withUnsafeBufferPointer { Probe.norm(differencesOf: nv, from: $0) } }
        #expect(probe(TracePoint(.update, "fc4", .update("fc4.weight"))) == update)
        // Norms where the layout says (parameters' gradients and updates), nowhere else.
        let probed = trace.points.filter(\.isProbed)
        #expect(zip(probed, trace.probes).allSatisfy { ($1.norm != nil) == $0.hasNorm })
        #expect(model.layout.normPoints.count == 2 * model.parameters.count)
        #expect(probe(TracePoint(.data, "input", .images)) == x.data.withUnsafeBufferPointer { Probe($0) })
        // Negative control: another tensor's probe is not taken for this one.
        #expect(probe(TracePoint(.backward, "conv2", .parameterGradient("conv2.weight"))) != model.conv1.weight.grad.withUnsafeBufferPointer { Probe($0) })
    }
}
