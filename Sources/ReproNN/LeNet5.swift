import ReproKernels

/// The notebook's LeNet-5 on 3×32×32 inputs, optionally with its BatchNorm after every hidden layer:
///   conv1 3→6 5×5 → [bn1] → ReLU → pool → conv2 6→16 5×5 → [bn2] → ReLU → pool → flatten 400
///   → fc3 400→120 → [bn3] → ReLU → fc4 120→84 → [bn4] → ReLU → fc5 84→10
public final class LeNet5<T: KernelScalar> {
    public let normalized: Bool
    public let kernels: any Kernels
    public let conv1: Conv2d<T>, conv2: Conv2d<T>
    public let fc3: Linear<T>, fc4: Linear<T>, fc5: Linear<T>
    public let bn1: BatchNorm<T>?, bn2: BatchNorm<T>?, bn3: BatchNorm<T>?, bn4: BatchNorm<T>?
    @usableFromInline let relu1 = ReLU<T>("relu1"), relu2 = ReLU<T>("relu2"), relu3 = ReLU<T>("relu3"), relu4 = ReLU<T>("relu4")
    @usableFromInline let pool1: MaxPool2x2<T>, pool2: MaxPool2x2<T>

    /// Called after each stage of a step with its name, for `repro bench --breakdown`; nil (free) otherwise.
    public var stageDone: ((StaticString) -> Void)?
    /// Where a planted fault may change the model's numbers (the verifier's negative controls); a real run's
    /// hooks change nothing.
    public var hooks: any ModelHooks = NoModelHooks()
    /// Collects the step's probes in execution order (`StepTrace`) when set; nil (free) otherwise.
    public var trace: StepTrace?

    public init(normalized: Bool, batchNorm: BatchNormOptions = .notebook, kernels: any Kernels) {
        self.normalized = normalized
        self.kernels = kernels
        pool1 = MaxPool2x2("pool1", threads: kernels.threads)
        pool2 = MaxPool2x2("pool2", threads: kernels.threads)
        conv1 = Conv2d("conv1", inChannels: 3, outChannels: 6, kernelSize: 5, kernels: kernels)
        conv2 = Conv2d("conv2", inChannels: 6, outChannels: 16, kernelSize: 5, kernels: kernels)
        fc3 = Linear("fc3", inFeatures: 400, outFeatures: 120, kernels: kernels)
        fc4 = Linear("fc4", inFeatures: 120, outFeatures: 84, kernels: kernels)
        fc5 = Linear("fc5", inFeatures: 84, outFeatures: 10, kernels: kernels)
        bn1 = normalized ? BatchNorm("bn1", channels: 6, options: batchNorm, kernels: kernels) : nil
        bn2 = normalized ? BatchNorm("bn2", channels: 16, options: batchNorm, kernels: kernels) : nil
        bn3 = normalized ? BatchNorm("bn3", channels: 120, options: batchNorm, kernels: kernels) : nil
        bn4 = normalized ? BatchNorm("bn4", channels: 84, options: batchNorm, kernels: kernels) : nil
    }

    /// BN layers in forward order.
    public var batchNorms: [BatchNorm<T>] { [bn1, bn2, bn3, bn4].compactMap { $0 } }

    /// PyTorch's state_dict order (module registration order).
    public var stateDict: [NamedTensor<T>] {
        conv1.parameters + (bn1?.stateTensors ?? []) + conv2.parameters + (bn2?.stateTensors ?? [])
            + fc3.parameters + (bn3?.stateTensors ?? []) + fc4.parameters + (bn4?.stateTensors ?? []) + fc5.parameters
    }

    /// net.parameters() order: the state_dict without buffers.
    public var parameters: [NamedTensor<T>] { stateDict.filter(\.isParameter) }

    /// PyTorch's default initialization: Conv2d/Linear weight and bias ~ U(−1/√fan_in, 1/√fan_in)
    /// (kaiming_uniform_ with a = √5 reduces to that bound), drawn from the initialization stream in
    /// state_dict order, weight before bias. Values are drawn in Double and rounded to T, so the Float and
    /// Double models start from the same numbers up to rounding. BN keeps its ones/zeros.
    public func initialize(seed: UInt64) {
        var rng = Philox(seed: seed, .initialization)
        for (w, b) in [(conv1.weight, conv1.bias), (conv2.weight, conv2.bias), (fc3.weight, fc3.bias),
                       (fc4.weight, fc4.bias), (fc5.weight, fc5.bias)] {
            let fanIn = w.shape.dropFirst().reduce(1, *)
            let bound = 1 / Double(fanIn).squareRoot()
            for tensor in [w, b] {
                for i in 0..<tensor.count { tensor.value[i] = T(-bound + 2 * bound * rng.nextUnitDouble()) }
            }
        }
    }

