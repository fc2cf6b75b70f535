import ReproNN
import ReproStorage

/// The one definition of a repro record's layout (documented path by path in docs/SCHEMA.md). The writer
/// (`RecordWriter`) and the strict reader (`Record`) both take every name, type, shape and range from here
/// and from the codecs in RecordParts.swift; bump `version` on any change a reader must know about.
public enum RecordSchema {
    public static let formatName = "repro-record"
    /// 2: the record profile and verification windows (`/config@profile`, `@window_steps`), window-end state
    /// digests, epoch-order digests in the golden profile.
    /// 3: per-step probes (`/steps/probes`) and the probes of the first forward pass
    /// (`/evaluation/before/probe_*`).
    /// 4: probes are a checksum of the bits and the largest magnitude (`checksum`, `largest`) instead of Σx
    /// and Σx². Older records are refused (re-record them).
    /// 5: the round-off envelope (`/envelope`, optional). Records of version 4 are still read (they have
    /// no envelope); `repro record --like` re-records one as version 5.
    /// 6: the norms of parameters' gradients and updates (`/steps/probes/norm`). Records of versions 4 and 5
    /// are still read (without norms); `repro record --like` re-records one as version 6.
    public static let version: Int32 = 6
    public static let readableVersions: [Int32] = [4, 5, 6]

    public static let config = "/config"
    public static let environment = "/environment"
    public static let data = "/data"
    public static let split = "/data/split"
    public static let trainIndices = "/data/split/train_indices"        // int32 [n_train]
    public static let validationIndices = "/data/split/val_indices"     // int32 [n_val]
    public static let epochOrder = "/data/epoch_order"                  // int32 [epochs_started, n_train] (complete profile)
    public static let epochOrderDigests = "/data/epoch_order_sha256"    // uint8 [epochs_started, 32] (golden profile)

    public static let steps = "/steps"
    public static let stepLoss = "/steps/loss"                          // float32 [S]
    public static let stepAccuracy = "/steps/accuracy"                  // float32 [S], percent
    /// float32 [S, C] under /steps/<bn layer>/: batch_mean, batch_std (used in the step), running_mean,
    /// running_std (after the step; only for layers that track running statistics). In the golden profile the
    /// rows of steps outside every window hold `notStored`.
    public static func stepBatchNorm(_ layer: String, _ series: BatchNormSeries) -> String { "/steps/\(layer)/\(series.rawValue)" }

    /// Per-step probes (`Probe`) of every probed point of the step's trace: the checksum (int64 [S, P], a
    /// value in 0..<2^32) and the largest magnitude (float64 [S, P], a float32 value); P =
    /// `ModelLayout.probePoints.count`, column j = the j-th point of the group's attribute `points` (one
    /// `TracePoint.key` per line, in execution order). The golden profile keeps the window steps' rows;
    /// the others hold `notStoredChecksum` and `notStoredFloat64`.
    public static let probes = "/steps/probes"
    public static let probeChecksums = "/steps/probes/checksum"
    public static let probeLargest = "/steps/probes/largest"
    /// float64 [S, N] (schema 6): the norm of each point with `TracePoint.hasNorm`, N = `ModelLayout.normPoints.count`,
    /// column j = the j-th of them in `points` order.
    public static let probeNorm = "/steps/probes/norm"
    public static let probePointsAttribute = "points"
    /// The schema version that added a dataset (comparing records of two versions skips what one lacks).
    public static func introduced(_ path: String) -> Int32 { path == probeNorm ? 6 : 1 }
    /// The first forward pass (the first test batch of the evaluation before training): [F] each, F =
    /// `ModelLayout.forwardProbePoints.count`, in that order.
    public static let forwardProbeChecksums = "/evaluation/before/probe_checksum"
    public static let forwardProbeLargest = "/evaluation/before/probe_largest"
    /// The datasets of probes' checksums and of their largest magnitudes.
    public static let probeChecksumDatasets = [probeChecksums, forwardProbeChecksums]
    public static let probeLargestDatasets = [probeLargest, forwardProbeLargest]

