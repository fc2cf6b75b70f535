import Foundation
import ReproNN
import ReproRecording
import ReproStorage
import ReproTraining

/// One recorded series compared between a golden and a candidate.
public struct SeriesResult: Sendable {
    /// Adds another comparison of the same dataset (another window's part of it).
    mutating func merge(_ other: SeriesResult) {
        elements += other.elements
        mismatches += other.mismatches
        worstRatio = max(worstRatio, other.worstRatio)
        if let u = other.worstULP { worstULP = max(worstULP ?? 0, u) }
        if other.worstIndex >= 0 && (worstIndex < 0 || other.worstAbsolute > worstAbsolute || (other.worstAbsolute.isNaN && !worstAbsolute.isNaN)) {
            (worstAbsolute, worstRelative, worstIndex, worstPlace) = (other.worstAbsolute, other.worstRelative, other.worstIndex, other.worstPlace)
        }
        if let d = other.firstDivergence, firstDivergence.map({ d < $0 }) ?? true { firstDivergence = d }
        if structural == nil { structural = other.structural }
        differing += other.differing
        beyondEnvelope += other.beyondEnvelope
        if other.worstEnvelopeRatio > worstEnvelopeRatio || (other.worstEnvelopeRatio.isNaN && !worstEnvelopeRatio.isNaN) {
            (worstEnvelopeRatio, worstEnvelopePlace) = (other.worstEnvelopeRatio, other.worstEnvelopePlace)
        }
        if let d = other.firstDifference, firstDifference.map({ d < $0 }) ?? true { firstDifference = d }
        if let d = other.firstBeyondEnvelope, firstBeyondEnvelope.map({ d < $0 }) ?? true { firstBeyondEnvelope = d }
        map.merge(other.map) { max($0, $1) }
    }

    public var path: String
    public var group: String
    public var elements: Int = 0
    public var mismatches: Int = 0
    public var isInteger = false
    public var worstAbsolute: Double = 0
    public var worstRelative: Double = 0
    /// Distance in units in the last place of the stored float type; nil for integer series and probes.
    public var worstULP: UInt64?
    /// Flat index and human-readable place (step, tensor, index) of the worst difference.
    public var worstIndex: Int = -1
    public var worstPlace: String = ""
    /// Under a tolerance: the largest |a − b| / (atol + rtol·|b|); a pass leaves 1 − this as margin.
    public var worstRatio: Double = 0
    /// The first mismatch in (step, pass order) terms.
    public var firstDivergence: Divergence?
    public var structural: String?
    /// Values whose bits differ (whatever the mode), and the first of them.
    public var differing: Int = 0
    public var firstDifference: Divergence?
    /// With a golden that has an envelope: values that differ by more than the safety factor times their
    /// envelope, or differ without an envelope of their own (integers, values no window covers) — the
    /// checksums and digests, which have no distance, aside. The first of them, and the largest
    /// |Δ| ÷ envelope of any value (∞ for one without an envelope) with its place.
    public var beyondEnvelope: Int = 0
    public var firstBeyondEnvelope: Divergence?
    public var worstEnvelopeRatio: Double = 0
    public var worstEnvelopePlace: String = ""
    /// For per-step series: per (step, place in the step's trace) the largest |Δ| ÷ envelope of a value that
    /// differs (∞ without an envelope; −1 for bits that differ with no distance: a checksum) — the HTML
    /// report's divergence map. Key: `DivergenceMap.key(step:place:)`.
    public var map: [Int: Double] = [:]
    public var passed: Bool { mismatches == 0 && structural == nil }

    init(path: String) {
        self.path = path
        group = String(path.split(separator: "/").first ?? "")
    }
}

/// Where a value sits in the order a step produces values: the localization order of a first divergence.
/// Within a step: the data order, then the step's trace in execution order (the model's own, from
/// `ModelLayout.trace`: the batch, each layer's forward with its BatchNorm statistics, the loss and
/// accuracy, each layer's backward, each parameter's update), then the state after the step (checkpoint
/// tensors in state_dict order, then the momentum buffers), then the per-epoch metrics and the evaluations.
/// At step 0 the trace places are those of the first forward pass (the evaluation before training).
public enum Stage: Comparable, Sendable {
    case data
    /// The index of a place in `ModelLayout.trace`.
    case trace(Int)
    case checkpointTensor(Int)
    case checkpointMomentum(Int)
    case epochMetrics
    case evaluation
    /// The training of the re-run itself failed (a BatchNorm division by zero, a non-finite loss).
    case trainingFailure
}

