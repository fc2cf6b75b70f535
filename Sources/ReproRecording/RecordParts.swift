import ReproBytes
import ReproData
import ReproNN
import ReproStorage
import ReproTraining

// One codec per record part: each part's attributes are written and parsed here, side by side, so the
// writer and the reader cannot disagree. Parsing accepts exactly what the writer produces.

/// The root attributes.
public struct RecordHeader: Equatable, Sendable {
    /// SOURCE_DATE_EPOCH at record time, or "".
    public var created: String
    public var reproVersion: String
    /// The version the record states (a new record: `RecordSchema.version`).
    public var schemaVersion = RecordSchema.version

    public init(created: String, reproVersion: String) {
        self.created = created
        self.reproVersion = reproVersion
    }

    /// Written first; `complete` is written last by `writeComplete`.
    func writeStart(to w: HDF5Writer) throws {
        try w.setAttribute("format", RecordSchema.formatName)
        try w.setAttribute("schema_version", RecordSchema.version)
        try w.setAttribute("created", created)
        try w.setAttribute("repro_version", reproVersion)
    }

    static func writeComplete(to w: HDF5Writer) throws { try w.setAttribute("complete", Int32(1)) }

    init(parsing attributes: [(name: String, value: AttributeValue)]) throws(SchemaViolation) {
        var p = AttributeParser(object: "/", attributes: attributes)
        _ = try p.string("format", oneOf: [RecordSchema.formatName])
        let readable = RecordSchema.readableVersions.map(String.init).joined(separator: " or ")
        if let version = attributes.first(where: { $0.name == "schema_version" })?.value,
           !RecordSchema.readableVersions.contains(where: { version == .int32($0) }) {
            throw SchemaViolation("/@schema_version", found: "schema version \(version)",
                                  expected: "\(readable) (this repro reads schema versions \(readable) only)")
        }
        schemaVersion = try p.int32("schema_version", in: RecordSchema.readableVersions)
        if attributes.first(where: { $0.name == "complete" })?.value != .int32(1) {
            throw SchemaViolation("/@complete", found: "not 1: the run that wrote this record did not finish", expected: "int32 1")
        }
        try p.int32("complete", equalTo: 1)
        created = try p.string("created", maximumBytes: 64)
        reproVersion = try p.string("repro_version", maximumBytes: 64)
        try p.finish()
    }
}

extension RunConfig {
    /// `/config`, in the order the attributes are written. `threads` is stored for blas runs only: portable
    /// kernels give the same bits for any count, and leaving it out keeps their records byte-identical.
    var recordAttributes: [(String, AttributeValue)] {
        var out: [(String, AttributeValue)] = [
            ("batch_size", .int64(Int64(batchSize))), ("learning_rate", .float64(learningRate)),
            ("weight_decay", .float64(weightDecay)), ("momentum", .float64(momentum)), ("epochs", .int64(Int64(epochs))),
            ("dataset", .string(dataset.rawValue)), ("norm", .int32(norm ? 1 : 0)), ("name", .string(name)),
            ("seed", .int64(Int64(bitPattern: seed))), ("max_steps", .int64(Int64(maxSteps ?? -1))),
            ("checkpoint_every", .int64(Int64(checkpointEvery ?? -1))), ("evaluation_limit", .int64(Int64(evaluationLimit ?? -1))),
        ]
        if kernels == .blas { out.append(("threads", .int64(Int64(threads)))) }
        out += [
            ("kernels", .string(kernels.rawValue)), ("bn_momentum", .float64(batchNorm.momentum)),
            ("bn_epsilon", .float64(batchNorm.epsilon)), ("bn_unbiased", .int32(batchNorm.unbiased ? 1 : 0)),
            ("bn_affine", .int32(batchNorm.affine ? 1 : 0)), ("bn_track_running_stats", .int32(batchNorm.trackRunningStats ? 1 : 0)),
            ("profile", .string(profile.rawValue)), ("window_steps", .int64(Int64(windowSteps ?? -1))),
        ]
        return out
    }

    public func write(to w: HDF5Writer) throws {
        for (name, value) in recordAttributes { try w.setAttribute(name, value, on: RecordSchema.config) }
    }