    public enum BatchNormSeries: String, CaseIterable, Sendable {
        case batchMean = "batch_mean", batchStd = "batch_std", runningMean = "running_mean", runningStd = "running_std"
        public var isRunningBuffer: Bool { self == .runningMean || self == .runningStd }
        /// The series a layer records.
        public static func recorded(by layer: ModelLayout.BatchNormLayer) -> [BatchNormSeries] {
            allCases.filter { layer.tracksRunningStatistics || !$0.isRunningBuffer }
        }
    }

    public static let epochs = "/epochs"                                // float64 [E] each
    public enum EpochSeries: String, CaseIterable, Sendable {
        case trainLoss = "train_loss", trainAccuracy = "train_accuracy", validationLoss = "val_loss", validationAccuracy = "val_accuracy"
    }
    public static func epochSeries(_ series: EpochSeries) -> String { epochs + "/" + series.rawValue }

    public static let evaluation = "/evaluation"
    /// float64 [3] each (int64 for samples): train, val, test, in that order.
    public enum EvaluationMetric: String, CaseIterable, Sendable { case loss, accuracy, samples }
    public static func evaluation(_ phase: String, _ metric: EvaluationMetric) -> String { "/evaluation/\(phase)/\(metric.rawValue)" }

    /// Attributes `mode`, `absolute`, `relative`: the comparison policy verify applies to this record
    /// (`StoredPolicy`).
    public static let tolerance = "/tolerance"

    /// The BatchNorm verification at record time (`CheckTable`). Not compared by verify (which re-runs the
    /// checks): it documents the layer the record was made with.
    public static let checks = "/checks"
    public static let batchNormChecks = "/checks/bn"

    /// The value of a per-step series at a step the profile does not keep: one quiet NaN bit pattern.
    public static let notStored = Float(bitPattern: 0x7fc0_0000)
    public static let notStoredFloat64 = Double(bitPattern: 0x7ff8_0000_0000_0000)
    /// A checksum outside 0..<2^32: the probes of a step the golden profile does not keep.
    public static let notStoredChecksum: Int64 = -1

    /// The state at the end of a window that is not a checkpoint: the SHA-256 of each tensor's little-endian
    /// float32 bytes, uint8 [T, 32] for the state_dict and [P, 32] for the momentum buffers, in their orders.
    public static let stateDigests = "/state_digests"
    public static func stateDigest(step: Int) -> String { stateDigests + "/" + padded(step) }

    public static let checkpoints = "/checkpoints"
    /// Zero-padded so HDF5's name order is step order.
    public static func checkpoint(step: Int) -> String { checkpoints + "/" + padded(step) }

    static func padded(_ step: Int) -> String {
        let digits = String(step)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
    public static func checkpointModel(step: Int) -> String { checkpoint(step: step) + "/model" }
    public static func checkpointMomentum(step: Int) -> String { checkpoint(step: step) + "/optimizer/momentum_buffer" }

    /// Bounds on what the reader is willing to look at before the schema says more: attribute strings
    /// (names, versions, environment facts) and the check table.
    static let maximumStringBytes = 1024
    /// The probe point names: about 40 bytes per point, 60 points for the model with BatchNorm.
    static let maximumProbePointsBytes = 8192
    static let maximumCheckRows = 1000
    static let maximumCheckTableBytes = 1 << 17
}

/// A record that states something the schema does not allow: where, what was found, what is expected.
public struct SchemaViolation: Error, CustomStringConvertible, Sendable {
    public let place: String
    public let found: String
    public let expected: String
    public init(_ place: String, found: String, expected: String) {
        self.place = place
        self.found = found
        self.expected = expected
    }
    public var description: String { "\(place): \(found), the schema expects \(expected)" }
}

/// Reads the attributes of one object by name, each with its type and range, and refuses what is left
/// over: reading is parsing.
struct AttributeParser {
    let object: String
    private var values: [String: AttributeValue] = [:]
    private var order: [String] = []
    private var taken: Set<String> = []

    init(object: String, attributes: [(name: String, value: AttributeValue)]) {
        self.object = object
        for (name, value) in attributes { values[name] = value; order.append(name) }
    }

    private func place(_ name: String) -> String { "\(object)@\(name)" }

