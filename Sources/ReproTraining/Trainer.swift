import ReproData
import ReproKernels
import ReproNN

/// Loss and accuracy over a set of samples: the true mean per-sample loss (each batch's mean weighted by
/// its size) and accuracy in percent. The notebook divides the sum of batch means by the sample count,
/// printing losses batch_size times too small; repro does not.
public struct Metrics: Sendable {
    public var loss: Double
    public var accuracy: Double
    public var samples: Int

    public init(loss: Double, accuracy: Double, samples: Int) {
        self.loss = loss
        self.accuracy = accuracy
        self.samples = samples
    }
}

/// One optimizer step's outcome, as observers see it.
public struct StepOutcome: Sendable {
    public let step: Int
    public let loss: Float
    public let correct: Int
    public let batchSize: Int
    /// Every BatchNorm layer's statistics of the step, in forward order.
    public let batchNorm: [BatchNormStatistics<Float>]
    /// The step's probes in `ModelLayout.probePoints` order, when an observer asked for them (`wantsProbes`)
    /// and the record keeps this step; nil otherwise.
    public let probes: [Probe]?
    public init(step: Int, loss: Float, correct: Int, batchSize: Int, batchNorm: [BatchNormStatistics<Float>], probes: [Probe]? = nil) {
        self.step = step
        self.loss = loss
        self.correct = correct
        self.batchSize = batchSize
        self.batchNorm = batchNorm
        self.probes = probes
    }

    /// The batch's accuracy in percent, as recorded.
    public var accuracy: Float { Float(100 * Double(correct) / Double(batchSize)) }
}

/// A copy of one state tensor's values.
public struct TensorValues: Sendable {
    public let name: String
    public let shape: [Int]
    public let values: [Float]

