import Foundation
import ReproData
import ReproKernels
import ReproNN
import ReproRecording
import ReproTraining

/// A golden, record or data file that cannot be used: exit code 2.
public struct UnusableInput: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Re-runs a golden's own configuration and compares the new record with it. Never writes the golden:
/// the re-run goes to a temporary file that is removed afterwards.
public struct Verifier {
    /// Where the data are; nil: the dataset's default folder (`Data/mnist`, `Data/svhn`).
    public var dataDirectory: String?
    public var override: ComparisonMode?
    /// Threads for the re-run; nil uses the golden's (for portable goldens: the machine's cores, same bits).
    public var threads: Int?
    /// The BatchNorm check table stored in the re-run record (the caller has already run the checks).
    public var checks: [CheckRow]
    /// A deliberate change to the re-run, to show that verify reports it (negative controls of the tests
    /// and of `verify --inject-fault`); nil for a real verification.
    public var fault: RerunFault?
    /// Re-run with this kernel set instead of the golden's (judged by the golden's envelope); nil: the golden's.
    public var kernels: KernelChoice?
    /// The envelope's safety factor (`TolerancePolicy.envelopeSafetyFactor`; 0 in the negative controls).
    public var envelopeFactor = TolerancePolicy.envelopeSafetyFactor

    public enum RerunFault: String, CaseIterable, Sendable {
        /// The re-run's learning rate becomes infinite: every weight turns non-finite after step 1, so
        /// training fails at step 2 with a non-finite loss.
        case infiniteLearningRate = "infinite-learning-rate"
        /// The re-run's BatchNorm momentum becomes 0.899: drift from step 1 on.
        case batchNormMomentum = "batchnorm-momentum"
        /// Regressions that act only from epoch 1 on (`PlantedFault`): invisible to a golden of
        /// epoch 0's first steps, caught by a full-length one.
        case laterShuffle = "later-shuffle"
        case laterEpochMetric = "later-epoch-metric"
        case laterValidation = "later-validation"
        /// Localization demonstrations (`PlantedFault`): conv2's forward accumulating in another
        /// order (first seen at step 0, forward of conv2), bn2's ∂γ × (1 + 1e-3) (step 1, backward of bn2),
        /// no weight decay (step 1, the update pass).
        case reorderedConv2Forward = "reordered-conv2-forward"
        case batchNormGammaGradient = "bn2-gamma-gradient"
        case noWeightDecay = "no-weight-decay"
        /// A legitimate change: every GEMM sums over k in reverse (within round-off, never drift).
        case reversedGEMM = "reversed-k-gemm"
        /// Regressions of the envelope's proof (docs/verifying.md): SGD, BatchNorm, data, initialization, loss.
        case learningRate = "learning-rate"                // × 1.0001
        case momentum = "momentum"                         // 0.9 → 0.9001
        case weightDecayTenfold = "weight-decay-tenfold"   // 1e-6 → 1e-5
        case batchNormEpsilon = "bn-epsilon"               // an ε of 1e-5 under the square root
        case batchNormBiasedVariance = "bn-biased-variance" // the variance divided by m instead of m − 1
        case batchNormRunningMomentum = "bn-running-momentum" // 0.9 → 0.9001
        case batchNormBetaGradient = "bn3-beta-gradient"   // ∂β × (1 + 1e-3)
        case inputNormalization = "input-normalization"    // the input's scale × (1 + 1e-4)
        case firstSampleSwapped = "first-sample-swapped"   // epoch 0's first and last samples swapped
        case initialWeight = "initial-weight"              // conv1.weight × (1 + 1e-4) at initialization
        case lossGradient = "loss-gradient"                // ∂loss/∂logits × N/(N + 1)

        func apply(to config: inout RunConfig) {
            switch self {
            case .infiniteLearningRate: config.learningRate = .infinity
            case .batchNormMomentum: config.batchNorm.momentum = 0.899
            case .noWeightDecay: config.weightDecay = 0
            case .learningRate: config.learningRate *= 1.0001
            case .momentum: config.momentum = 0.9001
            case .weightDecayTenfold: config.weightDecay *= 10
            case .batchNormEpsilon: config.batchNorm.epsilon = 1e-5
            case .batchNormBiasedVariance: config.batchNorm.unbiased = false
            case .batchNormRunningMomentum: config.batchNorm.momentum += 1e-4
            default: break
            }
        }

