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
}

/// What the trainer reports as it goes; the recorder and the console printer are observers.
public protocol TrainingObserver: AnyObject {
    func runStarted(plan: RunPlan, split: (train: [Int32], validation: [Int32]), model: LeNet5<Float>) throws
    func evaluated(_ phase: EvaluationPhase, train: Metrics, validation: Metrics, test: Metrics) throws
    func epochStarted(_ epoch: Int, order: [Int32]) throws
    func stepFinished(_ step: Int, loss: Float, correct: Int, batch: Int, model: LeNet5<Float>) throws
    func epochFinished(_ epoch: Int, train: Metrics, validation: Metrics) throws
    func checkpoint(step: Int, epoch: Int, batchInEpoch: Int, model: LeNet5<Float>, optimizer: SGD<Float>) throws
}

public enum EvaluationPhase: String, Sendable { case before, after }

public enum TrainingError: Error, CustomStringConvertible {
    case unknownKernels(String)
    case batchNorm(BatchNormError, step: Int)

    public var description: String {
        switch self {
        case .unknownKernels(let name): return "unknown kernels '\(name)' (available: \(Trainer.kernelNames.joined(separator: ", ")))"
        case let .batchNorm(error, step): return "training step \(step): \(error)"
        }
    }
}

/// The notebook's main(), top to bottom: split, initialize, evaluate, train epoch by epoch (evaluating
/// validation after each), evaluate again. Every random choice comes from the seed's Philox streams.
public struct Trainer {
    public let config: RunConfig
    public let data: MNIST

    public init(config: RunConfig, data: MNIST) {
        self.config = config
        self.data = data
    }

    public static let kernelNames = ["portable", "blas"]

    public static func kernels(named name: String, threads: Int = 1) throws(TrainingError) -> any Kernels {
        switch name {
        case "blas": return BLASKernels(threads: threads)
        case "portable": return PortableKernels(threads: threads)
        default: throw TrainingError.unknownKernels(name)
        }
    }

    public func run(observers: [TrainingObserver]) throws {
        OpenBLAS.setThreadCount(config.threads)
        let kernels = try Self.kernels(named: config.kernels, threads: config.threads)
        let split = DataOrder.trainValidationSplit(count: data.train.count, seed: config.seed)
        let plan = RunPlan(config: config, trainCount: split.train.count)

        let model = LeNet5<Float>(normalized: config.norm, batchNorm: config.batchNorm, kernels: kernels)
        model.initialize(seed: config.seed)
        let optimizer = SGD(parameters: model.parameters, options: SGDOptions(
            learningRate: config.learningRate, momentum: config.momentum, weightDecay: config.weightDecay))
        try observers.forEach { try $0.runStarted(plan: plan, split: split, model: model) }

        try evaluateAll(.before, model: model, split: split, observers: observers)
        for o in observers { try o.checkpoint(step: 0, epoch: 0, batchInEpoch: 0, model: model, optimizer: optimizer) }

        var step = 0
        for epoch in 0..<plan.epochsStarted {
            let order = DataOrder.epochOrder(trainIndices: split.train, epoch: epoch, seed: config.seed)
            try observers.forEach { try $0.epochStarted(epoch, order: order) }
            var lossSum = 0.0, correct = 0, samples = 0
            for b in 0..<plan.stepsPerEpoch where step < plan.totalSteps {
                let indices = order[(b * config.batchSize)..<((b + 1) * config.batchSize)]
                let batch = MNISTTransform.batch(data.train, indices: indices)
                let result: StepResult<Float>
                do { result = try model.trainStep(batch.x, targets: batch.labels, optimizer: optimizer) }
                catch { throw TrainingError.batchNorm(error, step: step + 1) }
                step += 1
                lossSum += Double(result.loss) * Double(indices.count)
                correct += result.correct
                samples += indices.count
                try observers.forEach { try $0.stepFinished(step, loss: result.loss, correct: result.correct, batch: indices.count, model: model) }
                if plan.isCheckpoint(step) {
                    for o in observers {
                        try o.checkpoint(step: step, epoch: epoch + (b + 1) / plan.stepsPerEpoch,
                                         batchInEpoch: (b + 1) % plan.stepsPerEpoch, model: model, optimizer: optimizer)
                    }
                }
            }
            let train = Metrics(loss: lossSum / Double(samples), accuracy: 100 * Double(correct) / Double(samples), samples: samples)
            let validation = try evaluate(model, data.train, indices: split.validation, dropLast: false)
            try observers.forEach { try $0.epochFinished(epoch, train: train, validation: validation) }
        }
        try evaluateAll(.after, model: model, split: split, observers: observers)
    }

    /// Train (in split order, drop_last as the notebook's train loader), validation and test in eval mode.
    func evaluateAll(_ phase: EvaluationPhase, model: LeNet5<Float>, split: (train: [Int32], validation: [Int32]),
                     observers: [TrainingObserver]) throws {
        let train = try evaluate(model, data.train, indices: split.train, dropLast: true)
        let validation = try evaluate(model, data.train, indices: split.validation, dropLast: false)
        let test = try evaluate(model, data.test, indices: (0..<Int32(data.test.count)).map { $0 }, dropLast: false)
        try observers.forEach { try $0.evaluated(phase, train: train, validation: validation, test: test) }
    }

    /// Batches of the batch size in the given order; the last partial batch is kept unless dropLast.
    func evaluate(_ model: LeNet5<Float>, _ split: MNISTSplit, indices allIndices: [Int32], dropLast: Bool) throws -> Metrics {
        let indices = config.evaluationLimit.map { Array(allIndices.prefix($0)) } ?? allIndices
        var lossSum = 0.0, correct = 0, samples = 0
        var start = 0
        while start < indices.count {
            let end = min(start + config.batchSize, indices.count)
            if dropLast && end - start < config.batchSize { break }
            let batch = MNISTTransform.batch(split, indices: indices[start..<end])
            let result: StepResult<Float>
            do { result = try model.evaluate(batch.x, targets: batch.labels) }
            catch { throw TrainingError.batchNorm(error, step: 0) }
            lossSum += Double(result.loss) * Double(end - start)
            correct += result.correct
            samples += end - start
            start = end
        }
        return Metrics(loss: lossSum / Double(max(samples, 1)), accuracy: 100 * Double(correct) / Double(max(samples, 1)), samples: samples)
    }
}
