import Foundation
import ReproNN
import ReproStorage
import ReproTraining

/// A record that can not be used (missing, damaged, not a record, wrong schema): always bad input, exit 2.
public struct RecordError: Error, CustomStringConvertible {
    public let description: String
    init(_ path: String, _ problem: String) { description = "\(path): \(problem)" }
}

/// A record opened for reading after every check that protects libhdf5 and the comparison: the whole-file
/// checksum (before libhdf5 sees a byte), format, schema version, completeness, every dataset's shape
/// against the schema (before anything is allocated), and finite losses.
public final class OpenRecord {
    public let path: String
    public let reader: HDF5Reader
    public let config: RunConfig
    public let plan: RunPlan
    public let environment: [String: String]
    public let fingerprints: [String: String]
    public let storedPolicy: (mode: String, absolute: Double, relative: Double)
    /// Every dataset, in the order the file stores them (name order, depth first).
    public let datasets: [String]
    /// The datasets verify compares: all but the record-time BatchNorm check table (verify re-runs the checks).
    public var comparedDatasets: [String] { datasets.filter { !$0.hasPrefix(RecordSchema.batchNormChecks + "/") } }
    public let batchNormChannels: [String: Int]
    /// The model's state_dict names and shapes for this record's configuration, in state_dict order.
    public let stateOrder: [(name: String, shape: [Int])]

    public init(path: String) throws(RecordError) {
        self.path = path
        try Self.checkBytes(path)
        do {
            reader = try HDF5Reader(opening: path)
            let format = try reader.stringAttribute(RecordSchema.formatAttribute)
            guard format == RecordSchema.formatName else { throw RecordError(path, "format '\(format)', not a repro record") }
            let version = try reader.numberAttribute(RecordSchema.versionAttribute, as: Int32.self)
            guard version == RecordSchema.version else {
                throw RecordError(path, "schema version \(version); this repro reads version \(RecordSchema.version)")
            }
            guard (try? reader.numberAttribute(RecordSchema.completeAttribute, as: Int32.self)) == 1 else {
                throw RecordError(path, "record is incomplete (no complete = 1): the run that wrote it did not finish")
            }
            config = try Self.readConfig(reader)
            let trainSamples = Int(try reader.numberAttribute("train_samples", as: Int64.self, on: RecordSchema.data))
            guard trainSamples > 0, trainSamples < 100_000_000 else { throw RecordError(path, "implausible train_samples \(trainSamples)") }
            plan = RunPlan(config: config, trainCount: Int(Double(trainSamples) * 0.8 + 1))
            var env = [String: String]()
            for name in try reader.attributeNames(on: RecordSchema.environment) {
                env[name] = try reader.stringAttribute(name, on: RecordSchema.environment)
            }
            environment = env
            var prints = [String: String]()
            for name in try reader.attributeNames(on: RecordSchema.data) where name.hasSuffix("_sha256") {
                prints[name] = try reader.stringAttribute(name, on: RecordSchema.data)
            }
            fingerprints = prints
            if reader.exists(RecordSchema.tolerance) {
                storedPolicy = (try reader.stringAttribute("mode", on: RecordSchema.tolerance),
                                try reader.numberAttribute("absolute", as: Double.self, on: RecordSchema.tolerance),
                                try reader.numberAttribute("relative", as: Double.self, on: RecordSchema.tolerance))
            } else {  // written by code that did not store a policy: the default for its kernels
                guard case let .tolerance(a, r) = TolerancePolicy.crossEnvironmentBLAS else { preconditionFailure() }
                storedPolicy = (config.kernels == "portable" ? "exact" : "auto", a, r)
            }
            datasets = try reader.datasets()
            var channels = [String: Int]()
            if config.norm { for (name, c) in [("bn1", 6), ("bn2", 16), ("bn3", 120), ("bn4", 84)] { channels[name] = c } }
            batchNormChannels = channels
            stateOrder = LeNet5<Float>.stateShapes(normalized: config.norm)
            try checkShapes()
            let loss = try reader.read(RecordSchema.stepLoss, as: Float.self).values
            if let bad = loss.firstIndex(where: { !$0.isFinite }) {
                throw RecordError(path, "step \(bad + 1) has a non-finite loss (\(loss[bad])): not a usable golden")
            }
        } catch let error as RecordError {
            throw error
        } catch {
            throw RecordError(path, "\(error)".replacingOccurrences(of: path + ": ", with: ""))
        }
    }