    /// Parses `/config`: every attribute with its type and range (`RunConfig.Limits`), none missing, none extra.
    /// A portable record stores no thread count; it reads as 1.
    public init(parsing attributes: [(name: String, value: AttributeValue)]) throws(SchemaViolation) {
        typealias L = RunConfig.Limits
        var p = AttributeParser(object: RecordSchema.config, attributes: attributes)
        self.init()
        func range(_ r: ClosedRange<Int>) -> ClosedRange<Int64> { Int64(r.lowerBound)...Int64(r.upperBound) }
        batchSize = Int(try p.int64("batch_size", in: range(L.batchSize)))
        learningRate = try p.float64("learning_rate", in: L.learningRate)
        weightDecay = try p.float64("weight_decay", in: L.weightDecay)
        momentum = try p.float64("momentum", in: L.momentum)
        epochs = Int(try p.int64("epochs", in: range(L.epochs)))
        dataset = DatasetName(rawValue: try p.string("dataset", oneOf: DatasetName.allCases.map(\.rawValue)))!
        norm = try p.bool("norm")
        name = try p.string("name", maximumBytes: L.nameBytes.upperBound)
        guard L.isValidName(name) else {
            throw SchemaViolation("\(RecordSchema.config)@name", found: "'\(name)'", expected: "1 to 64 letters, digits, '.', '_' or '-'")
        }
        seed = UInt64(bitPattern: try p.int64("seed", in: Int64.min...Int64.max))
        maxSteps = try p.optionalCount("max_steps", in: L.count)
        checkpointEvery = try p.optionalCount("checkpoint_every", in: L.count)
        evaluationLimit = try p.optionalCount("evaluation_limit", in: L.count)
        kernels = KernelChoice(rawValue: try p.string("kernels", oneOf: KernelChoice.allCases.map(\.rawValue)))!
        threads = kernels == .blas ? Int(try p.int64("threads", in: range(L.threads))) : 1
        batchNorm = BatchNormOptions(affine: try p.bool("bn_affine"), trackRunningStats: try p.bool("bn_track_running_stats"),
                                     momentum: try p.float64("bn_momentum", in: L.batchNormMomentum),
                                     epsilon: try p.float64("bn_epsilon", in: L.batchNormEpsilon),
                                     unbiased: try p.bool("bn_unbiased"))
        profile = RecordProfile(rawValue: try p.string("profile", oneOf: RecordProfile.allCases.map(\.rawValue)))!
        windowSteps = try p.optionalCount("window_steps", in: L.count)
        try p.finish()
    }
}

/// `/data`'s attributes: which data a run saw.
public struct DataDescription: Equatable, Sendable {
    public struct Fingerprint: Equatable, Sendable {
        public let file: String
        public let sha256: String
    }
    public var dataset: DatasetName
    /// One per file of the dataset, in load order.
    public var fingerprints: [Fingerprint]
    public var trainSamples: Int
    public var testSamples: Int

    public init(dataset: DatasetName, data: ImageDataset) {
        self.dataset = dataset
        fingerprints = data.fingerprints.map { Fingerprint(file: $0.file, sha256: $0.sha256) }
        trainSamples = data.train.count
        testSamples = data.test.count
    }

    /// Sample counts a record may state: a dataset of at least one batch's worth, at most 10^8.
    static let sampleRange: ClosedRange<Int64> = 2...100_000_000

    func write(to w: HDF5Writer) throws {
        try w.setAttribute("dataset", dataset.rawValue, on: RecordSchema.data)
        for f in fingerprints { try w.setAttribute(f.file + "_sha256", f.sha256, on: RecordSchema.data) }
        try w.setAttribute("train_samples", Int64(trainSamples), on: RecordSchema.data)
        try w.setAttribute("test_samples", Int64(testSamples), on: RecordSchema.data)
    }

    init(parsing attributes: [(name: String, value: AttributeValue)], config: RunConfig) throws(SchemaViolation) {
        var p = AttributeParser(object: RecordSchema.data, attributes: attributes)
        let name = try p.string("dataset", oneOf: [config.dataset.rawValue])
        dataset = DatasetName(rawValue: name)!
        fingerprints = []
        for file in dataset.files {
            let digest = try p.string(file + "_sha256", maximumBytes: 64)
            guard SHA256.isHexDigest(digest) else {
                throw SchemaViolation("\(RecordSchema.data)@\(file)_sha256", found: "'\(digest)'", expected: "64 lowercase hex digits")
            }
            fingerprints.append(Fingerprint(file: file, sha256: digest))
        }
        trainSamples = Int(try p.int64("train_samples", in: Self.sampleRange))
        testSamples = Int(try p.int64("test_samples", in: Self.sampleRange))
        try p.finish()
    }
}

/// `/environment`: facts that can change a run's bits (blas) or explain a difference (all runs).
public struct EnvironmentFacts: Equatable, Sendable {
    /// Name and value, in the order written.
    public var facts: [(name: String, value: String)]