    public init(name: String, shape: [Int], values: [Float]) {
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// The training state after `step`, at a checkpoint or the end of a verification window: the model's
/// state_dict, the SGD momentum buffers (empty before the first step, as PyTorch's) and the data cursor.
public struct StateCapture: Sendable {
    public let step: Int
    public let epoch: Int
    public let batchInEpoch: Int
    public let content: Content

    public enum Content: Sendable {
        /// Every tensor's values.
        case tensors(model: [TensorValues], momentumBuffers: [TensorValues])
        /// Only each tensor's SHA-256 (a record replayed from storage that kept no more than that).
        case digests(model: [[UInt8]], momentumBuffers: [[UInt8]])
    }

    public init(step: Int, epoch: Int, batchInEpoch: Int, content: Content) {
        self.step = step
        self.epoch = epoch
        self.batchInEpoch = batchInEpoch
        self.content = content
    }
}

/// Where a run continues from: the state stored after `step`, and the running sums of the epoch it
/// interrupts (its training loss and accuracy so far), which the per-step series determine.
public struct ResumePoint: Sendable {
    public let step: Int
    public let model: [TensorValues]
    public let momentumBuffers: [TensorValues]
    public var epochLossSum: Double
    public var epochCorrect: Int
    public var epochSamples: Int

    public init(step: Int, model: [TensorValues], momentumBuffers: [TensorValues], epochLossSum: Double, epochCorrect: Int, epochSamples: Int) {
        self.step = step
        self.model = model
        self.momentumBuffers = momentumBuffers
        self.epochLossSum = epochLossSum
        self.epochCorrect = epochCorrect
        self.epochSamples = epochSamples
    }
}

/// The seeded split of the training file.
public struct DataSplit: Sendable {
    public let train: [Int32]
    public let validation: [Int32]

    public init(train: [Int32], validation: [Int32]) {
        self.train = train
        self.validation = validation
    }
}

/// What the trainer reports as it goes; the recorder and the console printer are observers. They receive
/// values, never the model.
public protocol TrainingObserver: AnyObject {
    /// Whether this observer uses the probes (`StepOutcome.probes`, `forwardProbed`); computing them costs
    /// a pass over every activation and gradient, so the trainer does it only when someone asks.
    var wantsProbes: Bool { get }
    func runStarted(plan: RunPlan, split: DataSplit, layout: ModelLayout) throws
    /// Training continues from a stored state after `step` (instead of `runStarted`).
    func runResumed(plan: RunPlan, after step: Int) throws
    /// The probes of the first forward pass (the first test batch of the evaluation before training), in
    /// `ModelLayout.forwardProbePoints` order; sent just before `evaluated(.before, …)`.
    func forwardProbed(_ probes: [Probe]) throws
    func evaluated(_ phase: EvaluationPhase, train: Metrics, validation: Metrics, test: Metrics) throws
    /// The order of an epoch that training starts, or continues inside after a resume.
    func epochStarted(_ epoch: Int, order: [Int32]) throws
    func stepFinished(_ outcome: StepOutcome) throws
    func epochFinished(_ epoch: Int, train: Metrics, validation: Metrics) throws
    func stateCaptured(_ state: StateCapture) throws
}

extension TrainingObserver {
    public var wantsProbes: Bool { false }
    public func forwardProbed(_ probes: [Probe]) throws {}
    public func runStarted(plan: RunPlan, split: DataSplit, layout: ModelLayout) throws {}
    public func runResumed(plan: RunPlan, after step: Int) throws {}
    public func evaluated(_ phase: EvaluationPhase, train: Metrics, validation: Metrics, test: Metrics) throws {}
    public func epochStarted(_ epoch: Int, order: [Int32]) throws {}
    public func stepFinished(_ outcome: StepOutcome) throws {}
    public func epochFinished(_ epoch: Int, train: Metrics, validation: Metrics) throws {}
    public func stateCaptured(_ state: StateCapture) throws {}
}

public enum EvaluationPhase: String, Sendable, CaseIterable { case before, after }

/// A stored state that does not fit the model it should be loaded into.
public struct ResumeError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Training itself failed: the numbers became unusable at a step. When verify re-runs a golden, this is
/// drift at that step, not bad input.
public enum TrainingError: Error, CustomStringConvertible {
    case batchNorm(BatchNormError, step: Int)
    case nonFiniteLoss(Float, step: Int)

    /// The step at which training failed (0: the evaluation before training).
    public var step: Int {
        switch self {
        case .batchNorm(_, let step), .nonFiniteLoss(_, let step): return step
        }
    }

    public var description: String {
        switch self {
        case let .batchNorm(error, step): return "training step \(step): \(error)"
        case let .nonFiniteLoss(loss, step): return "training step \(step): the loss is \(loss)"
        }
    }
}

/// The notebook's main(), top to bottom: split, initialize, evaluate, train epoch by epoch (evaluating
/// validation after each), evaluate again. Every random choice comes from the seed's Philox streams.
public struct Trainer {
    public let config: RunConfig
    public let data: ImageDataset
    /// Where a planted fault or a round-off replica enters; a real run's hooks (`NoFault`) change nothing.
    public var hooks: any TrainingHooks = NoFault()

    public init(config: RunConfig, data: ImageDataset) {
        self.config = config
        self.data = data
    }

    public static func kernels(_ choice: KernelChoice, threads: Int = 1) -> any Kernels {
        switch choice {
        case .blas: return BLASKernels(threads: threads)
        case .portable: return PortableKernels(threads: threads)
        }
    }

    /// Runs the notebook's main(): from the seeded initialization, or from `start` (a stored state, nothing
    /// before it is reported again), through step `last` and everything that happens at it (its state
    /// capture, the end of its epoch, the evaluation after training) — by default to the end.
    public func run(observers: [TrainingObserver], from start: ResumePoint? = nil, through last: Int? = nil) throws {
        OpenBLAS.setThreadCount(config.threads)
        let kernels = hooks.kernels(Self.kernels(config.kernels, threads: config.threads))
        let (train, validation) = DataOrder.trainValidationSplit(count: data.train.count, seed: config.seed)
        let split = DataSplit(train: train, validation: validation)
        let plan = RunPlan(config: config, trainCount: split.train.count)
        let last = min(last ?? plan.totalSteps, plan.totalSteps)

        let model = LeNet5<Float>(normalized: config.norm, batchNorm: config.batchNorm, kernels: kernels)
        model.initialize(seed: config.seed)
        if start == nil { hooks.initialized(model) }
        model.hooks = hooks
        let layout = model.layout, probing = observers.contains { $0.wantsProbes }
        try hooks.check(layout)
        let trace = StepTrace(threads: config.threads)
        let optimizer = SGD(parameters: model.parameters, options: SGDOptions(
            learningRate: config.learningRate, momentum: config.momentum, weightDecay: config.weightDecay))
        var step = 0
        var lossSum = 0.0, correct = 0, samples = 0
        if let start {
            try Self.restore(start, into: model, optimizer: optimizer)
            step = start.step
            try observers.forEach { try $0.runResumed(plan: plan, after: step) }
            (lossSum, correct, samples) = (start.epochLossSum, start.epochCorrect, start.epochSamples)
        } else {
            try observers.forEach { try $0.runStarted(plan: plan, split: split, layout: layout) }
            try evaluateAll(.before, model: model, split: split, step: 0, observers: observers,
                            probing: probing ? layout.forwardProbePoints : nil)
            try capture(after: 0, plan: plan, model: model, optimizer: optimizer, observers: observers)
        }

        var epoch = plan.cursor(afterStep: step).epoch
        while step < last {
            var order = DataOrder.epochOrder(trainIndices: split.train, epoch: epoch, seed: config.seed)
            hooks.order(&order, epoch: epoch)
            // Also when a resumed run continues inside the epoch: a window re-derives the order it trains with.
            try observers.forEach { try $0.epochStarted(epoch, order: order) }
            while step < plan.endOfEpoch(epoch) && step < last {
                let b = step - epoch * plan.stepsPerEpoch
                let indices = order[(b * config.batchSize)..<((b + 1) * config.batchSize)]
                var batch = data.batch(data.train, indices: indices, threads: config.threads)
                hooks.batchLoaded(&batch.x.data)
                let result: StepResult<Float>
                // The golden profile keeps probes inside the windows only.
                let probed = probing && plan.isKept(step + 1, profile: config.profile)
                if probed { trace.reset(); model.trace = trace }
                defer { model.trace = nil }
                do { result = try model.trainStep(batch.x, targets: batch.labels, optimizer: optimizer) }
                catch { throw TrainingError.batchNorm(error, step: step + 1) }
                if probed { precondition(trace.points == layout.trace, "the step's trace is not the layout's") }
                step += 1
                guard result.loss.isFinite else { throw TrainingError.nonFiniteLoss(result.loss, step: step) }
                lossSum += Double(result.loss) * Double(indices.count)
                correct += result.correct
                samples += indices.count
                let outcome = StepOutcome(step: step, loss: result.loss, correct: result.correct, batchSize: indices.count,
                                          batchNorm: model.batchNormStatistics, probes: probed ? trace.probes : nil)
                try observers.forEach { try $0.stepFinished(outcome) }
                if plan.capturesState(step) {
                    try capture(after: step, plan: plan, model: model, optimizer: optimizer, observers: observers)
                }
            }
            guard step == plan.endOfEpoch(epoch) else { break }  // stopped inside the epoch
            var train = Metrics(loss: lossSum / Double(samples), accuracy: 100 * Double(correct) / Double(samples), samples: samples)
            var validation = try evaluate(model, data.train, indices: split.validation, dropLast: false, step: step)
            hooks.epochMetrics(train: &train, validation: &validation, epoch: epoch)
            try observers.forEach { try $0.epochFinished(epoch, train: train, validation: validation) }
            (lossSum, correct, samples) = (0, 0, 0)
            epoch += 1
        }
        if step == plan.totalSteps && last == plan.totalSteps {
            try evaluateAll(.after, model: model, split: split, step: step, observers: observers, probing: nil)
        }
    }

    /// Loads a stored state into a fresh model and optimizer; the tensors must be the model's own.
    static func restore(_ start: ResumePoint, into model: LeNet5<Float>, optimizer: SGD<Float>) throws {
        let state = model.stateDict
        guard start.model.map(\.name) == state.map(\.name), zip(start.model, state).allSatisfy({ $0.values.count == $1.count }) else {
            throw ResumeError("the stored state does not match the model's state_dict")
        }
        for (stored, tensor) in zip(start.model, state) { tensor.value = stored.values }
        if start.momentumBuffers.isEmpty {
            optimizer.momentumBuffers = []
        } else {
            guard start.momentumBuffers.map(\.name) == optimizer.parameters.map(\.name),
                  zip(start.momentumBuffers, optimizer.parameters).allSatisfy({ $0.values.count == $1.count }) else {
                throw ResumeError("the stored momentum buffers do not match the model's parameters")
            }
            optimizer.momentumBuffers = start.momentumBuffers.map(\.values)
        }
    }

    func capture(after step: Int, plan: RunPlan, model: LeNet5<Float>, optimizer: SGD<Float>, observers: [TrainingObserver]) throws {
        let (epoch, batchInEpoch) = plan.cursor(afterStep: step)
        let state = StateCapture(
            step: step, epoch: epoch, batchInEpoch: batchInEpoch,
            content: .tensors(model: model.stateDict.map { TensorValues(name: $0.name, shape: $0.shape, values: $0.value) },
                              momentumBuffers: zip(optimizer.parameters, optimizer.momentumBuffers).map {
                                  TensorValues(name: $0.name, shape: $0.shape, values: $1)
                              }))
        try observers.forEach { try $0.stateCaptured(state) }
    }

    /// How many samples each evaluation sees (train, validation, test): the evaluation limit, and for the
    /// training set full batches only.
    public static func evaluationSizes(config: RunConfig, train: Int, validation: Int, test: Int) -> [Int] {
        let limit = { (n: Int) in min(n, config.evaluationLimit ?? n) }
        return [limit(train) / config.batchSize * config.batchSize, limit(validation), limit(test)]
    }

    /// Train (in split order, drop_last as the notebook's train loader), validation and test in eval mode.
    /// `step`: the steps run so far, named if evaluation fails.
    /// `probing`: also probe the forward pass of the first test batch (`forwardProbed`), whose points these are.
    func evaluateAll(_ phase: EvaluationPhase, model: LeNet5<Float>, split: DataSplit, step: Int,
                     observers: [TrainingObserver], probing points: [TracePoint]?) throws {
        let train = try evaluate(model, data.train, indices: split.train, dropLast: true, step: step)
        let validation = try evaluate(model, data.train, indices: split.validation, dropLast: false, step: step)
        let trace = points == nil ? nil : StepTrace(threads: config.threads)
        let test = try evaluate(model, data.test, indices: (0..<Int32(data.test.count)).map { $0 }, dropLast: false, step: step,
                                tracingFirstBatch: trace)
        if let trace {
            precondition(trace.points == points, "the forward's trace is not the layout's")
            try observers.forEach { try $0.forwardProbed(trace.probes) }
        }
        try observers.forEach { try $0.evaluated(phase, train: train, validation: validation, test: test) }
    }

    /// Batches of the batch size in the given order; the last partial batch is kept unless dropLast.
    func evaluate(_ model: LeNet5<Float>, _ split: ImageSplit, indices allIndices: [Int32], dropLast: Bool, step: Int,
                  tracingFirstBatch trace: StepTrace? = nil) throws -> Metrics {
        let indices = config.evaluationLimit.map { Array(allIndices.prefix($0)) } ?? allIndices
        var lossSum = 0.0, correct = 0, samples = 0
        var start = 0
        while start < indices.count {
            let end = min(start + config.batchSize, indices.count)
            if dropLast && end - start < config.batchSize { break }
            var batch = data.batch(split, indices: indices[start..<end], threads: config.threads)
            hooks.batchLoaded(&batch.x.data)
            let result: StepResult<Float>
            model.trace = start == 0 ? trace : nil
            defer { model.trace = nil }
            do { result = try model.evaluate(batch.x, targets: batch.labels) }
            catch { throw TrainingError.batchNorm(error, step: step) }
            lossSum += Double(result.loss) * Double(end - start)
            correct += result.correct
            samples += end - start
            start = end
        }
        return Metrics(loss: lossSum / Double(max(samples, 1)), accuracy: 100 * Double(correct) / Double(max(samples, 1)), samples: samples)
    }
}
