import Testing
import ReproKernels
import ReproNN
import ReproTestSupport

/// Every layer's backward against central finite differences in Float64, L = Σ w ⊙ y with random w.
@Suite struct GradientTests {
    @Test func linear() {
        let layer = Linear<Double>("fc", inFeatures: 7, outFeatures: 5, kernels: blas)
        layer.weight.value = randomValues(35, seed: 1)
        layer.bias.value = randomValues(5, seed: 2)
        var x = randomValues(7 * 4, seed: 3)
        let w = randomValues(5 * 4, seed: 4)
        let f = { (xs: [Double]) in weightedSum(layer.forward(FeatureMap(channels: 7, batch: 4, data: xs)).data, w) }
        _ = f(x)
        let dx = layer.backward(FeatureMap(channels: 5, batch: 4, data: w)).data
        let dW = layer.weight.grad, db = layer.bias.grad
        #expect(GradientCheck.compare(analytic: dx, numeric: GradientCheck.numericGradient(of: f, at: &x, indices: Array(x.indices))).passed)
        #expect(parameterCheck(layer.weight, analytic: dW) { f(x) }.passed)
        #expect(parameterCheck(layer.bias, analytic: db) { f(x) }.passed)
    }

    @Test func conv2d() {
        let layer = Conv2d<Double>("conv", inChannels: 2, outChannels: 3, kernelSize: 3, kernels: blas)
        layer.weight.value = randomValues(3 * 2 * 9, seed: 5)
        layer.bias.value = randomValues(3, seed: 6)
        var x = randomValues(2 * 2 * 6 * 7, seed: 7)
        let w = randomValues(3 * 2 * 4 * 5, seed: 8)
        let f = { (xs: [Double]) in
            weightedSum(layer.forward(FeatureMap(channels: 2, batch: 2, height: 6, width: 7, data: xs)).data, w)
        }
        _ = f(x)
        let dx = layer.backward(FeatureMap(channels: 3, batch: 2, height: 4, width: 5, data: w))!.data
        let dW = layer.weight.grad, db = layer.bias.grad
        #expect(GradientCheck.compare(analytic: dx, numeric: GradientCheck.numericGradient(of: f, at: &x, indices: Array(x.indices))).passed)
        #expect(parameterCheck(layer.weight, analytic: dW) { f(x) }.passed)
        #expect(parameterCheck(layer.bias, analytic: db) { f(x) }.passed)
    }

    @Test func reluAndMaxPool() {
        let relu = ReLU<Double>(), pool = MaxPool2x2<Double>()
        // Values well away from 0 and from each other, so the kinks are not within eps.
        var x = randomValues(2 * 3 * 6 * 4, seed: 9).enumerated().map { i, v in v + 0.01 * Double(i % 7) + (v > 0 ? 0.1 : -0.1) }
        let w = randomValues(2 * 3 * 3 * 2, seed: 10)
        let f = { (xs: [Double]) in
            var a = FeatureMap(channels: 2, batch: 3, height: 6, width: 4, data: xs)
            relu.forward(&a)
            return weightedSum(pool.forward(a).data, w)
        }
        _ = f(x)
        var g = pool.backward(FeatureMap(channels: 2, batch: 3, height: 3, width: 2, data: w))
        relu.backward(&g)
        let dx = g.data
        #expect(GradientCheck.compare(analytic: dx, numeric: GradientCheck.numericGradient(of: f, at: &x, indices: Array(x.indices))).passed)
    }

    @Test func reluGradientFollowsThresholdBackward() {
        // PyTorch's threshold_backward: zero where the output is ≤ 0 (exactly 0 included), pass elsewhere, NaN included.
        let relu = ReLU<Double>()
        var x = FeatureMap<Double>(channels: 1, batch: 4, data: [-1, 0, 2, .nan])
        relu.forward(&x)
        #expect(x.data[0] == 0 && x.data[1] == 0 && x.data[2] == 2 && x.data[3].isNaN)
        var g = FeatureMap<Double>(channels: 1, batch: 4, data: [5, 6, 7, 8])
        relu.backward(&g)
        #expect(g.data == [0, 0, 7, 8])
    }

    @Test func maxPoolTiesGoToFirstMaximum() {
        let pool = MaxPool2x2<Double>()
        _ = pool.forward(FeatureMap(channels: 1, batch: 1, height: 2, width: 2, data: [1, 3, 3, 3]))
        #expect(pool.backward(FeatureMap(channels: 1, batch: 1, height: 1, width: 1, data: [5])).data == [0, 5, 0, 0])
    }