    /// Logits in feature-major layout [10][N]. `x` is channel-major [3][N][32][32].
    @inlinable
    public func forward(_ x: FeatureMap<T>, training: Bool) throws(BatchNormError) -> FeatureMap<T> {
        // Each BN applies the ReLU after it (`fusedReLU`); without BN the ReLU layers run on their own.
        trace?.probe(TracePoint(.data, "input", .images), x.data)
        var a = conv1.forward(x)
        if bn1 == nil { traced(conv1.name, output: a) }  // else probed by bn1 as it reads it
        stageDone?("conv1 forward")
        try activateAndPool(after: conv1.name, bn1, relu1, pool1, &a, training: training, stage: "bn1 + relu1 forward")
        traced(pool1.name, output: a)
        stageDone?("pool1 forward")
        a = conv2.forward(a)
        if bn2 == nil { traced(conv2.name, output: a) }
        stageDone?("conv2 forward")
        try activateAndPool(after: conv2.name, bn2, relu2, pool2, &a, training: training, stage: "bn2 + relu2 forward")
        traced(pool2.name, output: a)
        stageDone?("pool2 forward")
        a = fc3.forward(Self.flatten(a, threads: kernels.threads))
        if let bn3 { a = try forward(bn3, after: fc3.name, a, training: training) } else {
            traced(fc3.name, output: a)
            relu3.forward(&a)
            traced(relu3.name, output: a)
        }
        a = fc4.forward(a)
        if let bn4 { a = try forward(bn4, after: fc4.name, a, training: training) } else {
            traced(fc4.name, output: a)
            relu4.forward(&a)
            traced(relu4.name, output: a)
        }
        a = fc5.forward(a)
        traced(fc5.name, output: a)
        stageDone?("flatten, fc3..fc5 forward (bn3, bn4)")
        return a
    }

    /// A BatchNorm layer with its fused ReLU after `layer`; the trace gets the layer's output, the statistics
    /// the BN layer computed, then its output — the first and the last probed by the BN layer as it reads and
    /// forms them.
    @inlinable
    func forward(_ bn: BatchNorm<T>, after layer: String, _ a: FeatureMap<T>, training: Bool) throws(BatchNormError) -> FeatureMap<T> {
        let y = try bn.forward(a, training: training, fusedReLU: true, probing: trace != nil)
        tracedForward(of: bn, after: layer, training: training)
        return y
    }

    @inlinable
    func tracedForward(of bn: BatchNorm<T>, after layer: String, training: Bool) {
        guard let trace, let probes = bn.forwardProbes else { return }
        trace.record(TracePoint(.forward, layer, .output), probes.input)
        tracedStatistics(bn, training: training)
        trace.record(TracePoint(.forward, bn.name, .output), probes.output)
    }

    /// A convolution's BatchNorm (or, without BN, its ReLU: `stage` for the breakdown) and the max-pool after it.
    /// The BN layer's output is never stored: the pool forms it from x̂ as it loads it (`NormalizedOutput`), and
    /// the BN layer probes it (and its input) as it forms it.
    @inlinable
    func activateAndPool(after layer: String, _ bn: BatchNorm<T>?, _ relu: ReLU<T>, _ pool: MaxPool2x2<T>, _ a: inout FeatureMap<T>,
                         training: Bool, stage: StaticString) throws(BatchNormError) {
        if let bn {
            let y = try bn.forwardLeavingOutputNormalized(a, training: training, probing: trace != nil)
            tracedForward(of: bn, after: layer, training: training)
            stageDone?(stage)
            a = pool.forward(y)
        } else {
            relu.forward(&a)  // in place: `a` is the caller's only reference
            traced(relu.name, output: a)
            stageDone?(stage)
            a = pool.forward(a)
        }
    }

    /// The statistics a training forward of `bn` computed: their places (recorded in full elsewhere).
    @inlinable
    func tracedStatistics(_ bn: BatchNorm<T>, training: Bool) {
        if training, let trace { for name in bn.statisticNames { trace.mark(TracePoint(.forward, bn.name, .statistic(name))) } }
    }

    @inlinable
    func traced(_ layer: String, output a: FeatureMap<T>) { trace?.probe(TracePoint(.forward, layer, .output), a.data) }

    /// Before a layer's backward: the gradient flowing into it.
    /// `known`: its probe, when the layer before formed it.
    @inlinable
    func traced(_ layer: String, gradientIn g: FeatureMap<T>, known: Probe? = nil) {
        guard let trace else { return }
        let point = TracePoint(.backward, layer, .outputGradient)
        if let known { trace.record(point, known) } else { trace.probe(point, g.data) }
    }

    /// After a layer's backward: its parameters' gradients, handed to the hooks and then probed.
    @inlinable
    func traced(_ layer: String, gradientsOf parameters: [NamedTensor<T>]) {
        hooks.gradientsComputed(layer: layer, parameters: parameters)
        guard let trace else { return }
        for p in parameters { trace.probe(TracePoint(.backward, layer, .parameterGradient(p.name)), p.grad) }
    }

