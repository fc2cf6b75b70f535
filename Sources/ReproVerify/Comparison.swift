import Foundation
import ReproStorage

/// One recorded series compared between a golden and a candidate.
public struct SeriesResult: Sendable {
    public var path: String
    public var group: String
    public var elements: Int
    public var mismatches: Int
    public var worstAbsolute: Double
    public var worstRelative: Double
    public var worstULP: UInt64
    /// Flat index and human-readable place (step, tensor, index) of the worst difference.
    public var worstIndex: Int
    public var worstPlace: String
    /// Under a tolerance: the largest |a − b| / (atol + rtol·|b|); a pass leaves 1 − this as margin.
    public var worstRatio: Double
    /// The first mismatch in (step, forward order) terms.
    public var firstDivergence: Divergence?
    public var structural: String?
    public var passed: Bool { mismatches == 0 && structural == nil }
}

/// Where a difference first acts: the step, then the position in forward order within that step.
public struct Divergence: Sendable, Comparable {
    public var step: Int
    public var rank: Int
    public var index: Int
    public var description: String

    public static func < (a: Divergence, b: Divergence) -> Bool {
        (a.step, a.rank, a.index) < (b.step, b.rank, b.index)
    }
    public static func == (a: Divergence, b: Divergence) -> Bool { (a.step, a.rank, a.index) == (b.step, b.rank, b.index) }
}

public struct ComparisonReport: Sendable {
    public var golden: String
    public var candidate: String
    public var mode: ComparisonMode
    public var modeReason: String
    public var series: [SeriesResult]
    public var passed: Bool { series.allSatisfy(\.passed) }
    public var firstDivergence: Divergence? { series.compactMap(\.firstDivergence).min() }
}