    @Test func crossEntropy() {
        var z = randomValues(10 * 3, seed: 11, scale: 3)
        let targets = [2, 7, 0]
        let f = { (zs: [Double]) in
            CrossEntropy.evaluate(logits: FeatureMap(channels: 10, batch: 3, data: zs), targets: targets, kernels: blas).loss
        }
        let analytic = CrossEntropy.evaluate(logits: FeatureMap(channels: 10, batch: 3, data: z), targets: targets, kernels: blas).gradient!.data
        #expect(GradientCheck.compare(analytic: analytic, numeric: GradientCheck.numericGradient(of: f, at: &z, indices: Array(z.indices))).passed)
        // Stable for huge logits: no overflow, and the exact value log(1 + e^-1000) ≈ 0 for the winner.
        let big = CrossEntropy.evaluate(logits: FeatureMap(channels: 2, batch: 1, data: [1000.0, 0.0]), targets: [0], kernels: blas)
        #expect(big.loss == 0 && big.gradient!.data.allSatisfy(\.isFinite))
    }

    @Test(arguments: [
        (BatchNormOptions.notebook, true),
        (BatchNormOptions.notebook, false),
        (BatchNormOptions(affine: false), true),
        (BatchNormOptions(trackRunningStats: false), false),
        (BatchNormOptions(epsilon: 1e-5, unbiased: false), true),
    ])
    func batchNorm(options: BatchNormOptions, training: Bool) throws {
        for (c, n, h, w) in [(3, 4, 1, 1), (2, 3, 3, 2), (4, 2, 1, 1)] {
            let result = try batchNormGradients(options: options, training: training, channels: c, batch: n, height: h, width: w)
            #expect(result.input.passed, "input gradient \(options) training=\(training) shape \((c, n, h, w))")
            #expect(result.gamma?.passed ?? true)
            #expect(result.beta?.passed ?? true)
        }
    }

    @Test func wholeNetworkWithBatchNorm() throws {
        try wholeNetworkCheck(normalized: true)
    }

    @Test func wholeNetworkWithoutBatchNorm() throws {
        try wholeNetworkCheck(normalized: false)
    }

    // MARK: negative controls: the same checks must fail on a deliberately wrong gradient

    @Test func negativeControlWrongLinearGradientFails() {
        let layer = Linear<Double>("fc", inFeatures: 7, outFeatures: 5, kernels: blas)
        layer.weight.value = randomValues(35, seed: 1)
        var x = randomValues(7 * 4, seed: 3)
        let w = randomValues(5 * 4, seed: 4)
        let f = { (xs: [Double]) in weightedSum(layer.forward(FeatureMap(channels: 7, batch: 4, data: xs)).data, w) }
        _ = f(x)
        var dx = layer.backward(FeatureMap(channels: 5, batch: 4, data: w)).data
        dx[3] *= 1.01  // a 1% error in one coordinate
        #expect(!GradientCheck.compare(analytic: dx, numeric: GradientCheck.numericGradient(of: f, at: &x, indices: Array(x.indices))).passed)
    }

    @Test func negativeControlBiasedStdInBackwardFails() throws {
        // Forward unbiased (the notebook), backward derived for the biased formula: the classic slip.
        let result = try batchNormGradients(options: .notebook, training: true, channels: 3, batch: 4, height: 1, width: 1,
                                            backwardOptions: BatchNormOptions(unbiased: false))
        #expect(!result.input.passed)
    }

    @Test func negativeControlWrongGammaGradientFails() throws {
        let result = try batchNormGradients(options: .notebook, training: true, channels: 3, batch: 4, height: 1, width: 1,
                                            corruptGamma: true)
        #expect(!(result.gamma!.passed))
    }

    @Test func zeroStandardDeviationIsANamedError() {
        let bn = BatchNorm<Float>("bn1", channels: 2, kernels: blas)
        let x = FeatureMap<Float>(channels: 2, batch: 3, data: [1, 2, 3, 5, 5, 5])
        #expect(throws: BatchNormError.zeroStandardDeviation(layer: "bn1", channel: 1, elements: 3)) {
            try bn.forward(x, training: true)
        }
        // One element per channel has no unbiased std either.
        #expect(throws: BatchNormError.self) { try bn.forward(FeatureMap(channels: 2, batch: 1, data: [1, 2]), training: true) }
        // With an epsilon the constant channel is fine: x̂ = 0 there.
        let eps = BatchNorm<Float>("bn1", channels: 2, options: BatchNormOptions(epsilon: 1e-5), kernels: blas)
        #expect((try? eps.forward(x, training: true))?.data[3...] == [0, 0, 0])
    }
}

