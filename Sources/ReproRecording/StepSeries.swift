import ReproNN
import ReproStorage
import ReproTraining

/// One per-step series of a record (`/steps/…`), declared once: where it is stored, its element type and
/// shape, where its values come from in a `StepOutcome` (and how replay puts them back), which values the
/// schema allows, whether the golden profile keeps it outside verification windows, and the place of each
/// of its columns in a step's execution order. The writer, the strict reader, replay, window comparison
/// and the comparison's locator all iterate `StepSeries.table(for:)`; docs/SCHEMA.md's table of step series
/// is checked against it (`SchemaDocumentTests`).
public struct StepSeries: Sendable {
    public enum Source: Sendable, Equatable {
        case loss, accuracy
        /// The `BatchNormSeries` of the layer at this index of `ModelLayout.batchNorms`.
        case batchNorm(layer: Int, RecordSchema.BatchNormSeries)
        case probeChecksum, probeLargest
        /// The norms of the probes of `ModelLayout.normPoints` (schema 6).
        case probeNorm(columns: [Int])
    }

    public let path: String
    public let kind: HDF5Reader.ElementKind
    /// Values per step; the dataset's shape is [steps] for a scalar series, [steps, width] otherwise.
    public let width: Int
    public let isScalar: Bool
    public let source: Source
    /// The golden profile stores this series only at steps inside a verification window; its other rows
    /// hold `notStored`.
    public let keptOnlyInWindows: Bool
    /// Each column's place in the step's trace (the locator's order of a first divergence).
    public let points: [TracePoint]
    /// The series whose values give a distance to this one's differences (a checksum's largest magnitudes).
    public let magnitudes: String?
    /// What a value is, for docs/SCHEMA.md.
    public let meaning: String
    /// Each column's name in reports: "channel 3", "point forward/conv1/output"; empty for a scalar series.
    let columnName: @Sendable (Int) -> String
    let placeName: @Sendable (Int) -> String

    /// Every per-step series of a model with this layout, in the order the writer creates and fills them, as
    /// a record of this schema version has them (the norms since version 6).
    public static func table(for layout: ModelLayout, schema: Int32 = RecordSchema.version) -> [StepSeries] {
        var table = [
            scalar(RecordSchema.stepLoss, .loss, point: TracePoint(.loss, "loss", .loss), meaning: "the batch's mean cross-entropy"),
            scalar(RecordSchema.stepAccuracy, .accuracy, point: TracePoint(.loss, "loss", .accuracy),
                   meaning: "the batch's accuracy in percent (training mode): 100·k/B for k correct samples"),
        ]
        for (i, bn) in layout.batchNorms.enumerated() {
            for series in RecordSchema.BatchNormSeries.recorded(by: bn) {
                let name = bn.name, label = series.rawValue
                table.append(StepSeries(
                    path: RecordSchema.stepBatchNorm(name, series), kind: .float32, width: bn.channels, isScalar: false,
                    source: .batchNorm(layer: i, series), keptOnlyInWindows: true,
                    points: Array(repeating: TracePoint(.forward, name, .statistic(label)), count: bn.channels), magnitudes: nil,
                    meaning: series.isRunningBuffer ? "the running buffer after the step (layers that track running statistics)"
                        : "the statistic the step normalized with",
                    columnName: { "channel \($0)" }, placeName: { "forward of \(name): \(name).\(label)[\($0)]" }))
            }
        }
        let points = layout.probePoints
        let probes = [
            (RecordSchema.probeChecksums, Source.probeChecksum, "checksum",
             "each probed tensor's checksum (see Probes), in 0…2³²−1; column j is the j-th line of `probes@points`"),
            (RecordSchema.probeLargest, .probeLargest, "max |x|",
             "each probed tensor's largest magnitude: a float32 value (for an update, a float64 difference), ≥ 0"),
        ]
        for (path, source, summary, meaning) in probes {
            table.append(StepSeries(
                path: path, kind: source == .probeChecksum ? .int64 : .float64, width: points.count, isScalar: false, source: source,
                keptOnlyInWindows: true, points: points, magnitudes: source == .probeChecksum ? RecordSchema.probeLargest : nil,
                meaning: meaning, columnName: { "point \(points[$0].key)" }, placeName: { "\(points[$0]), \(summary)" }))
        }
        if schema >= 6 {
            let columns = points.indices.filter { points[$0].hasNorm }, normPoints = columns.map { points[$0] }
            table.append(StepSeries(
                path: RecordSchema.probeNorm, kind: .float64, width: columns.count, isScalar: false, source: .probeNorm(columns: columns),
                keptOnlyInWindows: true, points: normPoints, magnitudes: nil,
                meaning: "each parameter's gradient's and update's Euclidean norm √Σx², in float64 (see Probes), ≥ 0; column j is the j-th line of `probes@points` that is a `grad:` or `delta:` point",
                columnName: { "point \(normPoints[$0].key)" }, placeName: { "\(normPoints[$0]), norm" }))
        }
        return table
    }