    public subscript(_ name: String) -> String? { facts.first { $0.name == name }?.value }

    public static func == (a: Self, b: Self) -> Bool { a.facts.elementsEqual(b.facts) { $0 == $1 } }

    /// Only blas runs depend on OpenBLAS: leaving its facts out of portable records keeps them
    /// byte-identical under any OPENBLAS_CORETYPE and thread count.
    public static func names(for kernels: KernelChoice) -> [String] {
        (kernels == .blas ? ["openblas_core", "openblas_config", "openblas_threads"] : [])
            + ["cpu_model", "os", "glibc", "swift", "hdf5"]
    }

    /// This machine's facts, read now (after the trainer has pinned OpenBLAS's thread count).
    public init(current kernels: KernelChoice) {
        let e = RunEnvironment()
        let all = ["openblas_core": e.openBLASCore, "openblas_config": e.openBLASConfig, "openblas_threads": String(e.openBLASThreads),
                   "cpu_model": e.cpuModel, "os": e.operatingSystem, "glibc": e.glibc, "swift": e.swiftVersion, "hdf5": e.hdf5]
        facts = Self.names(for: kernels).map { ($0, String(all[$0]!.utf8.prefix(RecordSchema.maximumStringBytes))!) }
    }

    func write(to w: HDF5Writer) throws {
        for (name, value) in facts { try w.setAttribute(name, value, on: RecordSchema.environment) }
    }

    init(parsing attributes: [(name: String, value: AttributeValue)], kernels: KernelChoice) throws(SchemaViolation) {
        var p = AttributeParser(object: RecordSchema.environment, attributes: attributes)
        var facts = [(name: String, value: String)]()
        for name in Self.names(for: kernels) { facts.append((name, try p.string(name, maximumBytes: RecordSchema.maximumStringBytes))) }
        try p.finish()
        self.facts = facts
    }
}

/// One row of the BatchNorm check table (`BatchNormChecks` makes them; every record stores them).
public struct CheckRow: Sendable, Equatable {
    public var caseName: String
    public var check: String
    public var worstError: Double
    /// +infinity for an information row (no bound); stored as −1.
    public var bound: Double
    public var passed: Bool

    public init(caseName: String, check: String, worstError: Double, bound: Double, passed: Bool) {
        self.caseName = caseName
        self.check = check
        self.worstError = worstError
        self.bound = bound
        self.passed = passed
    }
}

/// `/checks/bn`: datasets worst_error, bound, passed and the attribute `rows` ("case | check" per line).
public enum CheckTable {
    static let datasets = ["worst_error": HDF5Reader.ElementKind.float64, "bound": .float64, "passed": .int32]

    public static func write(_ rows: [CheckRow], to w: HDF5Writer) throws {
        let g = RecordSchema.batchNormChecks
        try w.write(rows.map(\.worstError), shape: [rows.count], at: g + "/worst_error")
        try w.write(rows.map { $0.bound.isFinite ? $0.bound : -1 }, shape: [rows.count], at: g + "/bound")
        try w.write(rows.map { Int32($0.passed ? 1 : 0) }, shape: [rows.count], at: g + "/passed")
        try w.setAttribute("rows", rows.map { "\($0.caseName) | \($0.check)" }.joined(separator: "\n"), on: g)
    }

    /// The number of rows the `rows` attribute describes (each dataset must have that length).
    static func rowCount(parsing attributes: [(name: String, value: AttributeValue)]) throws(SchemaViolation) -> Int {
        var p = AttributeParser(object: RecordSchema.batchNormChecks, attributes: attributes)
        let text = try p.string("rows", maximumBytes: RecordSchema.maximumCheckTableBytes)
        try p.finish()
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard (1...RecordSchema.maximumCheckRows).contains(lines.count), lines.allSatisfy({ $0.contains(" | ") }) else {
            throw SchemaViolation("\(RecordSchema.batchNormChecks)@rows", found: "\(lines.count) lines",
                                  expected: "1 to \(RecordSchema.maximumCheckRows) lines of the form 'case | check'")
        }
        return lines.count
    }
}

/// A checkpoint group's attributes: the data cursor and the generator state, all determined by the step.
struct CheckpointAttributes: Equatable {
    var step: Int
    var epoch: Int
    var batchInEpoch: Int
    var hasMomentumBuffers: Bool
    var rng: String

    /// What a checkpoint after `step` of `plan` states.
    init(step: Int, plan: RunPlan, seed: UInt64) {
        self.init(step: step, plan: plan, seed: seed, hasMomentumBuffers: step > 0)
    }