/// Where a difference first acts: the step, then the stage within that step, then the index.
public struct Divergence: Sendable, Comparable {
    public var step: Int
    public var stage: Stage
    public var index: Int
    public var description: String
    /// For a difference inside a step (or in the first forward pass, at step 0): the place in the step's
    /// execution order — pass, layer and quantity.
    public var point: TracePoint?
    /// The window whose re-run found it (window verification).
    public var window: Int?

    public static func < (a: Divergence, b: Divergence) -> Bool { (a.step, a.stage, a.index) < (b.step, b.stage, b.index) }
    public static func == (a: Divergence, b: Divergence) -> Bool { (a.step, a.stage, a.index) == (b.step, b.stage, b.index) }
}

public struct ComparisonReport: Sendable {
    public var golden: String
    public var candidate: String
    public var mode: ComparisonMode
    public var modeReason: String
    /// Configuration values that differ ("learning_rate: 0.01 vs 0.02"): reported first, as the likely
    /// cause of what follows; the verdict rests on the series.
    public var configurationDifferences: [String] = []
    public var series: [SeriesResult]
    /// Set when the re-run could not finish: the step and what happened. Drift, not bad input.
    public var trainingFailure: Divergence?
    /// For window verification: which windows were re-run, of how many, and the shard.
    public var windows: WindowsVerified?
    /// The per-step training loss of both sides, for the HTML report's curves.
    public var lossCurves: LossCurves?
    /// The golden's envelope (replicas per window) and the safety factor it is judged with; nil replicas:
    /// the golden has no envelope.
    public var envelopeReplicas: Int?
    public var envelopeFactor: Double = TolerancePolicy.envelopeSafetyFactor
    /// The places of a step's trace, in order (the divergence map's rows).
    public var tracePlaces: [String] = []
    /// Every series' map merged: (step, place) → the largest |Δ| ÷ envelope there.
    public var divergenceMap: [Int: Double] { series.reduce(into: [Int: Double]()) { $0.merge($1.map) { max($0, $1) } } }
    public var passed: Bool { series.allSatisfy(\.passed) && trainingFailure == nil }
    public var firstDivergence: Divergence? { (series.compactMap(\.firstDivergence) + [trainingFailure].compactMap { $0 }).min() }
    public var firstDifference: Divergence? { (series.compactMap(\.firstDifference) + [trainingFailure].compactMap { $0 }).min() }
    public var firstBeyondEnvelope: Divergence? {
        (series.compactMap(\.firstBeyondEnvelope) + [trainingFailure].compactMap { $0 }).min()
    }
    /// The series whose |Δ| ÷ envelope is largest.
    public var worstEnvelope: SeriesResult? {
        series.filter { $0.worstEnvelopeRatio > 0 || $0.worstEnvelopeRatio.isNaN }.max { $0.worstEnvelopeRatio < $1.worstEnvelopeRatio }
    }

    /// What the candidate's numbers are, whatever the gate: the same bits; different bits, each value
    /// within the safety factor times its round-off envelope; different bits within a tolerance (a golden
    /// without an envelope, judged by one); or drift.
    public enum Verdict: String, Sendable {
        case identical
        case withinRoundOff = "within-round-off"
        case withinTolerance = "within-tolerance"
        case drift
    }

    public var verdict: Verdict {
        let structural = series.contains { $0.structural != nil }
        if trainingFailure != nil || structural { return .drift }
        if series.allSatisfy({ $0.differing == 0 }) { return .identical }
        if envelopeReplicas != nil && series.allSatisfy({ $0.beyondEnvelope == 0 }) { return .withinRoundOff }
        if case .tolerance = mode, passed { return .withinTolerance }
        return .drift
    }
}

