import Foundation
import ReproData
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
    public var dataDirectory: String
    public var override: ComparisonMode?
    /// Threads for the re-run; nil uses the golden's (for portable goldens: the machine's cores, same bits).
    public var threads: Int?
    /// The BatchNorm check table stored in the re-run record (the caller has already run the checks).
    public var checks: [CheckRow]
    /// A deliberate change to the re-run, to show that verify reports it (negative controls of the tests
    /// and of `verify --inject-fault`); nil for a real verification.
    public var fault: RerunFault?

    public enum RerunFault: String, CaseIterable, Sendable {
        /// The re-run's learning rate becomes infinite: every weight turns non-finite after step 1, so
        /// training fails at step 2 with a non-finite loss.
        case infiniteLearningRate = "infinite-learning-rate"
        /// The re-run's BatchNorm momentum becomes 0.899: drift from step 1 on.
        case batchNormMomentum = "batchnorm-momentum"

        func apply(to config: inout RunConfig) {
            switch self {
            case .infiniteLearningRate: config.learningRate = .infinity
            case .batchNormMomentum: config.batchNorm.momentum = 0.899
            }
        }
    }

    public init(dataDirectory: String, checks: [CheckRow], override: ComparisonMode? = nil, threads: Int? = nil) {
        self.dataDirectory = dataDirectory
        self.checks = checks
        self.override = override
        self.threads = threads
    }

    public func verify(_ goldenPath: String, observers: [TrainingObserver] = []) throws(UnusableInput) -> ComparisonReport {
        let golden: Record
        do { golden = try Record(path: goldenPath) } catch { throw UnusableInput(error.description) }
        var config = golden.config
        if let threads { config.threads = threads }
        else if config.kernels == .portable { config.threads = min(ProcessInfo.processInfo.activeProcessorCount, 8) }
        fault?.apply(to: &config)
        let data: MNIST
        do { data = try MNIST.load(directory: dataDirectory) } catch { throw UnusableInput(error.description) }
        for (mine, recorded) in zip(data.fingerprints, golden.data.fingerprints) where mine.sha256 != recorded.sha256 {
            throw UnusableInput("\(dataDirectory)/\(mine.file): not the data \(goldenPath) was recorded on (sha256 differs); pass --data-dir")
        }
        let folder = NSTemporaryDirectory() + "repro-verify-\(getpid())"
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        catch { throw UnusableInput("\(folder): cannot create the folder for the re-run (\(error.localizedDescription))") }
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let rerunPath = folder + "/rerun.h5"
        let capture = StepCapture()
        do {
            try Recording.record(config: config, data: data, to: rerunPath, checks: checks, observers: observers + [capture])
        } catch let failure as TrainingError {
            return Self.failedRerun(golden: golden, failure: failure, steps: capture.steps, candidate: rerunPath)
        } catch {
            throw UnusableInput("\(goldenPath): the re-run could not be recorded: \(error)")
        }
        let candidate: Record
        do { candidate = try Record(path: rerunPath) } catch { throw UnusableInput("re-run record: \(error.description)") }
        let (mode, reason) = TolerancePolicy.resolve(stored: golden.policy, kernels: config.kernels, goldenEnvironment: golden.environment,
                                                     here: candidate.environment, override: override)
        do { return try Comparison.compare(golden: golden, candidate: candidate, mode: mode, reason: reason) }
        catch { throw UnusableInput(error.description) }
    }

    /// The report of a re-run that stopped at a step: the steps it finished are compared with the golden's
    /// (an earlier difference is the first divergence), and the failure itself diverges at its step.
    static func failedRerun(golden: Record, failure: TrainingError, steps: [StepOutcome], candidate: String) -> ComparisonReport {
        let locator = Locator(record: golden)
        var series = [SeriesResult]()
        var captured: [(String, [Double])] = [(RecordSchema.stepLoss, steps.map { Double($0.loss) }),
                                              (RecordSchema.stepAccuracy, steps.map { Double($0.accuracy) })]
        for (i, bn) in golden.layout.batchNorms.enumerated() {
            for kind in RecordSchema.BatchNormSeries.recorded(by: bn) {
                let values: [Float] = steps.flatMap { s -> [Float] in
                    let statistics = s.batchNorm[i]
                    switch kind {
                    case .batchMean: return statistics.batchMean
                    case .batchStd: return statistics.batchStd
                    case .runningMean: return statistics.runningMean ?? []
                    case .runningStd: return statistics.runningStd ?? []
                    }
                }
                captured.append((RecordSchema.stepBatchNorm(bn.name, kind), values.map(Double.init)))
            }
        }
        for (path, values) in captured {
            guard let stored = try? golden.values(path) else { continue }
            let prefix = Array(stored.values.prefix(values.count))
            series.append(Comparison.compareValues(path, prefix, Array(values.prefix(prefix.count)), kind: stored.kind, mode: .exact, locator: locator))
        }
        let stop = Divergence(step: failure.step, stage: .trainingFailure, index: 0,
                              description: "first divergence at step \(failure.step): the re-run failed: \(failure)")
        return ComparisonReport(golden: golden.path, candidate: candidate, mode: .exact,
                                modeReason: "the re-run stopped at step \(failure.step), so only the steps before it were compared",
                                series: series, trainingFailure: stop)
    }

    /// `repro compare`: two existing records, no re-run; the policy is the first one's.
    public static func compare(_ goldenPath: String, _ candidatePath: String, override: ComparisonMode?) throws(UnusableInput) -> ComparisonReport {
        do {
            let golden = try Record(path: goldenPath), candidate = try Record(path: candidatePath)
            let (mode, reason) = TolerancePolicy.resolve(stored: golden.policy, kernels: golden.config.kernels,
                                                         goldenEnvironment: golden.environment, here: candidate.environment,
                                                         override: override)
            return try Comparison.compare(golden: golden, candidate: candidate, mode: mode, reason: reason)
        } catch {
            throw UnusableInput(error.description)
        }
    }
}

/// Keeps every step's outcome of a re-run, to compare the steps before a failure.
final class StepCapture: TrainingObserver {
    var steps: [StepOutcome] = []
    func stepFinished(_ outcome: StepOutcome) throws { steps.append(outcome) }
}
