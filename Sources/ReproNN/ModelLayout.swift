import ReproKernels

/// What a model looks like from outside, derived from the model itself: the places of a training step in
/// execution order (`trace`, found by running one), its BatchNorm layers with their channel counts, and its state_dict (PyTorch names and shapes, in
/// registration order). Records, comparisons and checks read the layout instead of repeating it, so another
/// architecture changes one place.
public struct ModelLayout: Sendable, Equatable {
    public struct Tensor: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let isParameter: Bool
        public var count: Int { shape.reduce(1, *) }
    }

    public struct BatchNormLayer: Sendable, Equatable {
        public let name: String
        public let channels: Int
        /// The spatial size of the layer's input (1×1 for BatchNorm1d).
        public let height: Int, width: Int
        public let tracksRunningStatistics: Bool
    }

    /// One training step's places in execution order, as the model passes them (`StepTrace`): data, each
    /// layer's forward, the loss, each layer's backward, each parameter's update.
    public let trace: [TracePoint]
    /// The points a step's probes summarize (`/steps/probes`), in execution order.
    public var probePoints: [TracePoint] { trace.filter(\.isProbed) }
    /// The probed points whose probes carry a norm (`/steps/probes/norm`): parameters' gradients and updates.
    public var normPoints: [TracePoint] { probePoints.filter(\.hasNorm) }
    /// The probed points of a forward pass alone (the evaluation before training): the images and every
    /// layer's output.
    public var forwardProbePoints: [TracePoint] { probePoints.filter { $0.quantity == .images || ($0.pass == .forward) } }
    public let batchNorms: [BatchNormLayer]
    public let stateDict: [Tensor]
    /// net.parameters() order: the state_dict without buffers.
    public var parameters: [Tensor] { stateDict.filter(\.isParameter) }

    public func batchNorm(named name: String) -> BatchNormLayer? { batchNorms.first { $0.name == name } }
}

/// One BatchNorm layer's statistics after a training step: those it normalized with, and its running
/// buffers after the update (nil when it does not track them).
public struct BatchNormStatistics<T: KernelScalar>: Sendable {
    public let layer: String
    public let batchMean: [T]
    public let batchStd: [T]
    public let runningMean: [T]?
    public let runningStd: [T]?

    public init(layer: String, batchMean: [T], batchStd: [T], runningMean: [T]?, runningStd: [T]?) {
        self.layer = layer
        self.batchMean = batchMean
        self.batchStd = batchStd
        self.runningMean = runningMean
        self.runningStd = runningStd
    }
}

extension LeNet5 {
    /// The input images: 3×32×32.
    public static var inputSize: Int { 32 }

    public var layout: ModelLayout {
        // conv1's output (bn1's input), then pooled by 2 and through conv2 (bn2's input); bn3, bn4 are 1d.
        let size1 = Self.inputSize - conv1.kernelSize + 1, size2 = size1 / 2 - conv2.kernelSize + 1
        let sizes = ["bn1": size1, "bn2": size2]
        return ModelLayout(
            trace: Self.traceOrder(normalized: normalized, batchNorm: bn1?.options ?? .notebook),
            batchNorms: batchNorms.map {
                .init(name: $0.name, channels: $0.channels, height: sizes[$0.name] ?? 1, width: sizes[$0.name] ?? 1,
                      tracksRunningStatistics: $0.options.trackRunningStats)
            },
            stateDict: stateDict.map { .init(name: $0.name, shape: $0.shape, isParameter: $0.isParameter) })
    }

    /// The order of a training step's trace points, found by running one: a fresh model of this
    /// configuration takes an SGD step on four fixed images with a names-only trace.
    public static func traceOrder(normalized: Bool, batchNorm: BatchNormOptions) -> [TracePoint] {
        let model = LeNet5<Float>(normalized: normalized, batchNorm: batchNorm, kernels: PortableKernels(threads: 1))
        model.initialize(seed: 0)
        let n = 4, size = inputSize * inputSize
        // Distinct images, so no BatchNorm channel has a zero standard deviation.
        let x = FeatureMap(channels: 3, batch: n, height: inputSize, width: inputSize,
                           data: (0..<(3 * n * size)).map { Float(($0 * 7_919) % 251) / 251 })
        let trace = StepTrace(namesOnly: true)
        model.trace = trace
        let optimizer = SGD(parameters: model.parameters, options: SGDOptions())
        do { _ = try model.trainStep(x, targets: [0, 1, 2, 3], optimizer: optimizer) } catch {
            preconditionFailure("the trace dry run failed: \(error)")
        }
        return trace.points
    }

    /// The layout of the model a configuration builds, without training one.
    public static func layout(normalized: Bool, batchNorm: BatchNormOptions) -> ModelLayout {
        LeNet5<T>(normalized: normalized, batchNorm: batchNorm, kernels: PortableKernels(threads: 1)).layout
    }

    /// Every BN layer's statistics of the last forward pass, in forward order.
    public var batchNormStatistics: [BatchNormStatistics<T>] {
        batchNorms.map { .init(layer: $0.name, batchMean: $0.lastMean, batchStd: $0.lastStd,
                               runningMean: $0.runningMean?.value, runningStd: $0.runningStd?.value) }
    }
}