    private mutating func take(_ name: String, expected: String) throws(SchemaViolation) -> AttributeValue {
        guard let value = values[name] else { throw SchemaViolation(place(name), found: "missing", expected: expected) }
        taken.insert(name)
        return value
    }

    mutating func int64(_ name: String, in range: ClosedRange<Int64>) throws(SchemaViolation) -> Int64 {
        let expected = "int64 in \(range.lowerBound)...\(range.upperBound)"
        guard case .int64(let v) = try take(name, expected: expected), range.contains(v) else {
            throw SchemaViolation(place(name), found: "\(values[name]!)", expected: expected)
        }
        return v
    }

    mutating func int64(_ name: String, equalTo wanted: Int64) throws(SchemaViolation) -> Int64 {
        try int64(name, in: wanted...wanted)
    }

    /// An optional positive count stored as −1 for "none".
    mutating func optionalCount(_ name: String, in range: ClosedRange<Int>) throws(SchemaViolation) -> Int? {
        let expected = "int64 −1 (none) or in \(range.lowerBound)...\(range.upperBound)"
        guard case .int64(let v) = try take(name, expected: expected), v == -1 || range.contains(Int(v)) else {
            throw SchemaViolation(place(name), found: "\(values[name]!)", expected: expected)
        }
        return v == -1 ? nil : Int(v)
    }

    /// An int32 attribute that `accepts` takes, described as `expected`.
    private mutating func int32(_ name: String, expected: String, where accepts: (Int32) -> Bool) throws(SchemaViolation) -> Int32 {
        guard case .int32(let v) = try take(name, expected: expected), accepts(v) else {
            throw SchemaViolation(place(name), found: "\(values[name]!)", expected: expected)
        }
        return v
    }

    mutating func int32(_ name: String, equalTo wanted: Int32) throws(SchemaViolation) {
        _ = try int32(name, expected: "int32 \(wanted)") { $0 == wanted }
    }

    mutating func int32(_ name: String, in allowed: [Int32]) throws(SchemaViolation) -> Int32 {
        try int32(name, expected: "int32 " + allowed.map(String.init).joined(separator: " or "), where: allowed.contains)
    }

    mutating func int32(_ name: String, in range: ClosedRange<Int32>) throws(SchemaViolation) -> Int32 {
        try int32(name, expected: "int32 in \(range.lowerBound)...\(range.upperBound)", where: range.contains)
    }

    mutating func bool(_ name: String) throws(SchemaViolation) -> Bool {
        let expected = "int32 0 or 1"
        switch try take(name, expected: expected) {
        case .int32(0): return false
        case .int32(1): return true
        default: throw SchemaViolation(place(name), found: "\(values[name]!)", expected: expected)
        }
    }

    mutating func float64(_ name: String, in range: ClosedRange<Double>) throws(SchemaViolation) -> Double {
        let expected = "finite float64 in [\(range.lowerBound), \(range.upperBound)]"
        guard case .float64(let v) = try take(name, expected: expected), range.contains(v) else {
            throw SchemaViolation(place(name), found: "\(values[name]!)", expected: expected)
        }
        return v
    }

    mutating func string(_ name: String, maximumBytes: Int = 256) throws(SchemaViolation) -> String {
        let expected = "a string of at most \(maximumBytes) bytes"
        guard case .string(let v) = try take(name, expected: expected), v.utf8.count <= maximumBytes else {
            throw SchemaViolation(place(name), found: "\(values[name]!)", expected: expected)
        }
        return v
    }

    mutating func string(_ name: String, oneOf allowed: [String]) throws(SchemaViolation) -> String {
        let expected = "one of the strings " + allowed.map { "'\($0)'" }.joined(separator: ", ")
        guard case .string(let v) = try take(name, expected: expected), allowed.contains(v) else {
            throw SchemaViolation(place(name), found: "\(values[name]!)", expected: expected)
        }
        return v
    }

    /// Refuses any attribute no parse step asked for.
    func finish() throws(SchemaViolation) {
        if let extra = order.first(where: { !taken.contains($0) }) {
            throw SchemaViolation(place(extra), found: "an attribute (\(values[extra]!))", expected: "no such attribute")
        }
    }
}
