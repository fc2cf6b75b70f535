import ReproData
import ReproNN

/// The kernel implementations a run can use (see ReproKernels).
public enum KernelChoice: String, CaseIterable, Sendable {
    /// Fixed-order Swift kernels: the same bits on every machine and thread count.
    case portable
    /// im2col + OpenBLAS: bits depend on OpenBLAS's CPU kernel and thread count.
    case blas
}

/// What a record stores (docs/SCHEMA.md, "Profiles"). Neither changes a number.
public enum RecordProfile: String, CaseIterable, Sendable {
    /// Every per-step series for every step, every epoch's order.
    case complete
    /// Small enough to commit for a 50-epoch run: per-step loss and accuracy for every step, per-step
    /// BatchNorm series only inside the verification windows, each epoch's order as a SHA-256.
    case golden
}

/// Everything that determines a run's numbers, and how it is recorded. The defaults are the notebook's main() with norm=True:
/// the "mnist_bn" experiment.
public struct RunConfig: Sendable, Equatable {
    public var batchSize = 128
    public var learningRate = 0.01
    public var weightDecay = 1e-6
    public var momentum = 0.9
    public var epochs = 50
    public var dataset = DatasetName.mnist
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
    /// Threads of the kernels (and OpenBLAS). Portable kernels give the same bits for every count.
    public var threads = 1
    public var kernels = KernelChoice.portable
    public var batchNorm = BatchNormOptions.notebook
    /// What the record stores; never changes a number.
    public var profile = RecordProfile.complete
    /// Steps of each verification window, which starts at a checkpoint; nil runs each window up to the next
    /// checkpoint (so windows cover the whole run). Never changes a number.
    public var windowSteps: Int?

    public init() {}

    /// The accepted range of every number, shared by the command line (which refuses anything else with
    /// exit 2) and the record reader (which refuses a record that states anything else). The bounds are
    /// sanity bounds, not tuning advice: wide enough for any real run, narrow enough that a damaged or
    /// hostile value cannot make a run or a reader allocate or loop without end.
    public enum Limits {
        /// BatchNorm needs two samples; 65,536 is far above any batch LeNet-5 is trained with.
        public static let batchSize = 2...65_536
        public static let epochs = 1...10_000
        /// max_steps, checkpoint_every and evaluation_limit (each also "none").
        public static let count = 1...100_000_000
        public static let threads = 1...256
        /// Strictly positive and finite; 10 is two orders of magnitude above the notebook's 0.01.
        public static let learningRate = Double.leastNonzeroMagnitude...10
        public static let weightDecay = 0.0...1
        /// PyTorch's SGD allows momentum in [0, 1]; 1 never decays, so it is refused.
        public static let momentum = 0.0...Double(1).nextDown
        public static let batchNormMomentum = 0.0...1
        public static let batchNormEpsilon = 0.0...1
        public static let nameBytes = 1...64
        /// Run names become file names (runs/<name>.h5): letters, digits, '.', '_' and '-'.
        public static func isValidName(_ name: String) -> Bool {
            nameBytes.contains(name.utf8.count) && name.first != "." && name.utf8.allSatisfy {
                (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) || $0 == 46 || $0 == 95 || $0 == 45
            }
        }
    }
}

/// A run's derived sizes.
public struct RunPlan: Sendable, Equatable {
    public let trainCount: Int
    public let stepsPerEpoch: Int
    public let totalSteps: Int
    public let epochsStarted: Int
    public let checkpointEvery: Int

    /// Steps per verification window (nil: up to the next checkpoint).
    public let windowSteps: Int?

    public init(config: RunConfig, trainCount: Int) {
        self.trainCount = trainCount
        windowSteps = config.windowSteps
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

    /// Every checkpoint step, in order.
    public var checkpointSteps: [Int] {
        Array(stride(from: 0, through: totalSteps, by: checkpointEvery)) + (totalSteps % checkpointEvery == 0 ? [] : [totalSteps])
    }

    /// The verification windows: one from each checkpoint (but the last) for `windowSteps` steps, never past
    /// the next checkpoint, and one for the evaluation after training when no other window ends at the
    /// last step. Everything that happens at a step (its checkpoint, the end of an epoch, the evaluation
    /// after training) belongs to the window that ends there; window 0 also holds the initialization, the
    /// evaluation before training and checkpoint 0.
    public var windows: [TrainingWindow] {
        let steps = checkpointSteps
        var out = [TrainingWindow]()
        for (i, start) in steps.dropLast().enumerated() {
            out.append(TrainingWindow(index: out.count, start: start, end: windowSteps.map { min(start + $0, steps[i + 1]) } ?? steps[i + 1]))
        }
        if out.last?.end != totalSteps { out.append(TrainingWindow(index: out.count, start: totalSteps, end: totalSteps)) }
        return out
    }

    /// Window ends that are not checkpoints, in order: the state there is kept as digests.
    public var windowEndsBetweenCheckpoints: [Int] { windows.map(\.end).filter { !isCheckpoint($0) } }

    /// Steps whose state observers receive: checkpoints and window ends.
    public func capturesState(_ step: Int) -> Bool {
        isCheckpoint(step) || (windowSteps.map { step % checkpointEvery == $0 && $0 < checkpointEvery } ?? false)
    }

    /// Whether step `step`'s values fall inside a window (steps start + 1 … end).
    public func isInWindow(_ step: Int) -> Bool {
        guard let windowSteps else { return true }
        // The window that holds a step starts at the last checkpoint before it.
        let start = step <= 0 ? 0 : (step - 1) / checkpointEvery * checkpointEvery
        return step > start && step <= start + windowSteps
    }

    /// Whether a record of this profile keeps step `step`'s BatchNorm series and probes (the golden profile:
    /// inside the windows only).
    public func isKept(_ step: Int, profile: RecordProfile) -> Bool { profile == .complete || isInWindow(step) }

    /// The last step of the epoch `epoch` (an epoch cut short by max_steps ends at the last step).
    public func endOfEpoch(_ epoch: Int) -> Int { min((epoch + 1) * stepsPerEpoch, totalSteps) }

    /// Where the data cursor stands after `step` steps: the epoch and the batch within it that come next.
    public func cursor(afterStep step: Int) -> (epoch: Int, batchInEpoch: Int) {
        stepsPerEpoch == 0 ? (0, 0) : (step / stepsPerEpoch, step % stepsPerEpoch)
    }
}

/// A stretch of a run that can be re-run on its own: from the state stored at `start` through step `end`.
public struct TrainingWindow: Sendable, Equatable, CustomStringConvertible {
    public let index: Int
    public let start: Int
    public let end: Int
    public var description: String { start == end ? "window \(index) (after step \(end))" : "window \(index) (steps \(start + 1)–\(end))" }
}