/// How one series' differences are measured against the golden's round-off envelope (`Envelope`).
struct EnvelopeJudge {
    /// Whether the golden has an envelope at all.
    var hasEnvelope: Bool
    /// This series' codes, aligned with the compared values; nil: it carries none.
    var codes: [UInt8]?
    var factor: Double
    static let none = EnvelopeJudge(hasEnvelope: false, codes: nil, factor: 0)
}

/// Compares a golden's datasets with a candidate's, series by series, and places every difference.
public enum Comparison {
    public static func compare(golden: Record, candidate: Record, mode: ComparisonMode, reason: String,
                               factor: Double = TolerancePolicy.envelopeSafetyFactor) throws(RecordError) -> ComparisonReport {
        var results = [SeriesResult]()
        let candidateSet = Set(candidate.comparedDatasets), goldenSet = Set(golden.comparedDatasets)
        let locator = Locator(record: golden)
        // Datasets a newer schema added are compared only when both records have that schema.
        let common = min(golden.header.schemaVersion, candidate.header.schemaVersion)
        for path in golden.comparedDatasets where RecordSchema.introduced(path) <= common {
            guard candidateSet.contains(path) else {
                var result = SeriesResult(path: path)
                result.structural = "missing from \(candidate.path)"
                result.firstDivergence = locator.divergence(path, index: 0, detail: "missing in the candidate")
                results.append(result)
                continue
            }
            let shapeA = golden.shape(of: path), shapeB = candidate.shape(of: path)
            guard shapeA == shapeB else {
                var result = SeriesResult(path: path)
                result.structural = "shape \(shapeB) instead of \(shapeA)"
                result.firstDivergence = locator.divergence(path, index: 0, detail: "shape \(shapeB) instead of \(shapeA)")
                results.append(result)
                continue
            }
            let (a, kind) = try golden.values(path)
            let (b, _) = try candidate.values(path)
            var magnitudes: ([Double], [Double])?
            if let i = RecordSchema.probeChecksumDatasets.firstIndex(of: path) {
                let largest = RecordSchema.probeLargestDatasets[i]
                if golden.shape(of: largest) == shapeA && candidate.shape(of: largest) == shapeA {
                    magnitudes = (try golden.values(largest).values, try candidate.values(largest).values)
                }
            }
            let judge = EnvelopeJudge(hasEnvelope: golden.envelopeReplicas != nil,
                                      codes: try golden.envelopeCodes(path, rows: 0..<(shapeA.first ?? 0)), factor: factor)
            results.append(compareValues(path, a, b, kind: kind, mode: mode, locator: locator, magnitudes: magnitudes, envelope: judge))
        }
        for extra in candidate.comparedDatasets where !goldenSet.contains(extra) && RecordSchema.introduced(extra) <= common {
            var result = SeriesResult(path: extra)
            result.structural = "not in the golden"
            result.firstDivergence = Locator(record: candidate).divergence(extra, index: 0, detail: "present only in the candidate")
            results.append(result)
        }
        var report = ComparisonReport(golden: golden.path, candidate: candidate.path, mode: mode, modeReason: reason,
                                      configurationDifferences: golden.config.differences(from: candidate.config), series: results)
        report.envelopeReplicas = golden.envelopeReplicas
        report.envelopeFactor = factor
        report.tracePlaces = golden.layout.trace.map(\.description)
        report.lossCurves = LossCurves(golden: try LossCurves.of(golden),
                                       candidate: try LossCurves.of(candidate).enumerated().map { ($0.offset + 1, $0.element) })
        return report
    }