        /// `factor`: the size of a scaled gradient's change (1 + factor), for the detection floor; nil: 1e-3.
        func plantedFault(factor: Double?) -> PlantedFault? {
            switch self {
            case .laterShuffle: return .shuffle(fromEpoch: 1)
            case .laterEpochMetric: return .epochTrainingMetric(fromEpoch: 1)
            case .laterValidation: return .validation(fromEpoch: 1)
            case .reorderedConv2Forward: return .conv2ForwardReordered
            case .batchNormGammaGradient: return .batchNormGammaGradient(layer: "bn2", factor: Float(1 + (factor ?? 1e-3)))
            case .batchNormBetaGradient: return .batchNormBetaGradient(layer: "bn3", factor: Float(1 + (factor ?? 1e-3)))
            case .reversedGEMM: return .gemmReversed
            case .inputNormalization: return .inputScaled(factor: 1 + 1e-4)
            case .firstSampleSwapped: return .firstSampleSwapped
            case .initialWeight: return .initialTensor(name: "conv1.weight", factor: 1 + 1e-4)
            case .lossGradient: return .lossGradient(factor: 128.0 / 129.0)
            default: return nil
            }
        }
    }

    /// With `fault`: the scale of a scaled gradient (`RerunFault.plantedFault(factor:)`).
    public var faultFactor: Double?
    var hooks: any TrainingHooks { fault?.plantedFault(factor: faultFactor) ?? NoFault() }

    public init(dataDirectory: String?, checks: [CheckRow], override: ComparisonMode? = nil, threads: Int? = nil) {
        self.dataDirectory = dataDirectory
        self.checks = checks
        self.override = override
        self.threads = threads
    }

    /// Verifies one golden: by re-running the chosen windows from its stored checkpoints (default: all of
    /// them), or `.full`y by one end-to-end re-run.
    public func verify(_ goldenPath: String, windows selection: WindowSelection = .all, shard: Shard? = nil,
                       observers: [TrainingObserver] = []) throws(UnusableInput) -> ComparisonReport {
        let golden: Record
        do { golden = try Record(path: goldenPath) } catch { throw UnusableInput(error.description) }
        var config = golden.config
        if let kernels { config.kernels = kernels }
        if let threads { config.threads = threads }
        else if config.kernels == .portable { config.threads = min(ProcessInfo.processInfo.activeProcessorCount, 8) }
        fault?.apply(to: &config)
        let data: ImageDataset
        let directory = dataDirectory ?? golden.config.dataset.defaultDirectory
        do { data = try ImageDataset.load(golden.config.dataset, directory: directory) } catch { throw UnusableInput(error.description) }
        for (mine, recorded) in zip(data.fingerprints, golden.data.fingerprints) where mine.sha256 != recorded.sha256 {
            throw UnusableInput("\(directory)/\(mine.file): not the data \(goldenPath) was recorded on (sha256 differs); pass --data-dir")
        }
        if selection == .full { return try verifyFully(golden, config: config, data: data, observers: observers) }

        let all = golden.plan.windows
        var chosen = all
        if case .count(let n) = selection { chosen = WindowSelection.choose(n, of: all, plan: golden.plan) }
        if let shard { chosen = shard.take(chosen) }
        OpenBLAS.setThreadCount(config.threads)  // as the trainer will: the environment facts include the count
        let (mode, reason) = resolve(golden, here: EnvironmentFacts(current: config.kernels))
        var results = [SeriesResult](), failure: Divergence?
        var candidateLoss = [(step: Int, loss: Float)]()
        let replay = RecordReplay(golden)
        for window in chosen {
            let capture = CapturedRun()
            do {
                let start = window.start == 0 ? nil : try replay.resumePoint(at: window.start)
                var trainer = Trainer(config: config, data: data)
                trainer.hooks = hooks
                try trainer.run(observers: observers + [capture], from: start, through: window.end)
            } catch let stop as TrainingError {
                let d = Divergence(step: stop.step, stage: .trainingFailure, index: 0,
                                   description: "\(window): the re-run failed at step \(stop.step): \(stop)", window: window.index)
                if failure.map({ d < $0 }) ?? true { failure = d }
            } catch {
                throw UnusableInput("\(goldenPath): \(window) cannot be re-run: \(error)")
            }
            candidateLoss += capture.steps.map { ($0.step, $0.loss) }
            do {
                results += try capture.compare(with: golden, mode: mode, factor: envelopeFactor).map { result in
                    var tagged = result
                    tagged.firstDivergence?.window = window.index
                    tagged.firstDivergence?.description = "\(window): " + (result.firstDivergence?.description ?? "")
                    return tagged
                }
            } catch { throw UnusableInput(error.description) }
        }
        var report = ComparisonReport(golden: golden.path, candidate: "re-run of \(chosen.count) window(s)", mode: mode,
                                      modeReason: reason, series: mergedByPath(results), trainingFailure: failure)
        report.windows = WindowsVerified(verified: chosen, total: all.count, shard: shard)
        report.envelopeReplicas = golden.envelopeReplicas
        report.envelopeFactor = envelopeFactor
        report.tracePlaces = golden.layout.trace.map(\.description)
        do { report.lossCurves = LossCurves(golden: try LossCurves.of(golden), candidate: candidateLoss) }
        catch { throw UnusableInput(error.description) }
        return report
    }