    private static func scalar(_ path: String, _ source: Source, point: TracePoint, meaning: String) -> StepSeries {
        let name = String(path.split(separator: "/").last!)
        return StepSeries(path: path, kind: .float32, width: 1, isScalar: true, source: source, keptOnlyInWindows: false,
                          points: [point], magnitudes: nil, meaning: meaning, columnName: { _ in "" }, placeName: { _ in "loss: \(name)" })
    }

    public func shape(steps: Int) -> [Int] { isScalar ? [steps] : [steps, width] }

    /// Whether a step's row is stored (the others hold `notStored`).
    public func isKept(_ step: Int, plan: RunPlan, profile: RecordProfile) -> Bool {
        !keptOnlyInWindows || plan.isKept(step, profile: profile)
    }

    /// The value of a row the profile does not keep: a quiet NaN, or −1 for a checksum (outside 0..<2^32).
    public var notStored: Double {
        switch kind {
        case .float32: return Double(RecordSchema.notStored)
        case .int64: return Double(RecordSchema.notStoredChecksum)
        default: return RecordSchema.notStoredFloat64
        }
    }

    func isNotStoredMarker(_ v: Double) -> Bool {
        switch kind {
        case .float32: return Float(v).bitPattern == RecordSchema.notStored.bitPattern
        case .int64: return v == Double(RecordSchema.notStoredChecksum)
        default: return v.bitPattern == RecordSchema.notStoredFloat64.bitPattern
        }
    }

    // MARK: - Values

    /// The step's values of this series, in column order. Stored values are float32, int64 or float64;
    /// each converts to Double and back exactly.
    public func values(of outcome: StepOutcome) -> [Double] {
        switch source {
        case .loss: return [Double(outcome.loss)]
        case .accuracy: return [Double(outcome.accuracy)]
        case let .batchNorm(layer, series):
            let s = outcome.batchNorm[layer]
            let row: [Float]?
            switch series {
            case .batchMean: row = s.batchMean
            case .batchStd: row = s.batchStd
            case .runningMean: row = s.runningMean
            case .runningStd: row = s.runningStd
            }
            return (row ?? []).map(Double.init)
        case .probeChecksum: return (outcome.probes ?? []).map { Double($0.checksum) }
        case .probeLargest: return (outcome.probes ?? []).map(\.largest)
        case .probeNorm(let columns):
            guard let probes = outcome.probes else { return [] }
            return columns.map { probes[$0].norm ?? .nan }
        }
    }

    /// The row written for `outcome`: its values, or the not-stored marker where the profile does not keep it.
    func row(of outcome: StepOutcome, kept: Bool) -> [Double] {
        if kept {
            let row = values(of: outcome)
            precondition(row.count == width, "step \(outcome.step) has \(row.count) values of \(path), the layout \(width)")
            return row
        }
        return [Double](repeating: notStored, count: width)
    }

    /// The inverse of `values(of:)`: puts one stored row back into the step being rebuilt.
    func restore(_ row: ArraySlice<Double>, into step: inout ReplayedStep) {
        switch source {
        case .loss: step.loss = Float(row.first!)
        case .accuracy: step.accuracy = Float(row.first!)
        case let .batchNorm(layer, series): step.batchNorm[layer][series] = row.map(Float.init)
        case .probeChecksum: step.probeChecksums = row.map { UInt32(exactly: $0) ?? 0 }
        case .probeLargest: step.probeLargest = Array(row)
        case .probeNorm(let columns): step.probeNorms = Dictionary(uniqueKeysWithValues: zip(columns, row))
        }
    }

    // MARK: - Validity

    /// What the schema expects of a kept value in `column` that it does not get, or nil when the value is allowed.
    func problem(_ v: Double, column: Int, batchSize: Int) -> String? {
        switch source {
        case .loss:
            return v.isFinite && v >= 0 ? nil : "finite losses ≥ 0: not a usable golden"
        case .accuracy:
            let k = (v * Double(batchSize) / 100).rounded()
            return (0...Double(batchSize)).contains(k) && Double(Float(100 * k / Double(batchSize))) == v ? nil
                : "100·k/\(batchSize) percent for a whole number k of correct samples"
        case let .batchNorm(_, series):
            let isStd = series == .batchStd || series == .runningStd
            return v.isFinite && !(isStd && v <= 0) ? nil : isStd ? "finite standard deviations > 0" : "finite means"
        case .probeChecksum: return Self.checksumProblem(v)
        case .probeLargest: return Self.largestProblem(v, point: points[column])
        case .probeNorm: return v.isFinite && v >= 0 && v.sign == .plus ? nil : "a finite norm ≥ 0"
        }
    }

    /// The rules of a probe's two values, shared with the first forward pass's probes.
    static func checksumProblem(_ v: Double) -> String? {
        v >= 0 && v <= Double(UInt32.max) ? nil : "a checksum in 0...\(UInt32.max)"
    }