    /// Compares the values of one series (`a` the golden's, `b` the candidate's, same length).
    /// `offset`: the flat index of a[0] in the whole dataset (the values may be a slice of it).
    /// `magnitudes`: for a probe checksum series, the same points' largest magnitudes (golden's, candidate's),
    /// which the first divergence quotes — a checksum says where, not by how much.
    /// `envelope`: the golden's round-off envelope of these values, if any.
    static func compareValues(_ path: String, _ a: [Double], _ b: [Double], kind: HDF5Reader.ElementKind, mode: ComparisonMode,
                              locator: Locator, offset: Int = 0, magnitudes: (golden: [Double], candidate: [Double])? = nil,
                              envelope: EnvelopeJudge = .none) -> SeriesResult {
        var result = SeriesResult(path: path)
        result.elements = a.count
        result.isInteger = kind.isInteger
        let judged = TolerancePolicy.judges(path, under: mode)
        let hasDistance = TolerancePolicy.hasDistance(path)
        let isChecksum = RecordSchema.probeChecksumDatasets.contains(path)
        if !kind.isInteger { result.worstULP = 0 }
        let mapped = locator.mapPlaces(path)
        var worstEnvelopeIndex = -1
        for i in a.indices {
            let g = a[i], c = b[i]
            let bitsEqual = kind == .float32 ? Float(g).bitPattern == Float(c).bitPattern : g.bitPattern == c.bitPattern
            let diff = abs(g - c)
            // A probe's largest magnitude is a float32 value of the tensor: its distance in float32 ULPs.
            let ulp = kind.isInteger ? nil : ulps(g, c, float32: kind == .float32 || RecordSchema.probeLargestDatasets.contains(path))
            func detail() -> String {
                if isChecksum {
                    // A checksum has no distance (any change of any bit moves it anywhere): the same point's
                    // largest magnitudes give one.
                    let magnitude = magnitudes.map { m -> String in
                        let (mg, mc) = (m.golden[i], m.candidate[i])
                        return ", max |x| \(mg) vs \(mc)" + (mg == mc ? " (equal)" : String(format: " (relative difference %.2g)", mg == 0 ? .infinity : abs(mc - mg) / mg))
                    } ?? ""
                    return String(format: "0x%08llx vs 0x%08llx", Int64(g), Int64(c)) + magnitude
                }
                return "\(format(g, kind)) vs \(format(c, kind))" + (ulp.map { " (\($0 == .max ? "∞" : String($0)) ULP)" } ?? " (Δ \(Int64(c) - Int64(g)))")
            }
            // Against the envelope: |Δ| ÷ its width (∞ without one: an integer, a value no window covers).
            var beyond = false, ratio = 0.0
            if !bitsEqual && envelope.hasEnvelope && hasDistance {
                let width = kind.isInteger ? 0 : envelope.codes.map { Envelope.width($0[i]) } ?? 0
                ratio = width == 0 || g.isNaN || c.isNaN || g.isInfinite || c.isInfinite ? .infinity : diff / width
                beyond = !(ratio <= envelope.factor)
                if ratio > result.worstEnvelopeRatio { (result.worstEnvelopeRatio, worstEnvelopeIndex) = (ratio, offset + i) }
            }
            let same: Bool
            switch mode {
            case _ where !judged: same = true
            case .exact: same = bitsEqual
            case .envelope: same = bitsEqual || (envelope.hasEnvelope && !beyond && !kind.isInteger)
            case let .tolerance(atol, rtol):
                if kind.isInteger { same = bitsEqual }
                else if g.isNaN || c.isNaN { same = g.isNaN && c.isNaN }
                else if g.isInfinite || c.isInfinite { same = g == c }
                else {
                    let ratio = diff / (atol + rtol * abs(g))
                    result.worstRatio = max(result.worstRatio, ratio)
                    same = ratio <= 1
                }
            }
            if !isChecksum && (diff > result.worstAbsolute || (diff.isNaN && !result.worstAbsolute.isNaN) || (result.worstIndex < 0 && !same)) {
                result.worstAbsolute = diff
                result.worstRelative = g == 0 ? (c == 0 ? 0 : .infinity) : diff / abs(g)
                result.worstIndex = offset + i
            }
            if let ulp { result.worstULP = max(result.worstULP ?? 0, ulp) }
            if !bitsEqual, let mapped {
                let key = DivergenceMap.key(step: mapped.step(offset + i), place: mapped.place(offset + i))
                let cell = !hasDistance ? -1 : envelope.hasEnvelope ? ratio : .infinity
                result.map[key] = max(result.map[key] ?? -1, cell)
            }
            if !bitsEqual {
                result.differing += 1
                if result.firstDifference == nil { result.firstDifference = locator.divergence(path, index: offset + i, detail: detail()) }
            }
            if beyond {
                result.beyondEnvelope += 1
                if result.firstBeyondEnvelope == nil {
                    let width = ratio.isFinite ? String(format: "%.3g envelopes (envelope %.2g)", ratio, diff / ratio) : "no envelope"
                    var d = locator.divergence(path, index: offset + i, detail: detail() + ", " + width)
                    d.description = d.description.replacingOccurrences(of: "first divergence at", with: "leaves its round-off envelope at")
                    result.firstBeyondEnvelope = d
                }
            }
            if !same {
                result.mismatches += 1
                if result.firstDivergence == nil {
                    result.firstDivergence = (mode.isEnvelope ? result.firstBeyondEnvelope : nil)
                        ?? locator.divergence(path, index: offset + i, detail: detail())
                }
            }
        }
        if result.worstIndex >= 0 { result.worstPlace = locator.place(path, index: result.worstIndex, withStep: true) }
        if worstEnvelopeIndex >= 0 { result.worstEnvelopePlace = locator.place(path, index: worstEnvelopeIndex, withStep: true) }
        return result
    }

