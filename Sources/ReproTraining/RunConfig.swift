import ReproNN

/// Everything that determines a run's numbers (and its output path). The defaults are the notebook's
/// main() with norm=True: the "mnist_bn" experiment.
public struct RunConfig: Sendable {
    public var batchSize = 128
    public var learningRate = 0.01
    public var weightDecay = 1e-6
    public var momentum = 0.9
    public var epochs = 50
    public var dataset = "mnist"
    public var norm = true
    public var name = "mnist_bn"
    public var seed: UInt64 = 0
    /// Stop after this many optimizer steps (short goldens); nil runs every epoch.
    public var maxSteps: Int?
    /// Checkpoint every this many steps; nil means once per epoch.
    public var checkpointEvery: Int?
    /// Evaluate only the first this-many samples of each set (train, validation, test); nil evaluates all,
    /// as the notebook does. Short goldens use it to keep `repro verify` fast.
    public var evaluationLimit: Int?
    public var threads = 1
    public var kernels = "portable"
    public var batchNorm = BatchNormOptions.notebook
    public var dataDirectory = "Data/mnist"
    public var output = "runs/mnist_bn.h5"

    public init() {}
}

/// A run's derived sizes.
public struct RunPlan: Sendable {
    public let trainCount: Int
    public let stepsPerEpoch: Int
    public let totalSteps: Int
    public let epochsStarted: Int
    public let checkpointEvery: Int

    public init(config: RunConfig, trainCount: Int) {
        self.trainCount = trainCount
        stepsPerEpoch = trainCount / config.batchSize
        let full = stepsPerEpoch * config.epochs
        totalSteps = min(full, config.maxSteps ?? full)
        epochsStarted = stepsPerEpoch == 0 ? 0 : (totalSteps + stepsPerEpoch - 1) / stepsPerEpoch
        checkpointEvery = config.checkpointEvery ?? max(stepsPerEpoch, 1)
    }

    /// Step 0, every `checkpointEvery` steps, and the last step.
    public func isCheckpoint(_ step: Int) -> Bool {
        step == 0 || step % checkpointEvery == 0 || step == totalSteps
    }
}