    /// float32 values (the records' tensors are float32), but for updates, whose differences are formed in float64.
    static func largestProblem(_ v: Double, point: TracePoint) -> String? {
        var isUpdate = false
        if case .update = point.quantity { isUpdate = true }
        return v.isFinite && v >= 0 && v.sign == .plus && (isUpdate || Double(Float(v)) == v) ? nil
            : "a finite magnitude ≥ 0 (a float32 value but for updates)"
    }

    /// Checks every row against the schema: kept rows by `problem`, the others hold exactly the marker.
    func check(_ values: [Double], plan: RunPlan, profile: RecordProfile, batchSize: Int) throws(SchemaViolation) {
        for i in values.indices {
            let step = i / width + 1, column = i % width, v = values[i]
            let expected: String?
            if isKept(step, plan: plan, profile: profile) {
                expected = problem(v, column: column, batchSize: batchSize)
            } else {
                expected = isNotStoredMarker(v) ? nil
                    : "the not-stored \(kind == .int64 ? String(RecordSchema.notStoredChecksum) : "NaN") outside the windows (golden profile)"
            }
            if let expected { throw SchemaViolation(path, found: found(step: step, column: column, v), expected: expected) }
        }
    }

    func found(step: Int, column: Int, _ v: Double) -> String {
        let value = kind == .float32 ? "\(Float(v))" : kind == .int64 ? "\(Int64(v))" : "\(v)"
        return isScalar ? "step \(step) has the \(path.split(separator: "/").last!) \(value)" : "step \(step) \(columnName(column)) is \(value)"
    }

    // MARK: - Documentation

    /// The table of step series in docs/SCHEMA.md, generated from the declarations for the model with
    /// BatchNorm (the model without it has the same rows but the BatchNorm ones). One row per kind of series:
    /// the BatchNorm layers' series of one name share a row (`<bn>`).
    public static func documentationTable(for layout: ModelLayout) -> String {
        var rows = [String](), seen = Set<String>()
        for s in table(for: layout) {
            var path = String(s.path.dropFirst(RecordSchema.steps.count + 1)), shape = "[S]"
            switch s.source {
            case let .batchNorm(_, series): (path, shape) = ("<bn>/\(series.rawValue)", "[S, C]")
            case .probeChecksum, .probeLargest: shape = "[S, P]"
            case .probeNorm: shape = "[S, N]"
            case .loss, .accuracy: break
            }
            guard seen.insert(path).inserted else { continue }
            let kept = !s.keptOnlyInWindows ? "every step"
                : "steps inside windows; other rows \(s.kind == .int64 ? "−1" : s.kind == .float32 ? "the quiet NaN `0x7fc00000`" : "the quiet NaN `0x7ff8000000000000`")"
            rows.append("| `\(path)` | \(s.kind.rawValue) \(shape) | \(kept) | \(s.meaning) |")
        }
        return (["| path under `/steps` | type, shape | golden profile | meaning |", "|---|---|---|---|"] + rows).joined(separator: "\n")
    }

    // MARK: - Places

    /// The step and the trace place of the value at a flat index.
    public func position(index: Int) -> (step: Int, point: TracePoint) { (index / width + 1, points[index % width]) }

    /// "forward of bn2: bn2.running_std[11]", "backward of bn1: ∂bn1.weight, checksum", "loss: accuracy"
    /// (with `withStep`: "step 137, …").
    public func place(index: Int, withStep: Bool) -> String {
        (withStep ? "step \(index / width + 1), " : "") + placeName(index % width)
    }
}

/// A stored step rebuilt from its rows (`StepSeries.restore`), then turned back into the trainer's event.
struct ReplayedStep {
    var loss: Float = 0
    var accuracy: Float = 0
    var batchNorm: [[RecordSchema.BatchNormSeries: [Float]]]
    var probeChecksums: [UInt32] = []
    var probeLargest: [Double] = []
    /// By probe column (schema 6).
    var probeNorms: [Int: Double] = [:]

    init(layout: ModelLayout) { batchNorm = Array(repeating: [:], count: layout.batchNorms.count) }

    func outcome(step: Int, layout: ModelLayout, batchSize: Int, withProbes: Bool) -> StepOutcome {
        let statistics = layout.batchNorms.enumerated().map { i, bn in
            BatchNormStatistics(layer: bn.name, batchMean: batchNorm[i][.batchMean]!, batchStd: batchNorm[i][.batchStd]!,
                                runningMean: batchNorm[i][.runningMean], runningStd: batchNorm[i][.runningStd])
        }
        let probes = withProbes
            ? zip(probeChecksums, probeLargest).enumerated().map { j, p in Probe(checksum: p.0, largest: p.1, norm: probeNorms[j]) } : nil
        return StepOutcome(step: step, loss: loss, correct: RecordReplay.correct(accuracy: accuracy, batchSize: batchSize),
                           batchSize: batchSize, batchNorm: statistics, probes: probes)
    }
}