    static func format(_ v: Double, _ kind: HDF5Reader.ElementKind) -> String {
        switch kind {
        case .float32: return "\(Float(v))"
        case .float64: return "\(v)"
        default: return "\(Int64(v))"
        }
    }

    /// Distance in units in the last place of the stored type (0 for equal bits, max for NaN against a number).
    static func ulps(_ a: Double, _ b: Double, float32: Bool) -> UInt64 {
        if a.isNaN || b.isNaN { return a.isNaN && b.isNaN ? 0 : .max }
        if float32 {
            func key(_ x: Float) -> Int64 { let bits = Int64(Int32(bitPattern: x.bitPattern)); return bits < 0 ? Int64(Int32.min) - bits : bits }
            return UInt64(abs(key(Float(a)) - key(Float(b))))
        }
        func key(_ x: Double) -> Int64 { let bits = Int64(bitPattern: x.bitPattern); return bits < 0 ? Int64.min &- bits : bits }
        let d = key(a).subtractingReportingOverflow(key(b))
        return d.overflow ? .max : d.partialValue.magnitude
    }
}

/// Places a value of a record in (step, stage) terms, from the record's plan and its model's layout.
struct Locator {
    let plan: RunPlan
    let batchSize: Int
    let layout: ModelLayout
    /// The record's per-step series by path (looked up, never iterated).
    let stepSeries: [String: StepSeries]

    init(record: Record) {
        plan = record.plan
        batchSize = record.config.batchSize
        layout = record.layout
        stepSeries = Dictionary(uniqueKeysWithValues: record.stepSeries.map { ($0.path, $0) })
    }

    func divergence(_ path: String, index: Int, detail: String) -> Divergence {
        let (step, stage) = position(path, index: index)
        var point: TracePoint?
        if case .trace(let i) = stage, i < layout.trace.count { point = layout.trace[i] }
        return Divergence(step: step, stage: stage, index: index,
                          description: "first divergence at step \(step), \(place(path, index: index)): \(detail)", point: point)
    }

    /// The step a value belongs to and its stage within the step.
    func position(_ path: String, index: Int) -> (step: Int, stage: Stage) {
        let parts = path.split(separator: "/").map(String.init)
        switch parts.first {
        case "data":
            if path == RecordSchema.epochOrder {
                let epoch = index / max(plan.trainCount, 1), position = index % max(plan.trainCount, 1)
                return (epoch * plan.stepsPerEpoch + position / batchSize + 1, .data)
            }
            // A digest stands for its epoch's whole order: the epoch's first step.
            if path == RecordSchema.epochOrderDigests { return ((index / 32) * plan.stepsPerEpoch + 1, .data) }
            return (0, .data)
        case "steps":
            guard let series = stepSeries[path] else { return (0, .trace(layout.trace.count)) }
            let (step, point) = series.position(index: index)
            return (step, .trace(traceIndex(point)))
        case "checkpoints":
            let step = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            let tensor = layout.stateDict.firstIndex { $0.name == parts.last } ?? 0
            return (step, parts.contains("optimizer") ? .checkpointMomentum(tensor) : .checkpointTensor(tensor))
        case "epochs":
            return (min((index + 1) * plan.stepsPerEpoch, plan.totalSteps), .epochMetrics)
        default:  // evaluation
            if path == RecordSchema.forwardProbeChecksums || path == RecordSchema.forwardProbeLargest {
                return (0, .trace(traceIndex(layout.forwardProbePoints[index % layout.forwardProbePoints.count])))
            }
            return (parts.count > 1 && parts[1] == EvaluationPhase.before.rawValue ? 0 : plan.totalSteps, .evaluation)
        }
    }

