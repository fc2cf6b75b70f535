import ReproNN
import ReproStorage
import ReproTraining

/// `/envelope`: how far round-off alone moves each value a verification window compares. Measured at
/// record time (`repro record --envelope K`) by re-running every window K times from its start state under
/// Monte Carlo arithmetic (`RoundingReplica`); for each value, the largest distance of a replica from the
/// record's own value, never less than the value's quantum (one float32 ULP, or one sample of an accuracy:
/// no smaller difference can exist). One uint8 code per element, in a dataset of the compared dataset's
/// path and shape under `/envelope`: code c ≥ 1 stands for the width 2^(c − `codeBias`), the measured
/// distance rounded up to a power of two (one byte instead of four; at most 2× wide, which the safety
/// factor was measured with); code 0: no envelope (a value no window compares: compared bit for bit).
public struct Envelope: Sendable, Equatable {
    public static let group = "/envelope"
    /// Code c means 2^(c − 160): 1 → 2⁻¹⁵⁹ (below float32's smallest subnormal), 255 → 2⁹⁵.
    public static let codeBias = 160

    /// Replicas per window.
    public var replicas: Int
    public static let maximumReplicas: Int32 = 1000
    /// Codes per compared dataset (its path), flat in the dataset's order.
    public var codes: [String: [UInt8]]

    public init(replicas: Int, codes: [String: [UInt8]]) {
        self.replicas = replicas
        self.codes = codes
    }

    /// Where the envelope of `dataset` is stored.
    public static func path(of dataset: String) -> String { group + dataset }

    /// The width a code stands for (0: none).
    public static func width(_ code: UInt8) -> Double { code == 0 ? 0 : Double(sign: .plus, exponent: Int(code) - codeBias, significand: 1) }

    /// The smallest code whose width is ≥ `distance` (> 0).
    public static func code(covering distance: Double) -> UInt8 {
        guard distance > 0 else { return 1 }
        guard distance.isFinite else { return 255 }
        var e = Int(distance.exponent)
        if distance > Double(sign: .plus, exponent: e, significand: 1) { e += 1 }
        return UInt8(clamping: max(1, e + codeBias))
    }

    /// The compared datasets that carry an envelope in a record of this configuration: the per-step
    /// float series, the first forward pass's largest magnitudes, the per-epoch metrics, the evaluations'
    /// losses and accuracies, and the checkpoints a window ends at (and checkpoint 0) — with their shapes.
    public static func datasets(plan: RunPlan, layout: ModelLayout, schema: Int32 = RecordSchema.version) -> [(path: String, shape: [Int])] {
        var out = [(path: String, shape: [Int])]()
        for series in StepSeries.table(for: layout, schema: schema) where series.kind != .int64 {
            out.append((series.path, series.shape(steps: plan.totalSteps)))
        }
        out.append((RecordSchema.forwardProbeLargest, [layout.forwardProbePoints.count]))
        for series in RecordSchema.EpochSeries.allCases { out.append((RecordSchema.epochSeries(series), [plan.epochsStarted])) }
        for phase in EvaluationPhase.allCases {
            for metric in [RecordSchema.EvaluationMetric.loss, .accuracy] { out.append((RecordSchema.evaluation(phase.rawValue, metric), [3])) }
        }
        for step in comparedCheckpoints(plan) {
            for t in layout.stateDict { out.append((RecordSchema.checkpointModel(step: step) + "/" + t.name, t.shape)) }
            guard step > 0 else { continue }
            for t in layout.parameters { out.append((RecordSchema.checkpointMomentum(step: step) + "/" + t.name, t.shape)) }
        }
        return out
    }

    /// The checkpoints windows compare: 0 (window 0's initialization) and every window end that is one.
    public static func comparedCheckpoints(_ plan: RunPlan) -> [Int] {
        [0] + plan.windows.map(\.end).filter { $0 > 0 && plan.isCheckpoint($0) }
    }

    /// Adds this envelope to a finished record (its temporary file, before the rename: `Recording.record(amending:)`).
    public func append(to path: String, plan: RunPlan, layout: ModelLayout) throws {
        let w = try HDF5Writer(appendingTo: path)
        try write(to: w, plan: plan, layout: layout)
        try w.close()
    }

    func write(to w: HDF5Writer, plan: RunPlan, layout: ModelLayout) throws {
        try w.setAttribute("replicas", Int32(replicas), on: Self.group)
        for (path, shape) in Self.datasets(plan: plan, layout: layout) {
            let values = codes[path] ?? []
            precondition(values.count == shape.reduce(1, *), "\(path): \(values.count) envelope codes for shape \(shape)")
            try w.write(values, shape: shape, at: Self.path(of: path))
        }
    }

    static func replicas(parsing attributes: [(name: String, value: AttributeValue)]) throws(SchemaViolation) -> Int {
        var p = AttributeParser(object: group, attributes: attributes)
        let k = try p.int32("replicas", in: 1...Self.maximumReplicas)
        try p.finish()
        return Int(k)
    }
}
