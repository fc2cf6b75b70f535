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
    /// The freshly initialized model of a run that starts at step 0.
    func initialized(_ model: LeNet5<Float>)
    /// A batch's normalized input (training and evaluation), before the model reads it.
    func batchLoaded(_ x: inout [Float])
}

extension TrainingHooks {
    public func initialized(_ model: LeNet5<Float>) {}
    public func batchLoaded(_ x: inout [Float]) {}
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
    /// The named BatchNorm layer's ∂β is multiplied by `factor`.
    case batchNormBetaGradient(layer: String, factor: Float)
    /// Every GEMM sums over k in reverse order: the same sums, other roundings (a legitimate change).
    case gemmReversed
    /// The input normalization's scale off by `factor` (training and evaluation batches).
    case inputScaled(factor: Float)
    /// Epoch 0's first sample swapped with its last: step 1's batch holds a sample it should not.
    case firstSampleSwapped
    /// The named tensor's initial values multiplied by `factor`.
    case initialTensor(name: String, factor: Float)
    /// The loss's gradient multiplied by `factor` (for example a mean over N + 1 instead of N samples).
    case lossGradient(factor: Float)

    public func kernels(_ kernels: any Kernels) -> any Kernels {
        switch self {
        case .conv2ForwardReordered: return ReorderedConv2Kernels(base: kernels)
        case .gemmReversed: return ReversedGEMMKernels(base: kernels)
        default: return kernels
        }
    }

    public func check(_ layout: ModelLayout) throws {
        switch self {
        case let .batchNormGammaGradient(layer, _), let .batchNormBetaGradient(layer, _):
            if layout.batchNorm(named: layer) == nil {
                throw PlantedFaultError("a fault planted in \(layer)'s gradients needs a model with that BatchNorm layer (this one has none)")
            }
        default: break
        }
    }

    public func order(_ order: inout [Int32], epoch: Int) {
        if case .shuffle(let from) = self, epoch >= from, order.count > 1 { order.swapAt(0, 1) }
        if case .firstSampleSwapped = self, epoch == 0, order.count > 1 { order.swapAt(0, order.count - 1) }
    }

    public func initialized(_ model: LeNet5<Float>) {
        guard case let .initialTensor(name, factor) = self, let t = model.stateDict.first(where: { $0.name == name }) else { return }
        t.value = t.value.map { $0 * factor }
    }

    public func batchLoaded(_ x: inout [Float]) {
        if case .inputScaled(let factor) = self { for i in x.indices { x[i] *= factor } }
    }

    public func lossGradientComputed<T: KernelScalar>(_ gradient: inout [T]) {
        if case .lossGradient(let factor) = self { for i in gradient.indices { gradient[i] *= T(factor) } }
    }

    public func epochMetrics(train: inout Metrics, validation: inout Metrics, epoch: Int) {
        if case .epochTrainingMetric(let from) = self, epoch >= from { train.loss = train.loss.nextUp }
        if case .validation(let from) = self, epoch >= from { validation.loss = validation.loss.nextUp }
    }