    /// Back-propagates ∂L/∂logits, filling every parameter's grad. Returns ∂L/∂input only when asked
    /// (gradient checks); training skips conv1's input gradient.
    @inlinable
    @discardableResult
    public func backward(_ dLogits: FeatureMap<T>, inputGradient: Bool = false) -> FeatureMap<T>? {
        var g = dLogits
        traced(fc5.name, gradientIn: g)
        g = fc5.backward(g)
        traced(fc5.name, gradientsOf: fc5.parameters)
        var known = backward(bn4, relu4, &g)
        traced(fc4.name, gradientIn: g, known: known)
        g = fc4.backward(g)
        traced(fc4.name, gradientsOf: fc4.parameters)
        known = backward(bn3, relu3, &g)
        traced(fc3.name, gradientIn: g, known: known)
        g = Self.unflatten(fc3.backward(g), channels: 16, height: 5, width: 5, threads: kernels.threads)
        traced(fc3.name, gradientsOf: fc3.parameters)
        stageDone?("fc5..fc3 backward (bn4, bn3), unflatten")
        traced(pool2.name, gradientIn: g)
        known = backwardThroughPool(pool2, bn2, relu2, &g, stages: ("pool2 backward", "bn2 + relu2 backward"))
        traced(conv2.name, gradientIn: g, known: known)
        conv2.parameterGradients(g)
        traced(conv2.name, gradientsOf: conv2.parameters)
        stageDone?("conv2 backward: weights, bias")
        g = conv2.inputGradient(g)
        stageDone?("conv2 backward: input gradient")
        traced(pool1.name, gradientIn: g)
        known = backwardThroughPool(pool1, bn1, relu1, &g, stages: ("pool1 backward", "bn1 + relu1 backward"))
        traced(conv1.name, gradientIn: g, known: known)
        let dx = conv1.backward(g, inputGradient: inputGradient)
        traced(conv1.name, gradientsOf: conv1.parameters)
        stageDone?(inputGradient ? "conv1 backward" : "conv1 backward (weights only)")
        return dx
    }

    /// A max-pool's backward, then that of the BatchNorm layer (or ReLU) before it. The pool's gradient is left
    /// unspread: the BN layer spreads it as it reads it (rows of 16 and more: pool1), never stored. Returns,
    /// in a traced step, the probe of ∂L/∂(the BN layer's input), which the BN layer formed (`backward`).
    @inlinable
    func backwardThroughPool(_ pool: MaxPool2x2<T>, _ bn: BatchNorm<T>?, _ relu: ReLU<T>, _ g: inout FeatureMap<T>,
                             stages: (pool: StaticString, activation: StaticString)) -> Probe? {
        let inputGradientProbe: Probe?
        if let bn {
            let pooled = pool.backwardLeftPooled(g)
            stageDone?(stages.pool)
            g = bn.backward(pooled, probing: trace != nil)
            inputGradientProbe = tracedBackward(of: bn)
        } else {
            g = pool.backward(g)
            stageDone?(stages.pool)
            inputGradientProbe = backward(bn, relu, &g)
        }
        stageDone?(stages.activation)
        return inputGradientProbe
    }

    /// The backward of a BatchNorm layer with its fused ReLU, or of the plain ReLU in the model without BN.
    /// Returns, in a traced step, the probe of ∂L/∂input when the layer formed it.
    @inlinable
    func backward(_ bn: BatchNorm<T>?, _ relu: ReLU<T>, _ g: inout FeatureMap<T>) -> Probe? {
        if let bn {
            g = bn.backward(g, probing: trace != nil)
            return tracedBackward(of: bn)
        } else {
            traced(relu.name, gradientIn: g)
            relu.backward(&g)  // in place: `g` is the caller's only reference
            return nil
        }
    }

    /// After a BatchNorm layer's backward: the gradient that flowed in (probed by the layer), its parameters'
    /// gradients; returns the probe of its ∂L/∂input.
    @inlinable
    func tracedBackward(of bn: BatchNorm<T>) -> Probe? {
        guard let trace, let probes = bn.backwardProbes else {
            hooks.gradientsComputed(layer: bn.name, parameters: bn.parameters)
            return nil
        }
        trace.record(TracePoint(.backward, bn.name, .outputGradient), probes.incoming)
        traced(bn.name, gradientsOf: bn.parameters)
        return probes.inputGradient
    }

