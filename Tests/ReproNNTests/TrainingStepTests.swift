import Testing
import ReproKernels
import ReproNN
import ReproTestSupport

@Suite struct TrainingStepTests {
    static func stateDictionary(_ net: LeNet5<Double>) -> [String: [Double]] {
        Dictionary(uniqueKeysWithValues: net.stateDict.map { ($0.name, $0.value) })
    }

    /// One SGD step on a fixed batch of 4 against the independent reference: the loss must agree to Float64
    /// rounding, and the updated parameters must equal p − lr·(∇L + wd·p), with ∇L from central differences
    /// of the reference forward (first step: the momentum buffer is the gradient itself).
    @Test(arguments: [true, false])
    func oneStepAgainstIndependentReference(normalized: Bool) throws {
        let net = LeNet5<Double>(normalized: normalized, kernels: blas)
        net.initialize(seed: 11)
        let n = 4, targets = [3, 0, 7, 7]
        let xNCHW = randomValues(n * 3 * 32 * 32, seed: 12)
        let x = FeatureMap.fromSampleMajor(xNCHW, batch: n, channels: 3, height: 32, width: 32)
        var reference = ReferenceLeNet(params: Self.stateDictionary(net), normalized: normalized)
        let referenceLoss = reference.loss(xNCHW, n: n, targets: targets)

        let options = SGDOptions(learningRate: 0.05, momentum: 0.9, weightDecay: 1e-3)
        let sgd = SGD(parameters: net.parameters, options: options)
        let before = Self.stateDictionary(net)
        let result = try net.trainStep(x, targets: targets, optimizer: sgd)
        #expect(abs(result.loss - referenceLoss) <= 1e-12 * abs(referenceLoss))

        // Step 1: the momentum buffer is the gradient itself plus weight decay; p1 = p0 − lr·buf1.
        var checked = 0
        var firstBuffers = [String: [Int: Double]]()
        for (index, p) in net.parameters.enumerated() {
            for i in spreadIndices(count: p.count, picks: 6, seed: UInt64(p.count) + 1) {
                let original = before[p.name]![i]
                let grad = centralDifference(&reference, p.name, i, xNCHW, n, targets)
                let buffer = grad + options.weightDecay * original
                let expected = original - options.learningRate * buffer
                // The update's error is lr times the gradient's, so the gradcheck bound scales by lr.
                let bound = Tolerances.gradientAbsolute + Tolerances.gradientRelative * abs(grad)
                #expect(abs(p.value[i] - expected) <= options.learningRate * bound, "\(p.name)[\(i)]")
                #expect(abs(sgd.momentumBuffers[index][i] - buffer) <= bound, "buffer \(p.name)[\(i)]")
                firstBuffers[p.name, default: [:]][i] = sgd.momentumBuffers[index][i]
                checked += 1
            }
        }
        #expect(checked >= 60)
        // Step 2 on the same batch uses the buffer: buf2 = 0.9·buf1 + (∇L(p1) + wd·p1); p2 = p1 − lr·buf2.
        let afterFirst = Self.stateDictionary(net)
        reference = ReferenceLeNet(params: afterFirst, normalized: normalized)
        _ = try net.trainStep(x, targets: targets, optimizer: sgd)
        var missedWithoutMomentum = 0  // negative control: the same check, with the momentum term left out
        for p in net.parameters {
            for (i, buffer1) in firstBuffers[p.name]!.sorted(by: { $0.key < $1.key }) {
                let p1 = afterFirst[p.name]![i]
                let grad = centralDifference(&reference, p.name, i, xNCHW, n, targets)
                let expected = p1 - options.learningRate * (options.momentum * buffer1 + grad + options.weightDecay * p1)
                let bound = options.learningRate * (Tolerances.gradientAbsolute + Tolerances.gradientRelative * abs(grad))
                #expect(abs(p.value[i] - expected) <= bound, "step 2 \(p.name)[\(i)]")
                let withoutMomentum = p1 - options.learningRate * (grad + options.weightDecay * p1)
                if abs(p.value[i] - withoutMomentum) > bound { missedWithoutMomentum += 1 }
            }
        }
        #expect(missedWithoutMomentum > checked / 2, "the momentum term moved only \(missedWithoutMomentum) of \(checked) values")
    }

    /// ∂L/∂param[i] of the reference by central differences.
    func centralDifference(_ reference: inout ReferenceLeNet, _ name: String, _ i: Int, _ x: [Double], _ n: Int, _ targets: [Int]) -> Double {
        let original = reference.params[name]![i]
        func lossAt(_ v: Double) -> Double {
            reference.params[name]![i] = v
            defer { reference.params[name]![i] = original }
            return reference.loss(x, n: n, targets: targets)
        }
        let eps = Tolerances.finiteDifferenceStep
        return (lossAt(original + eps) - lossAt(original - eps)) / (2 * eps)
    }

