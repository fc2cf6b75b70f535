import ReproKernels
import ReproNN

/// Where a planted fault enters a run. The trainer calls each hook at its place in every run, with no branch
/// of its own; a real run's hooks (`NoFault`) change nothing. Faults are the verifier's negative controls
/// (`repro verify --inject-fault`, the sensitivity tests): how the harness reacts to a real regression.
public protocol TrainingHooks: ModelHooks {
    /// The kernels the model computes with.
    func kernels(_ kernels: any Kernels) -> any Kernels
    /// Refuses a run the fault does not fit (a BatchNorm layer the model lacks).
    func check(_ layout: ModelLayout) throws
    /// An epoch's sample order, before training reads it.
    func order(_ order: inout [Int32], epoch: Int)
    /// An epoch's training and validation metrics, before observers see them.
    func epochMetrics(train: inout Metrics, validation: inout Metrics, epoch: Int)
}

/// The hooks of every real run.
public struct NoFault: TrainingHooks {
    public init() {}
    public func kernels(_ kernels: any Kernels) -> any Kernels { kernels }
    public func check(_ layout: ModelLayout) throws {}
    public func order(_ order: inout [Int32], epoch: Int) {}
    public func epochMetrics(train: inout Metrics, validation: inout Metrics, epoch: Int) {}
    public func gradientsComputed<T: KernelScalar>(layer: String, parameters: [NamedTensor<T>]) {}
}

/// A deliberate regression (never part of a real run).
public enum PlantedFault: TrainingHooks, Equatable {
    /// Changes that act only from a later epoch on: what a 256-step golden cannot see and a full-length
    /// golden must. The shuffle of every epoch from this one on swaps its first two samples.
    case shuffle(fromEpoch: Int)
    /// The per-epoch training loss from this epoch on is one ULP larger.
    case epochTrainingMetric(fromEpoch: Int)
    /// The validation loss after this epoch and later ones is one ULP larger.
    case validation(fromEpoch: Int)
    /// conv2's forward accumulates its input channels in reverse order: the same sums, other roundings.
    case conv2ForwardReordered
    /// The named BatchNorm layer's ∂γ is multiplied by `factor` (1 + 1e-3 in the localization tests).
    case batchNormGammaGradient(layer: String, factor: Float)

    public func kernels(_ kernels: any Kernels) -> any Kernels {
        self == .conv2ForwardReordered ? ReorderedConv2Kernels(base: kernels) : kernels
    }

    public func check(_ layout: ModelLayout) throws {
        if case let .batchNormGammaGradient(layer, _) = self, layout.batchNorm(named: layer) == nil {
            throw PlantedFaultError("a fault planted in \(layer)'s ∂γ needs a model with that BatchNorm layer (this one has none)")
        }
    }

    public func order(_ order: inout [Int32], epoch: Int) {
        if case .shuffle(let from) = self, epoch >= from, order.count > 1 { order.swapAt(0, 1) }
    }

    public func epochMetrics(train: inout Metrics, validation: inout Metrics, epoch: Int) {
        if case .epochTrainingMetric(let from) = self, epoch >= from { train.loss = train.loss.nextUp }
        if case .validation(let from) = self, epoch >= from { validation.loss = validation.loss.nextUp }
    }

    public func gradientsComputed<T: KernelScalar>(layer: String, parameters: [NamedTensor<T>]) {
        guard case let .batchNormGammaGradient(target, factor) = self, layer == target,
              let gamma = parameters.first(where: { $0.name == layer + ".gamma" }) else { return }
        gamma.grad = gamma.grad.map { $0 * T(factor) }
    }
}

/// A planted fault that does not fit the run (a BatchNorm layer the model does not have): bad input.
public struct PlantedFaultError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The run's kernels, except that conv2's forward (the convolution with 6 input channels) adds its input
/// channels in reverse order: mathematically the same sums, rounded differently. A planted regression for
/// the localization tests (`PlantedFault.conv2ForwardReordered`); never used by a real run.
struct ReorderedConv2Kernels: Kernels {
    let base: any Kernels
    var threads: Int { base.threads }

    func gemm<T: KernelScalar>(
        _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
        alpha: T, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        base.gemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    func sum<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> T { base.sum(x) }
    func sumOfSquaredDeviations<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, from center: T) -> T {
        base.sumOfSquaredDeviations(x, from: center)
    }
    func dot<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> T { base.dot(x, y) }
    func exp<T: KernelScalar>(_ x: T) -> T { base.exp(x) }
    func log<T: KernelScalar>(_ x: T) -> T { base.log(x) }

    func convolutionForward<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
        output: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        // The true forward first: it leaves the workspace the weight gradient expects.
        base.convolutionForward(shape, input: input, weight: weight, bias: bias, output: output, columns: &columns)
        guard shape.inChannels == 6 else { return }
        let c = shape.inChannels, plane = shape.batch * shape.height * shape.width, taps = shape.kernelSize * shape.kernelSize
        var reversedInput = [T](repeating: 0, count: c * plane), reversedWeight = [T](repeating: 0, count: shape.outChannels * c * taps)
        for ch in 0..<c {
            for i in 0..<plane { reversedInput[(c - 1 - ch) * plane + i] = input[ch * plane + i] }
            for o in 0..<shape.outChannels {
                for t in 0..<taps { reversedWeight[(o * c + c - 1 - ch) * taps + t] = weight[(o * c + ch) * taps + t] }
            }
        }
        var scratch = [T]()
        base.convolutionForward(shape, input: reversedInput, weight: reversedWeight, bias: bias, output: output, columns: &scratch)
    }

    func convolutionWeightGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        weightGradient: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        base.convolutionWeightGradient(shape, input: input, outputGradient: outputGradient, weightGradient: weightGradient, columns: &columns)
    }

    func convolutionInputGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, weight: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        inputGradient: UnsafeMutablePointer<T>
    ) {
        base.convolutionInputGradient(shape, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient)
    }
}

/// A replica of a run under Monte Carlo arithmetic (`MonteCarloKernels`): every kernel result perturbed by
/// its own round-off, seeded per replica. Not a fault: the spread of such replicas is what a legitimate
/// change of summation order (another kernel, library or framework) can do to a run.
public struct RoundingReplica: TrainingHooks {
    public let seed: UInt64
    public let replica: UInt32
    public init(seed: UInt64, replica: UInt32) {
        self.seed = seed
        self.replica = replica
    }
    public func kernels(_ kernels: any Kernels) -> any Kernels { MonteCarloKernels(base: kernels, seed: seed, replica: replica) }
    public func check(_ layout: ModelLayout) throws {}
    public func order(_ order: inout [Int32], epoch: Int) {}
    public func epochMetrics(train: inout Metrics, validation: inout Metrics, epoch: Int) {}
    public func gradientsComputed<T: KernelScalar>(layer: String, parameters: [NamedTensor<T>]) {}
}