    /// One end-to-end re-run into a temporary record, compared with the golden dataset by dataset.
    func verifyFully(_ golden: Record, config: RunConfig, data: ImageDataset, observers: [TrainingObserver]) throws(UnusableInput) -> ComparisonReport {
        let folder = NSTemporaryDirectory() + "repro-verify-\(getpid())"
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        catch { throw UnusableInput("\(folder): cannot create the folder for the re-run (\(error.localizedDescription))") }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let rerunPath = folder + "/rerun.h5"
        let capture = CapturedRun()
        do {
            try Recording.record(config: config, data: data, to: rerunPath, checks: checks, observers: observers + [capture],
                                 hooks: hooks)
        } catch let stop as TrainingError {
            // The steps before the failure are compared; the failure itself diverges at its step.
            let series: [SeriesResult]
            do { series = try capture.compare(with: golden, mode: .exact, factor: envelopeFactor) } catch { throw UnusableInput(error.description) }
            let d = Divergence(step: stop.step, stage: .trainingFailure, index: 0,
                               description: "the re-run failed at step \(stop.step): \(stop)")
            var report = ComparisonReport(golden: golden.path, candidate: rerunPath, mode: .exact,
                                          modeReason: "the re-run stopped at step \(stop.step), so only what came before it was compared",
                                          series: series, trainingFailure: d)
            report.lossCurves = try? LossCurves(golden: LossCurves.of(golden), candidate: capture.steps.map { ($0.step, $0.loss) })
            report.envelopeReplicas = golden.envelopeReplicas
            return report
        } catch {
            throw UnusableInput("\(golden.path): the re-run could not be recorded: \(error)")
        }
        let candidate: Record
        do { candidate = try Record(path: rerunPath) } catch { throw UnusableInput("re-run record: \(error.description)") }
        let (mode, reason) = resolve(golden, here: candidate.environment)
        do { return try Comparison.compare(golden: golden, candidate: candidate, mode: mode, reason: reason, factor: envelopeFactor) }
        catch { throw UnusableInput(error.description) }
    }

    /// The comparison mode for `golden` re-run (or recorded) in environment `here`, with the reason.
    func resolve(_ golden: Record, here: EnvironmentFacts) -> (mode: ComparisonMode, reason: String) {
        var (mode, reason) = TolerancePolicy.resolve(stored: golden.policy, kernels: golden.config.kernels, goldenEnvironment: golden.environment,
                                                     here: here, override: override, hasEnvelope: golden.envelopeReplicas != nil,
                                                     otherKernels: kernels)
        if mode.isEnvelope { mode = .envelope(factor: envelopeFactor) }
        return (mode, reason)
    }

    /// `repro compare`: two existing records, no re-run; the policy is the first one's, and the candidate's
    /// kernels count as a re-run's (`--kernels`): a candidate of the other kernel set is judged by the envelope.
    public static func compare(_ goldenPath: String, _ candidatePath: String, override: ComparisonMode?,
                               factor: Double = TolerancePolicy.envelopeSafetyFactor) throws(UnusableInput) -> ComparisonReport {
        do {
            let golden = try Record(path: goldenPath), candidate = try Record(path: candidatePath)
            var verifier = Verifier(dataDirectory: nil, checks: [], override: override)
            verifier.kernels = candidate.config.kernels
            verifier.envelopeFactor = factor
            let (mode, reason) = verifier.resolve(golden, here: candidate.environment)
            return try Comparison.compare(golden: golden, candidate: candidate, mode: mode, reason: reason, factor: verifier.envelopeFactor)
        } catch {
            throw UnusableInput(error.description)
        }
    }
}

