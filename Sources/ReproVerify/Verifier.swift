import Foundation
import ReproData
import ReproStorage
import ReproTraining

/// Re-runs a golden's own configuration and compares the new record with it. Never writes the golden:
/// the re-run goes to a temporary file that is removed afterwards.
public struct Verifier {
    public var dataDirectory: String
    public var override: ComparisonMode?
    /// Threads for the re-run; nil uses the golden's.
    public var threads: Int?
    /// The BatchNorm check table to store in the re-run record, when the caller has already computed it.
    public var batchNormRows: [BatchNormChecks.Row]?

    public init(dataDirectory: String, override: ComparisonMode? = nil, threads: Int? = nil) {
        self.dataDirectory = dataDirectory
        self.override = override
        self.threads = threads
    }

    public enum Failure: Error, CustomStringConvertible {
        case badInput(String)
        public var description: String { switch self { case .badInput(let s): return s } }
    }

    public func verify(_ goldenPath: String, observers: [TrainingObserver] = []) throws -> ComparisonReport {
        let golden: OpenRecord
        do { golden = try OpenRecord(path: goldenPath) } catch { throw Failure.badInput(error.description) }
        var config = golden.config
        config.dataDirectory = dataDirectory
        if let threads { config.threads = threads }
        else if config.kernels == "portable" { config.threads = min(ProcessInfo.processInfo.activeProcessorCount, 8) }
        let data: MNIST
        do { data = try MNIST.load(directory: dataDirectory) } catch { throw Failure.badInput(error.description) }
        for (file, digest) in data.fingerprints where golden.fingerprints[file + "_sha256"] != digest {
            throw Failure.badInput("\(dataDirectory)/\(file): not the data \(goldenPath) was recorded on (sha256 differs); pass --data-dir")
        }
        let folder = NSTemporaryDirectory() + "repro-verify-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let rerunPath = folder + "/rerun.h5"
        try Self.record(config: config, data: data, to: rerunPath, observers: observers, batchNormRows: batchNormRows)
        let candidate: OpenRecord
        do { candidate = try OpenRecord(path: rerunPath) } catch { throw Failure.badInput("re-run record: \(error.description)") }
        let (mode, reason) = TolerancePolicy.resolve(stored: golden.storedPolicy, kernels: config.kernels,
                                                     goldenEnvironment: golden.environment, here: candidate.environment,
                                                     override: override)
        return try Comparison.compare(golden: golden, candidate: candidate, mode: mode, reason: reason)
    }

    /// Records one run, with its tolerance policy: the same path `repro record` takes.
    public static func record(config: RunConfig, data: MNIST, to path: String, reproVersion: String = "",
                              created: String = "", observers: [TrainingObserver] = [],
                              temporaryFileCreated: (String) -> Void = { _ in },
                              batchNormRows: [BatchNormChecks.Row]? = nil) throws {
        let file = try RecordFile(target: path)
        temporaryFileCreated(file.temporaryPath)
        do {
            let recorder = try Recorder(file: file, config: config, data: data, reproVersion: reproVersion, created: created)
            try TolerancePolicy.store(for: config, in: file.writer)
            try BatchNormChecks.store(try batchNormRows ?? BatchNormChecks.run(), in: file.writer)
            try Trainer(config: config, data: data).run(observers: observers + [recorder])
            try recorder.finish()
        } catch {
            file.abandon()
            throw error
        }
    }

    /// `repro compare`: two existing records, no re-run; the policy is the first one's.
    public static func compare(_ goldenPath: String, _ candidatePath: String, override: ComparisonMode?) throws -> ComparisonReport {
        let golden: OpenRecord, candidate: OpenRecord
        do { golden = try OpenRecord(path: goldenPath); candidate = try OpenRecord(path: candidatePath) }
        catch { throw Failure.badInput(error.description) }
        let (mode, reason) = TolerancePolicy.resolve(stored: golden.storedPolicy, kernels: golden.config.kernels,
                                                     goldenEnvironment: golden.environment, here: candidate.environment,
                                                     override: override)
        return try Comparison.compare(golden: golden, candidate: candidate, mode: mode, reason: reason)
    }
}