    /// [C][N][H][W] → [C·H·W][N], feature index c·H·W + h·W + w: PyTorch's x.view(N, −1) on NCHW.
    /// Threads take whole channels (a copy: the same bits for any split); on one thread it was ~1% of a
    /// 2-thread step, serial.
    @inlinable
    public static func flatten(_ a: FeatureMap<T>, threads: Int = 1) -> FeatureMap<T> {
        let n = a.batch, hw = a.spatial
        var out = [T](overwrittenCount: a.data.count)
        a.data.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { dst in
            nonisolated(unsafe) let src = src.baseAddress!, dst = dst.baseAddress!
            // Per channel a [N][H·W] → [H·W][N] transpose, 12.8 KB for pool2's output: in L1 either way.
            Parallel.forEach(a.channels, threads: threads) { channels in
                for c in channels { for s in 0..<hw {
                    let column = src + c * n * hw + s, row = dst + (c * hw + s) * n
                    for j in 0..<n { row[j] = column[j * hw] }
                } }
            }
        } }
        return FeatureMap(channels: a.channels * hw, batch: n, data: out)
    }

    /// The inverse of `flatten`: [C·H·W][N] → [C][N][H][W].
    @inlinable
    public static func unflatten(_ g: FeatureMap<T>, channels: Int, height: Int, width: Int, threads: Int = 1) -> FeatureMap<T> {
        let n = g.batch, hw = height * width
        var out = [T](overwrittenCount: g.data.count)
        g.data.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { dst in
            nonisolated(unsafe) let src = src.baseAddress!, dst = dst.baseAddress!
            Parallel.forEach(channels, threads: threads) { range in
                for c in range { for j in 0..<n {
                    let image = dst + (c * n + j) * hw, column = src + c * hw * n + j
                    for s in 0..<hw { image[s] = column[s * n] }
                } }
            }
        } }
        return FeatureMap(channels: channels, batch: n, height: height, width: width, data: out)
    }
}

/// One optimizer step's outcome.
public struct StepResult<T: KernelScalar>: Sendable {
    public var loss: T
    public var correct: Int

    @inlinable
    public init(loss: T, correct: Int) { self.loss = loss; self.correct = correct }
}

extension LeNet5 {
    /// forward (training mode) → cross-entropy → backward → SGD step.
    @inlinable
    public func trainStep(_ x: FeatureMap<T>, targets: [Int], optimizer: SGD<T>) throws(BatchNormError) -> StepResult<T> {
        trace?.probe(TracePoint(.data, "input", .labels), targets.map { T($0) })
        let logits = try forward(x, training: true)
        let ce = CrossEntropy.evaluate(logits: logits, targets: targets, kernels: kernels)
        trace?.mark(TracePoint(.loss, "loss", .loss))
        trace?.mark(TracePoint(.loss, "loss", .accuracy))
        stageDone?("loss")
        var lossGradient = ce.gradient!
        hooks.lossGradientComputed(&lossGradient.data)
        backward(lossGradient)
        if let trace {
            let old = optimizer.parameters.map(\.value)
            trace.updated(optimizer.parameters, probes: optimizer.probedStep(threads: kernels.threads), old: old)
        } else {
            optimizer.step(threads: kernels.threads)
        }
        hooks.parametersUpdated(optimizer)
        stageDone?("SGD step")
        return StepResult(loss: ce.loss, correct: ce.correct)
    }

    /// Eval-mode loss (batch mean) and number correct, no gradient.
    @inlinable
    public func evaluate(_ x: FeatureMap<T>, targets: [Int]) throws(BatchNormError) -> StepResult<T> {
        let logits = try forward(x, training: false)
        let ce = CrossEntropy.evaluate(logits: logits, targets: targets, kernels: kernels, gradient: false)
        return StepResult(loss: ce.loss, correct: ce.correct)
    }
}

/// Called by the model at fixed places of every step, with no branch of the model's own: the seam through
/// which planted faults (`PlantedFault` in ReproTraining) change its numbers.
public protocol ModelHooks: Sendable {
    /// After a layer's backward has filled its parameters' gradients, before anything (probes, the
    /// optimizer) reads them.
    func gradientsComputed<T: KernelScalar>(layer: String, parameters: [NamedTensor<T>])
    /// After the optimizer's step (and its probes), before anything reads the new parameters and buffers.
    func parametersUpdated<T: KernelScalar>(_ optimizer: SGD<T>)
    /// The loss's gradient with respect to the logits, before the backward pass reads it.
    func lossGradientComputed<T: KernelScalar>(_ gradient: inout [T])
}

extension ModelHooks {
    @inlinable public func parametersUpdated<T: KernelScalar>(_ optimizer: SGD<T>) {}
    @inlinable public func lossGradientComputed<T: KernelScalar>(_ gradient: inout [T]) {}
}

/// The hooks of every real run: they change nothing.
public struct NoModelHooks: ModelHooks {
    public init() {}
    @inlinable public func gradientsComputed<T: KernelScalar>(layer: String, parameters: [NamedTensor<T>]) {}
}