    public func gradientsComputed<T: KernelScalar>(layer: String, parameters: [NamedTensor<T>]) {
        let (target, name, factor): (String, String, Float)
        switch self {
        case let .batchNormGammaGradient(l, f): (target, name, factor) = (l, "gamma", f)
        case let .batchNormBetaGradient(l, f): (target, name, factor) = (l, "beta", f)
        default: return
        }
        guard layer == target, let p = parameters.first(where: { $0.name == layer + "." + name }) else { return }
        p.grad = p.grad.map { $0 * T(factor) }
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
struct ReorderedConv2Kernels: ForwardingKernels {
    let base: any Kernels

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
}

/// The run's kernels, except that every GEMM sums over k in reverse order (op(A)'s columns and op(B)'s
/// rows reversed together): mathematically the same products, rounded differently. A planted legitimate
/// change (`PlantedFault.gemmReversed`): what another BLAS's blocking can do.
struct ReversedGEMMKernels: ForwardingKernels {
    let base: any Kernels

    func gemm<T: KernelScalar>(
        _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
        alpha: T, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        // op(A)[i][p] and op(B)[p][j] as plain row-major m×k and k×n copies, p running backwards.
        var ra = [T](repeating: 0, count: m * k), rb = [T](repeating: 0, count: k * n)
        for i in 0..<m { for p in 0..<k { ra[i * k + (k - 1 - p)] = transA == .none ? a[i * lda + p] : a[p * lda + i] } }
        for p in 0..<k { for j in 0..<n { rb[(k - 1 - p) * n + j] = transB == .none ? b[p * ldb + j] : b[j * ldb + p] } }
        base.gemm(.none, .none, m: m, n: n, k: k, alpha: alpha, a: ra, lda: k, b: rb, ldb: n, beta: beta, c: c, ldc: ldc)
    }
}

/// A replica of a run under Monte Carlo arithmetic: every kernel result perturbed by its own round-off
/// (`MonteCarloKernels`), and so is the element-wise arithmetic outside the kernels — each gradient as its
/// layer's backward leaves it (BatchNorm's and the loss's element-wise backward, the bias sums), each
/// parameter and momentum buffer after the optimizer's step (its products and sums) — all seeded per
/// replica. Not a fault: the spread of such replicas is what a legitimate change of summation order or
/// of fused operations (another kernel, library or framework) can do to a run.
public struct RoundingReplica: TrainingHooks {
    public let seed: UInt64
    public let replica: UInt32
    /// The perturbation in units of the model; 0 perturbs nothing (a negative control).
    public let scale: Double
    public init(seed: UInt64, replica: UInt32, scale: Double = 1) {
        self.seed = seed
        self.replica = replica
        self.scale = scale
    }
    public func kernels(_ kernels: any Kernels) -> any Kernels {
        MonteCarloKernels(base: kernels, seed: seed, replica: replica, scale: scale)
    }
    public func check(_ layout: ModelLayout) throws {}
    public func order(_ order: inout [Int32], epoch: Int) {}
    public func epochMetrics(train: inout Metrics, validation: inout Metrics, epoch: Int) {}

    /// Index ranges of the element-wise perturbations, apart from the kernels' (which index an output
    /// by its position, below 2⁴⁰).
    static let gradientIndex = 1 << 41, parameterIndex = 2 << 41, momentumIndex = 3 << 41

    /// x += ξ·u·|x|·factor, element by element (concrete Float code for the model's tensors: called through
    /// the hooks' generic requirements, the generic loop is not specialized).
    func perturb<T: KernelScalar>(_ x: inout [T], salt: Int, factor: T = 1) {
        if T.self == Float.self {
            return x.withUnsafeMutableBufferPointer { b in
                b.withMemoryRebound(to: Float.self) { perturbFloats($0, salt: salt, factor: unsafeBitCast(factor, to: Float.self)) }
            }
        }
        let u = T(scale) * T.ulpOfOne / 2 * factor
        for i in x.indices { x[i] += MonteCarloKernels.xi(seed: seed, replica: replica, value: x[i], index: salt + i) * u * abs(x[i]) }
    }

    func perturbFloats(_ x: UnsafeMutableBufferPointer<Float>, salt: Int, factor: Float) {
        let u = Float(scale) * Float.ulpOfOne / 2 * factor
        for i in x.indices { x[i] += MonteCarloKernels.xi(seed: seed, replica: replica, value: x[i], index: salt + i) * u * abs(x[i]) }
    }

    public func gradientsComputed<T: KernelScalar>(layer: String, parameters: [NamedTensor<T>]) {
        for (k, p) in parameters.enumerated() { perturb(&p.grad, salt: Self.gradientIndex + k << 32) }
    }

    /// p − lr·b rounds twice (|p| and |lr·b| at most ~|p| + |lr·b|), b = μ·b + d twice: √2 each.
    public func parametersUpdated<T: KernelScalar>(_ optimizer: SGD<T>) {
        for (k, p) in optimizer.parameters.enumerated() {
            perturb(&p.value, salt: Self.parameterIndex + k << 32, factor: T(2.0.squareRoot()))
            perturb(&optimizer.momentumBuffers[k], salt: Self.momentumIndex + k << 32, factor: T(2.0.squareRoot()))
        }
    }
}