    init(step: Int, plan: RunPlan, seed: UInt64, hasMomentumBuffers: Bool) {
        self.step = step
        (epoch, batchInEpoch) = plan.cursor(afterStep: step)
        self.hasMomentumBuffers = hasMomentumBuffers  // SGD creates its buffers at the first step, as PyTorch's
        rng = "philox4x32-10 seed=\(seed) shuffle_stream=\(RandomStream.shuffle.rawValue) substream=epoch position=0"
    }

    func write(to w: HDF5Writer, group: String) throws {
        try w.setAttribute("step", Int64(step), on: group)
        try w.setAttribute("epoch", Int64(epoch), on: group)
        try w.setAttribute("batch_in_epoch", Int64(batchInEpoch), on: group)
        try w.setAttribute("has_momentum_buffers", hasMomentumBuffers, on: group)
        try w.setAttribute("rng", rng, on: group)
    }

    /// Parses a checkpoint's attributes, which must be exactly `expected`'s.
    static func check(_ attributes: [(name: String, value: AttributeValue)], group: String, expected: Self) throws(SchemaViolation) {
        var p = AttributeParser(object: group, attributes: attributes)
        _ = try p.int64("step", equalTo: Int64(expected.step))
        _ = try p.int64("epoch", equalTo: Int64(expected.epoch))
        _ = try p.int64("batch_in_epoch", equalTo: Int64(expected.batchInEpoch))
        try p.int32("has_momentum_buffers", equalTo: expected.hasMomentumBuffers ? 1 : 0)
        _ = try p.string("rng", oneOf: [expected.rng])
        try p.finish()
    }
}

extension RunConfig {
    /// The `/config` values that differ between two configurations, as "name: mine vs theirs", in
    /// the schema's order.
    public func differences(from other: RunConfig) -> [String] {
        let mine = recordAttributes, theirs = other.recordAttributes
        var out = [String]()
        for (name, value) in mine {
            let counterpart = theirs.first { $0.0 == name }?.1
            if counterpart != value { out.append("\(name): \(Self.show(value)) vs \(counterpart.map(Self.show) ?? "absent")") }
        }
        for (name, value) in theirs where !mine.contains(where: { $0.0 == name }) { out.append("\(name): absent vs \(Self.show(value))") }
        return out
    }

    static func show(_ value: AttributeValue) -> String {
        switch value {
        case .int32(let v): return "\(v)"
        case .int64(let v): return "\(v)"
        case .float64(let v): return "\(v)"
        case .string(let v): return v
        case .other(let what): return what
        }
    }
}

/// The SHA-256 digests the golden profile keeps instead of values.
public enum Digest {
    /// Of a tensor's float32 values, as their little-endian bytes.
    public static func of(_ values: [Float]) -> [UInt8] { bytes(values.map { $0.bitPattern.littleEndian }) }
    /// Of an epoch's order, as little-endian int32 bytes.
    public static func of(_ order: [Int32]) -> [UInt8] { bytes(order.map { $0.littleEndian }) }

    static func bytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { SHA256.digest($0) } }
}

/// `/steps/probes@points`: the probed points of the model's trace, one `TracePoint.key` per line, in
/// execution order — the columns of the probe datasets.
enum ProbePointsAttribute {
    static func text(_ layout: ModelLayout) -> String { layout.probePoints.map(\.key).joined(separator: "\n") }

    static func write(_ layout: ModelLayout, to w: HDF5Writer) throws {
        try w.setAttribute(RecordSchema.probePointsAttribute, text(layout), on: RecordSchema.probes)
    }

    /// The attribute must name exactly the layout's points, in its order.
    static func check(_ attributes: [(name: String, value: AttributeValue)], layout: ModelLayout) throws(SchemaViolation) {
        var p = AttributeParser(object: RecordSchema.probes, attributes: attributes)
        let text = try p.string(RecordSchema.probePointsAttribute, maximumBytes: RecordSchema.maximumProbePointsBytes)
        try p.finish()
        let expected = Self.text(layout)
        guard text == expected else {
            let found = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let wanted = layout.probePoints.map(\.key)
            let i = found.indices.first { $0 >= wanted.count || found[$0] != wanted[$0] } ?? wanted.count
            throw SchemaViolation("\(RecordSchema.probes)@\(RecordSchema.probePointsAttribute)",
                                  found: i < found.count ? "line \(i + 1) '\(found[i])'" : "\(found.count) lines",
                                  expected: i < wanted.count ? "'\(wanted[i])' (the model's \(wanted.count) probe points in execution order)"
                                                             : "\(wanted.count) lines")
        }
    }
}