    /// For a per-step series or the first forward pass's probes: each flat index's step and place in the
    /// step's trace (the divergence map's cell), worked out once per column; nil for other datasets.
    func mapPlaces(_ path: String) -> (step: (Int) -> Int, place: (Int) -> Int)? {
        if let series = stepSeries[path] {
            let places = series.points.map(traceIndex), width = series.width
            return ({ $0 / width + 1 }, { places[$0 % width] })
        }
        if path == RecordSchema.forwardProbeChecksums || path == RecordSchema.forwardProbeLargest {
            let places = layout.forwardProbePoints.map(traceIndex)
            return ({ _ in 0 }, { places[$0 % places.count] })
        }
        return nil
    }

    /// The place of a point in the step's trace (the end, should a record name a point the model lacks).
    func traceIndex(_ point: TracePoint) -> Int { layout.trace.firstIndex(of: point) ?? layout.trace.count }

    /// "forward of bn2: bn2.running_std[11]" (with `withStep`: "step 137, forward of bn2: …"), "backward of
    /// bn1: ∂bn1.weight, checksum", "checkpoint 00000064 conv1.weight[3]", "loss", "epochs/val_loss[0]".
    func place(_ path: String, index: Int, withStep: Bool = false) -> String {
        let parts = path.split(separator: "/").map(String.init)
        if let series = stepSeries[path] { return series.place(index: index, withStep: withStep) }
        if RecordSchema.probeChecksumDatasets.contains(path) || RecordSchema.probeLargestDatasets.contains(path) {
            let points = layout.forwardProbePoints
            let summary = RecordSchema.probeChecksumDatasets.contains(path) ? "checksum" : "max |x|"
            return (withStep ? "step 0 (evaluation before training), " : "") + "\(points[index % points.count]), \(summary)"
        }
        if path == RecordSchema.epochOrder {
            let n = max(plan.trainCount, 1)
            return "epoch \(index / n) order[\(index % n)]"
        }
        if path == RecordSchema.epochOrderDigests { return "epoch \(index / 32) order (sha256 byte \(index % 32))" }
        if parts.first == "checkpoints", parts.count >= 4 {
            let kind = parts.contains("optimizer") ? "momentum_buffer " : ""
            return "checkpoint \(parts[1]) \(kind)\(parts.last!)[\(index)]"
        }
        return "\(path.dropFirst())[\(index)]"
    }
}

/// The windows one window verification re-ran.
public struct WindowsVerified: Sendable {
    public var verified: [TrainingWindow]
    public var total: Int
    public var shard: Shard?

    public var description: String {
        let list = verified.count == total ? "all \(total) windows" : "windows \(verified.map { String($0.index) }.joined(separator: ", ")) of \(total)"
        return list + (shard.map { " (shard \($0))" } ?? "")
    }
}

/// The golden's per-step loss (every step) and the candidate's at the steps it ran (all of them for a
/// comparison of two records or a full re-run; the windows' steps for window verification).
public struct LossCurves: Sendable {
    public var golden: [Float]
    public var candidate: [(step: Int, loss: Float)]

    public init(golden: [Float], candidate: [(step: Int, loss: Float)]) {
        self.golden = golden
        self.candidate = candidate
    }

    static func of(_ record: Record) throws(RecordError) -> [Float] { try record.values(RecordSchema.stepLoss).values.map(Float.init) }
}

/// The divergence map's cells: (step, place in the step's trace) in one key.
public enum DivergenceMap {
    public static func key(step: Int, place: Int) -> Int { step << 16 | place }
    public static func cell(_ key: Int) -> (step: Int, place: Int) { (key >> 16, key & 0xFFFF) }
}