    /// Checks made on the raw bytes, before libhdf5 opens anything.
    static func checkBytes(_ path: String) throws(RecordError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw RecordError(path, "no such file") }
        guard !isDirectory.boolValue else { throw RecordError(path, "is a directory, not a record") }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw RecordError(path, "cannot read the file") }
        let head = (try? handle.read(upToCount: 600)) ?? Data()
        try? handle.close()
        if head.isEmpty { throw RecordError(path, "empty file") }
        let text = String(decoding: head.prefix(200), as: UTF8.self)
        if text.hasPrefix("version https://git-lfs.github.com/spec/") {
            throw RecordError(path, "is a Git LFS pointer, not the record itself: fetch it with 'git lfs pull'")
        }
        if !text.hasPrefix(RecordSchema.checksumPrefix) {
            if head.count >= 8, head.prefix(8) == Data([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]) {
                throw RecordError(path, "an HDF5 file without repro's checksum block: not a repro record")
            }
            throw RecordError(path, "not a repro record (no repro checksum at the start of the file)")
        }
        if let problem = RecordFile.checksumProblem(path) { throw RecordError(path, problem) }
    }

    static func readConfig(_ r: HDF5Reader) throws -> RunConfig {
        let c = RecordSchema.config
        func int(_ name: String) throws -> Int { Int(try r.numberAttribute(name, as: Int64.self, on: c)) }
        func double(_ name: String) throws -> Double { try r.numberAttribute(name, as: Double.self, on: c) }
        func bool(_ name: String) throws -> Bool { try r.numberAttribute(name, as: Int32.self, on: c) != 0 }
        func string(_ name: String) throws -> String { try r.stringAttribute(name, on: c) }
        var config = RunConfig()
        config.batchSize = try int("batch_size")
        config.learningRate = try double("learning_rate")
        config.weightDecay = try double("weight_decay")
        config.momentum = try double("momentum")
        config.epochs = try int("epochs")
        config.dataset = try string("dataset")
        config.norm = try bool("norm")
        config.name = try string("name")
        config.seed = UInt64(bitPattern: try r.numberAttribute("seed", as: Int64.self, on: c))
        let maxSteps = try int("max_steps"), every = try int("checkpoint_every"), limit = try int("evaluation_limit")
        config.maxSteps = maxSteps > 0 ? maxSteps : nil
        config.checkpointEvery = every > 0 ? every : nil
        config.evaluationLimit = limit > 0 ? limit : nil
        config.threads = (try? int("threads")) ?? 1  // absent from portable records: any count gives the same bits
        config.kernels = try string("kernels")
        config.batchNorm = BatchNormOptions(affine: try bool("bn_affine"), trackRunningStats: try bool("bn_track_running_stats"),
                                            momentum: try double("bn_momentum"), epsilon: try double("bn_epsilon"),
                                            unbiased: try bool("bn_unbiased"))
        guard config.batchSize >= 2, config.batchSize <= 1 << 20, config.epochs >= 1, config.epochs <= 1 << 20,
              config.threads >= 1, config.threads <= 256 else {
            throw RecordError(r.path, "implausible configuration (batch size \(config.batchSize), epochs \(config.epochs))")
        }
        guard Trainer.kernelNames.contains(config.kernels) else { throw RecordError(r.path, "unknown kernels '\(config.kernels)'") }
        return config
    }

    /// The shape the schema expects at `path`, or nil for a path the schema does not know.
    func expectedShape(_ path: String) -> [Int]? {
        let s = plan.totalSteps, e = plan.epochsStarted
        let stateShapes = Dictionary(uniqueKeysWithValues: stateOrder.map { ($0.name, $0.shape) })
        switch path {
        case RecordSchema.trainIndices: return [plan.trainCount]
        case RecordSchema.validationIndices: return nil  // n_val is checked against the file below
        case RecordSchema.epochOrder: return [e, plan.trainCount]
        case RecordSchema.stepLoss, RecordSchema.stepAccuracy: return [s]
        default: break
        }
        let parts = path.split(separator: "/").map(String.init)
        if parts.count == 3, parts[0] == "steps", let c = batchNormChannels[parts[1]], RecordSchema.batchNormSeries.contains(parts[2]) {
            return [s, c]
        }
        if parts.count == 2, parts[0] == "epochs", RecordSchema.epochSeries.contains(parts[1]) { return [e] }
        if parts.count == 3, parts[0] == "evaluation", ["before", "after"].contains(parts[1]),
           ["loss", "accuracy", "samples"].contains(parts[2]) { return [3] }
        if parts.count == 4, parts[0] == "checkpoints", parts[2] == "model" { return stateShapes[parts[3]] }
        if parts.count == 5, parts[0] == "checkpoints", parts[2] == "optimizer", parts[3] == "momentum_buffer" {
            return stateShapes[parts[4]]
        }
        return nil
    }

    func checkShapes() throws {
        let checkRows = datasets.contains(RecordSchema.batchNormChecks + "/passed")
            ? try reader.shape(of: RecordSchema.batchNormChecks + "/passed") : [0]
        for dataset in datasets {
            if dataset.hasPrefix(RecordSchema.batchNormChecks + "/") {
                guard ["worst_error", "bound", "passed"].contains(dataset.split(separator: "/").last.map(String.init) ?? ""),
                      try reader.shape(of: dataset) == checkRows, checkRows.count == 1, checkRows[0] < 100_000 else {
                    throw RecordError(path, "\(dataset) does not match the schema of \(RecordSchema.batchNormChecks)")
                }
                continue
            }
            let shape = try reader.shape(of: dataset)
            if dataset == RecordSchema.validationIndices {
                guard shape.count == 1, shape[0] >= 0, shape[0] < 100_000_000 else { throw RecordError(path, "\(dataset) has shape \(shape)") }
                continue
            }
            guard let expected = expectedShape(dataset) else { throw RecordError(path, "unexpected dataset \(dataset) (not in schema version \(RecordSchema.version))") }
            guard expected == shape else { throw RecordError(path, "\(dataset) has shape \(shape), the schema expects \(expected)") }
        }
        for required in [RecordSchema.stepLoss, RecordSchema.trainIndices, RecordSchema.epochOrder] where !datasets.contains(required) {
            throw RecordError(path, "missing dataset \(required)")
        }
    }

    /// A dataset's values as Double (float32 and integers convert exactly), with its stored kind.
    public func values(_ dataset: String) throws -> (values: [Double], kind: HDF5Reader.ElementKind) {
        let kind = try reader.elementKind(of: dataset)
        switch kind {
        case .float32: return (try reader.read(dataset, as: Float.self).values.map(Double.init), kind)
        case .float64: return (try reader.read(dataset, as: Double.self).values, kind)
        case .int32: return (try reader.read(dataset, as: Int32.self).values.map(Double.init), kind)
        case .int64: return (try reader.read(dataset, as: Int64.self).values.map(Double.init), kind)
        case .uint8: return (try reader.read(dataset, as: UInt8.self).values.map(Double.init), kind)
        }
    }
}