/// Checks a parameter tensor's analytic gradient by perturbing its values in place.
func parameterCheck(_ p: NamedTensor<Double>, analytic: [Double], picks: Int = 60, loss: () throws -> Double) rethrows -> GradientComparison {
    let indices = spreadIndices(count: p.count, picks: picks, seed: UInt64(p.count))
    let numeric = try GradientCheck.numericGradient(of: loss, wrt: p, indices: indices)
    return GradientCheck.compare(analytic: indices.map { analytic[$0] }, numeric: numeric)
}

struct BatchNormGradientResult {
    var input: GradientComparison
    var gamma: GradientComparison?
    var beta: GradientComparison?
}

/// Gradient check of one BatchNorm configuration. `backwardOptions` and `corruptGamma` exist for the
/// negative controls only.
func batchNormGradients(options: BatchNormOptions, training: Bool, channels c: Int, batch n: Int, height h: Int, width w: Int,
                        backwardOptions: BatchNormOptions? = nil, corruptGamma: Bool = false) throws -> BatchNormGradientResult {
    func makeLayer(_ o: BatchNormOptions) -> BatchNorm<Double> {
        let bn = BatchNorm<Double>("bn", channels: c, options: o, kernels: blas)
        if let g = bn.gamma { g.value = randomValues(c, seed: 21, offset: 1) }
        if let b = bn.beta { b.value = randomValues(c, seed: 22) }
        if let rm = bn.runningMean { rm.value = randomValues(c, seed: 23, scale: 0.1) }
        if let rs = bn.runningStd { rs.value = randomValues(c, seed: 24, scale: 0.1, offset: 1.5) }
        return bn
    }
    let bn = makeLayer(options)
    var x = randomValues(c * n * h * w, seed: 25, scale: 2, offset: 0.5)
    let wts = randomValues(c * n * h * w, seed: 26)
    let f = { (xs: [Double]) throws -> Double in
        weightedSum(try bn.forward(FeatureMap(channels: c, batch: n, height: h, width: w, data: xs), training: training).data, wts)
    }
    let upstream = FeatureMap(channels: c, batch: n, height: h, width: w, data: wts)
    // Analytic gradient from the layer under test (or from a deliberately mismatched backward).
    let analyticLayer = backwardOptions.map(makeLayer) ?? bn
    _ = try analyticLayer.forward(FeatureMap(channels: c, batch: n, height: h, width: w, data: x), training: training)
    let dx = analyticLayer.backward(upstream).data
    var dGamma = analyticLayer.gamma?.grad
    if corruptGamma { dGamma = dGamma?.map { $0 * 1.05 } }
    let dBeta = analyticLayer.beta?.grad
    let input = GradientCheck.compare(analytic: dx, numeric: try GradientCheck.numericGradient(of: f, at: &x, indices: Array(x.indices)))
    let gamma = try bn.gamma.map { try parameterCheck($0, analytic: dGamma!) { try f(x) } }
    let beta = try bn.beta.map { try parameterCheck($0, analytic: dBeta!) { try f(x) } }
    return BatchNormGradientResult(input: input, gamma: gamma, beta: beta)
}

/// LeNet-5 in Float64 on a batch of 3: finite differences on ≥ 200 coordinates spread over every
/// parameter tensor and the input.
func wholeNetworkCheck(normalized: Bool) throws {
    let net = LeNet5<Double>(normalized: normalized, kernels: blas)
    net.initialize(seed: 5)
    // Batch 4: with 2 samples BatchNorm1d's output would not depend on its input at all.
    let n = 4, targets = [1, 4, 9, 4]
    var x = randomValues(3 * n * 32 * 32, seed: 31)
    let loss = { (xs: [Double]) throws -> Double in
        let logits = try net.forward(FeatureMap(channels: 3, batch: n, height: 32, width: 32, data: xs), training: true)
        return CrossEntropy.evaluate(logits: logits, targets: targets, kernels: blas, gradient: false).loss
    }
    let logits = try net.forward(FeatureMap(channels: 3, batch: n, height: 32, width: 32, data: x), training: true)
    let ce = CrossEntropy.evaluate(logits: logits, targets: targets, kernels: blas)
    let dx = net.backward(ce.gradient!, inputGradient: true)!.data
    let grads = net.parameters.map(\.grad)
    var checked = 0
    for (p, g) in zip(net.parameters, grads) {
        let result = try parameterCheck(p, analytic: g, picks: 22) { try loss(x) }
        #expect(result.passed, "\(p.name): worst ratio \(result.worstRatio)")
        checked += result.compared
    }
    let inputIdx = spreadIndices(count: x.count, picks: 40, seed: 77)
    let inputResult = GradientCheck.compare(analytic: inputIdx.map { dx[$0] },
                                            numeric: try GradientCheck.numericGradient(of: loss, at: &x, indices: inputIdx))
    #expect(inputResult.passed)
    checked += inputResult.compared
    #expect(checked >= 200)
}