/// Compares every dataset of a golden with the candidate's, series by series.
public enum Comparison {
    public static func compare(golden: OpenRecord, candidate: OpenRecord, mode: ComparisonMode, reason: String) throws -> ComparisonReport {
        var results = [SeriesResult]()
        let candidateSet = Set(candidate.comparedDatasets)
        for path in golden.comparedDatasets {
            var result = SeriesResult(path: path, group: String(path.split(separator: "/").first ?? ""), elements: 0, mismatches: 0,
                                      worstAbsolute: 0, worstRelative: 0, worstULP: 0, worstIndex: -1, worstPlace: "",
                                      worstRatio: 0, firstDivergence: nil, structural: nil)
            guard candidateSet.contains(path) else {
                result.structural = "missing from \(candidate.path)"
                result.firstDivergence = locate(path, index: 0, in: golden, detail: "missing in the candidate")
                results.append(result)
                continue
            }
            let (a, kind) = try golden.values(path)
            let (b, _) = try candidate.values(path)
            let shapeA = try golden.reader.shape(of: path), shapeB = try candidate.reader.shape(of: path)
            guard shapeA == shapeB else {
                result.structural = "shape \(shapeB) instead of \(shapeA)"
                result.firstDivergence = locate(path, index: 0, in: golden, detail: "shape \(shapeB) instead of \(shapeA)")
                results.append(result)
                continue
            }
            result.elements = a.count
            let integer = kind == .int32 || kind == .int64 || kind == .uint8
            for i in a.indices {
                let g = a[i], c = b[i]
                let same: Bool
                if integer || mode == .exact {
                    same = kind == .float32 ? Float(g).bitPattern == Float(c).bitPattern : g.bitPattern == c.bitPattern
                } else if case let .tolerance(atol, rtol) = mode {
                    if g.isNaN || c.isNaN { same = g.isNaN && c.isNaN }
                    else if g.isInfinite || c.isInfinite { same = g == c }
                    else {
                        let ratio = abs(g - c) / (atol + rtol * abs(g))
                        result.worstRatio = max(result.worstRatio, ratio)
                        same = ratio <= 1
                    }
                } else { same = true }
                let diff = abs(g - c)
                let ulp = ulps(g, c, float32: kind == .float32)
                if diff > result.worstAbsolute || (diff.isNaN && !result.worstAbsolute.isNaN) || (result.worstIndex < 0 && !same) {
                    result.worstAbsolute = diff
                    result.worstRelative = g == 0 ? (c == 0 ? 0 : .infinity) : diff / abs(g)
                    result.worstIndex = i
                }
                result.worstULP = max(result.worstULP, ulp)
                if !same {
                    result.mismatches += 1
                    if result.firstDivergence == nil {
                        result.firstDivergence = locate(path, index: i, in: golden,
                                                        detail: "\(format(g, kind)) vs \(format(c, kind)) (\(ulp) ULP)")
                    }
                }
            }
            if result.worstIndex >= 0 { result.worstPlace = place(path, index: result.worstIndex, in: golden, withStep: true) }
            results.append(result)
        }
        for extra in candidate.comparedDatasets where !golden.comparedDatasets.contains(extra) {
            var result = SeriesResult(path: extra, group: String(extra.split(separator: "/").first ?? ""), elements: 0, mismatches: 0,
                                      worstAbsolute: 0, worstRelative: 0, worstULP: 0, worstIndex: -1, worstPlace: "",
                                      worstRatio: 0, firstDivergence: nil, structural: "not in the golden")
            result.firstDivergence = locate(extra, index: 0, in: candidate, detail: "present only in the candidate")
            results.append(result)
        }
        return ComparisonReport(golden: golden.path, candidate: candidate.path, mode: mode, modeReason: reason, series: results)
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

    /// Forward order within a step: data first, then each BN layer's batch statistics and buffers in layer
    /// order, the loss and accuracy, then checkpoint tensors in state_dict order, epoch and evaluation metrics.
    static func locate(_ path: String, index: Int, in record: OpenRecord, detail: String) -> Divergence {
        let parts = path.split(separator: "/").map(String.init)
        let plan = record.plan, batch = record.config.batchSize
        let layers = ["bn1", "bn2", "bn3", "bn4"]
        var step = 0, rank = 0
        switch parts.first {
        case "data":
            if path == RecordSchema.epochOrder {
                let epoch = index / max(plan.trainCount, 1), position = index % max(plan.trainCount, 1)
                step = epoch * plan.stepsPerEpoch + position / batch + 1
            }
            rank = 0
        case "steps":
            let channels = parts.count == 3 ? record.batchNormChannels[parts[1]] ?? 1 : 1
            step = index / channels + 1
            if parts.count == 3, let layer = layers.firstIndex(of: parts[1]), let s = RecordSchema.batchNormSeries.firstIndex(of: parts[2]) {
                rank = 10 + layer * 4 + s
            } else {
                rank = parts.last == "loss" ? 40 : 41
            }
        case "checkpoints":
            step = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            let names = record.stateOrder.map(\.name)
            rank = 100 + (names.firstIndex(of: parts.last ?? "") ?? 0) + (parts.contains("optimizer") ? 50 : 0)
        case "epochs":
            step = min((index + 1) * plan.stepsPerEpoch, plan.totalSteps)
            rank = 200
        case "evaluation":
            step = parts.count > 1 && parts[1] == "before" ? 0 : plan.totalSteps
            rank = 300
        default:
            rank = 400
        }
        return Divergence(step: step, rank: rank, index: index,
                          description: "first divergence at step \(step): \(place(path, index: index, in: record)) \(detail)")
    }

    /// "bn2.running_std[11]" (with `withStep`: "step 137 bn2.running_std[11]"), "checkpoint 00000064
    /// conv1.weight[3]", "loss", "epochs/val_loss[0]".
    static func place(_ path: String, index: Int, in record: OpenRecord, withStep: Bool = false) -> String {
        let parts = path.split(separator: "/").map(String.init)
        if parts.first == "steps" {
            let channels = parts.count == 3 ? record.batchNormChannels[parts[1]] ?? 1 : 1
            let prefix = withStep ? "step \(index / channels + 1) " : ""
            if parts.count == 3, record.batchNormChannels[parts[1]] != nil { return prefix + "\(parts[1]).\(parts[2])[\(index % channels)]" }
            return prefix + (parts.last ?? path)
        }
        if parts.first == "checkpoints", parts.count >= 4 {
            let kind = parts.contains("optimizer") ? "momentum_buffer " : ""
            return "checkpoint \(parts[1]) \(kind)\(parts.last!)[\(index)]"
        }
        return "\(path.dropFirst())[\(index)]"
    }
}