    @Test func negativeControlReferenceCatchesAWrongLoss() throws {
        let net = LeNet5<Double>(normalized: true, kernels: blas)
        net.initialize(seed: 11)
        // Batch 4: with 2 samples BatchNorm1d maps every input to ±1/√2, hiding everything upstream of bn3.
        let xNCHW = randomValues(4 * 3 * 32 * 32, seed: 12)
        var params = Self.stateDictionary(net)
        params["bn2.gamma"]![3] *= 1.001  // a tiny change in one BN scale must move the loss measurably
        let a = ReferenceLeNet(params: Self.stateDictionary(net), normalized: true).loss(xNCHW, n: 4, targets: [1, 2, 3, 4])
        let b = ReferenceLeNet(params: params, normalized: true).loss(xNCHW, n: 4, targets: [1, 2, 3, 4])
        #expect(abs(a - b) > 1e-12 * abs(a))
    }

    @Test func sgdMatchesPyTorchSemantics() {
        let p = NamedTensor<Double>(name: "w", shape: [2], isParameter: true, value: [1, -2])
        let sgd = SGD(parameters: [p], options: SGDOptions(learningRate: 0.1, momentum: 0.9, weightDecay: 0.01))
        p.grad = [0.5, 0.25]
        sgd.step()  // buf = g + wd·p = [0.51, 0.23]; p = [1 − 0.051, −2 − 0.023]
        #expect(zip(p.value, [0.949, -2.023]).allSatisfy { abs($0 - $1) < 1e-15 })
        p.grad = [0.5, 0.25]
        sgd.step()  // buf = 0.9·buf + (g + wd·p)
        let b0 = 0.9 * 0.51 + (0.5 + 0.01 * 0.949), b1 = 0.9 * 0.23 + (0.25 + 0.01 * -2.023)
        #expect(zip(p.value, [0.949 - 0.1 * b0, -2.023 - 0.1 * b1]).allSatisfy { abs($0 - $1) < 1e-15 })
    }

    @Test func twentyStepsAreBitIdentical() throws {
        func run() throws -> [UInt32] {
            let net = LeNet5<Float>(normalized: true, kernels: blas)
            net.initialize(seed: 3)
            let sgd = SGD(parameters: net.parameters, options: SGDOptions())
            var losses = [UInt32]()
            for step in 0..<20 {
                let x = randomValues(8 * 3 * 32 * 32, seed: 100, substream: UInt32(step)).map { Float($0) }
                let t = (0..<8).map { ($0 * 7 + step) % 10 }
                losses.append(try net.trainStep(FeatureMap(channels: 3, batch: 8, height: 32, width: 32, data: x),
                                                targets: t, optimizer: sgd).loss.bitPattern)
            }
            return losses + net.stateDict.flatMap { $0.value.map(\.bitPattern) }
        }
        OpenBLAS.setThreadCount(1)  // the bits of a blas run depend on it; tests run serially (--no-parallel)
        let a = try run(), b = try run()
        #expect(a.count == b.count)
        let firstDifference = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(firstDifference == nil, "first differing value at \(firstDifference ?? -1)")
    }

    @Test func stateDictNamesAndShapesArePyTorchs() {
        let net = LeNet5<Float>(normalized: true, kernels: blas)
        let got = net.stateDict.map { "\($0.name)\($0.shape)" }
        #expect(got == [
            "conv1.weight[6, 3, 5, 5]", "conv1.bias[6]", "bn1.gamma[6, 1]", "bn1.beta[6, 1]", "bn1.running_mean[6, 1]", "bn1.running_std[6, 1]",
            "conv2.weight[16, 6, 5, 5]", "conv2.bias[16]", "bn2.gamma[16, 1]", "bn2.beta[16, 1]", "bn2.running_mean[16, 1]", "bn2.running_std[16, 1]",
            "fc3.weight[120, 400]", "fc3.bias[120]", "bn3.gamma[120, 1]", "bn3.beta[120, 1]", "bn3.running_mean[120, 1]", "bn3.running_std[120, 1]",
            "fc4.weight[84, 120]", "fc4.bias[84]", "bn4.gamma[84, 1]", "bn4.beta[84, 1]", "bn4.running_mean[84, 1]", "bn4.running_std[84, 1]",
            "fc5.weight[10, 84]", "fc5.bias[10]",
        ])
        #expect(LeNet5<Float>(normalized: false, kernels: blas).stateDict.count == 10)
    }

    @Test func initializationBoundsArePyTorchs() {
        let net = LeNet5<Double>(normalized: false, kernels: blas)
        net.initialize(seed: 0)
        for (p, fan) in [(net.conv1.weight, 75), (net.conv2.bias, 150), (net.fc3.weight, 400), (net.fc5.bias, 84)] {
            let bound = 1 / Double(fan).squareRoot()
            #expect(p.value.allSatisfy { abs($0) <= bound })
            #expect(p.value.map(abs).max()! > 0.9 * bound)  // actually spread over the interval
        }
    }
}
