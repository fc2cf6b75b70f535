import Foundation
import ReproRecording

/// Everything one `repro verify` or `repro compare` invocation found, with one meaning per exit code:
/// 0 every golden matches and the BatchNorm checks pass; 1 drift or a failing BatchNorm check; 2 a golden,
/// record or data file could not be used (the others are still verified and reported).
public struct Verdict: Sendable {
    public var reports: [ComparisonReport] = []
    /// (file, problem) for every input that could not be used.
    public var unusable: [(file: String, problem: String)] = []
    /// The BatchNorm check table (verify and check-bn run it; compare does not).
    public var checks: [CheckRow]?

    public init() {}

    public var driftPassed: Bool { reports.allSatisfy(\.passed) }
    public var checksPassed: Bool { checks?.allSatisfy(\.passed) ?? true }

    public var exitCode: Int32 {
        if !unusable.isEmpty { return 2 }
        return driftPassed && checksPassed ? 0 : 1
    }
}

/// Renders comparison reports: text for people (verdict first), JSON and JUnit XML for machines.
public enum Report {
    public static func text(_ r: ComparisonReport, verbose: Bool = false) -> String {
        var lines = [String]()
        let failed = r.series.filter { !$0.passed }
        let scope = r.windows.map { " in \($0.description)" } ?? ""
        let verdict = r.verdict, differing = r.series.filter { $0.differing > 0 }.count
        let values = r.series.reduce(0) { $0 + $1.elements }
        switch (r.passed, verdict) {
        case (true, .identical):
            lines.append("PASS \(r.golden): identical: \(r.series.count) series, \(values) values\(scope), \(r.mode)")
        case (true, .withinRoundOff):
            lines.append("PASS \(r.golden): within round-off: \(differing) of \(r.series.count) series differ, every value within "
                         + "\(r.envelopeFactor.shortText)× its envelope\(scope), \(r.mode)")
        case (true, _):
            lines.append("PASS \(r.golden): \(differing) of \(r.series.count) series differ within the tolerance\(scope), \(r.mode)")
        case (false, .withinRoundOff):
            lines.append("DIFFERS \(r.golden): bits differ in \(differing) of \(r.series.count) series\(scope), every value within round-off "
                         + "(\(r.envelopeFactor.shortText)× its envelope): re-record if intended, or gate with --tolerance envelope (\(r.mode))")
        case (false, _):
            let what = r.trainingFailure != nil ? "the re-run failed" : "\(failed.count) of \(r.series.count) series differ"
            lines.append("DRIFT \(r.golden): \(what)\(scope) (\(r.mode))")
        }
        // The configurations first: when they differ, that is the likely cause of everything below.
        for difference in r.configurationDifferences { lines.append("  configuration differs: \(difference)") }
        lines.append("  verdict: \(verdict.rawValue)" + envelopeSummary(r))
        if verdict != .identical, let first = r.firstDifference, first != r.firstDivergence || r.passed {
            lines.append("  bits " + first.description.replacingOccurrences(of: "first divergence at", with: "first differ at"))
        }
        if verdict == .drift, r.envelopeReplicas != nil, let beyond = r.firstBeyondEnvelope, beyond != r.firstDivergence {
            lines.append("  " + beyond.description)
        }
        if !r.passed, let first = r.firstDivergence { lines.append("  " + first.description) }
        // A re-run that failed later than the first difference: the failure too.
        if let failure = r.trainingFailure, let first = r.firstDivergence, failure != first { lines.append("  " + failure.description) }
        lines.append("  comparison: \(r.mode), because \(r.modeReason)")
        if let weak = TolerancePolicy.weakness(of: r.mode) { lines.append("  note: " + weak) }
        // Without --verbose: the failing series in order of their first divergence, at most 12.
        var shown = verbose ? r.series : failed.sorted { ($0.firstDivergence?.step ?? .max, $0.path) < ($1.firstDivergence?.step ?? .max, $1.path) }
        let hidden = verbose ? 0 : max(0, shown.count - 12)
        if !verbose { shown = Array(shown.prefix(12)) }
        for s in shown {
            if let structural = s.structural { lines.append("  ✗ \(s.path): \(structural)"); continue }
            let mark = s.passed ? "✓" : "✗"
            var line = "  \(mark) \(s.path): \(s.elements) values, \(s.mismatches) differ"
            if s.worstIndex >= 0 && (s.worstAbsolute > 0 || s.worstAbsolute.isNaN) {
                if s.isInteger {
                    line += "; worst |Δ| \(Int64(s.worstAbsolute)) at \(s.worstPlace)"
                } else {
                    let ulp = s.worstULP.map { $0 == .max ? ", ∞ ULP" : ", \($0) ULP" } ?? ""
                    line += String(format: "; worst |Δ| %.3g (rel %.3g%@) at %@", s.worstAbsolute, s.worstRelative, ulp, s.worstPlace)
                }
            }
            if case .tolerance = r.mode, s.passed { line += String(format: "; margin %.0f%%", 100 * (1 - s.worstRatio)) }
            lines.append(line)
        }
        if hidden > 0 { lines.append("  … and \(hidden) more series that differ (--verbose lists every series)") }
        return lines.joined(separator: "\n")
    }

    /// "; 12 values differ, worst 2.3 envelopes at …; envelope of 8 replicas per window, safety factor 8", or
    /// a note that the golden has none.
    static func envelopeSummary(_ r: ComparisonReport) -> String {
        let differing = r.series.reduce(0) { $0 + $1.differing }
        var text = differing == 0 ? "" : "; \(differing) values differ"
        guard let replicas = r.envelopeReplicas else {
            return text + (differing == 0 ? "" : "; the golden has no round-off envelope (repro record --like GOLDEN adds one)")
        }
        if let worst = r.worstEnvelope {
            text += worst.worstEnvelopeRatio.isFinite ? String(format: ", worst %.3g envelopes at ", worst.worstEnvelopeRatio) + worst.worstEnvelopePlace
                : ", worst without an envelope at " + worst.worstEnvelopePlace
        }
        return text + "; envelope of \(replicas) replicas per window, safety factor \(r.envelopeFactor.shortText)"
    }

    public static func jsonObject(_ r: ComparisonReport) -> [String: Any] {
        var mode: [String: Any] = ["kind": r.mode == .exact ? "exact" : r.mode.isEnvelope ? "envelope" : "tolerance", "reason": r.modeReason]
        if case let .tolerance(a, rel) = r.mode { mode["absolute"] = a; mode["relative"] = rel }
        if case let .envelope(f) = r.mode { mode["factor"] = f }
        if let weak = TolerancePolicy.weakness(of: r.mode) { mode["weakness"] = weak }
        var object: [String: Any] = [
            "golden": r.golden, "candidate": r.candidate, "passed": r.passed, "mode": mode, "verdict": r.verdict.rawValue,
            "configuration_differences": r.configurationDifferences,
            "series": r.series.map { s -> [String: Any] in
                var o: [String: Any] = ["path": s.path, "group": s.group, "elements": s.elements, "mismatches": s.mismatches,
                                        "passed": s.passed, "integer": s.isInteger]
                if let ulp = s.worstULP { o["worst_ulp"] = ulp == .max ? -1 : Int(ulp) }
                if s.worstAbsolute.isFinite { o["worst_absolute"] = s.isInteger ? Int(s.worstAbsolute) as Any : s.worstAbsolute }
                if s.worstRelative.isFinite { o["worst_relative"] = s.worstRelative }
                if s.worstIndex >= 0 { o["worst_index"] = s.worstIndex; o["worst_place"] = s.worstPlace }
                if case .tolerance = r.mode { o["worst_ratio"] = s.worstRatio.isFinite ? s.worstRatio : -1 }
                o["differing"] = s.differing
                if r.envelopeReplicas != nil {
                    o["beyond_envelope"] = s.beyondEnvelope
                    // |Δ| ÷ envelope; −1: a value that differs without an envelope of its own.
                    o["worst_envelope_ratio"] = s.worstEnvelopeRatio.isFinite ? s.worstEnvelopeRatio : -1
                    if !s.worstEnvelopePlace.isEmpty { o["worst_envelope_place"] = s.worstEnvelopePlace }
                }
                if let d = s.firstDivergence { o["first_divergence"] = ["step": d.step, "message": d.description] }
                if let st = s.structural { o["structural"] = st }
                return o
            },
        ]
        func place(_ d: Divergence) -> [String: Any] {
            var first: [String: Any] = ["step": d.step, "message": d.description]
            if let w = d.window { first["window"] = w }
            // Where in the step: the pass ("data", "forward", "loss", "backward", "update"), the layer and the
            // point's name in /steps/probes@points form.
            if let p = d.point { first["pass"] = p.pass.rawValue; first["layer"] = p.layer; first["place"] = p.key }
            return first
        }
        if let d = r.firstDivergence { object["first_divergence"] = place(d) }
        if let d = r.firstDifference { object["first_difference"] = place(d) }
        if let replicas = r.envelopeReplicas {
            var envelope: [String: Any] = ["replicas": replicas, "factor": r.envelopeFactor]
            if let worst = r.worstEnvelope {
                envelope["worst_ratio"] = worst.worstEnvelopeRatio.isFinite ? worst.worstEnvelopeRatio : -1
                envelope["worst_place"] = worst.worstEnvelopePlace
            }
            if let d = r.firstBeyondEnvelope { envelope["first_beyond"] = place(d) }
            object["envelope"] = envelope
        }
        if let f = r.trainingFailure { object["training_failure"] = ["step": f.step, "message": f.description] }
        if let w = r.windows {
            var windows: [String: Any] = ["verified": w.verified.map(\.index), "total": w.total,
                                          "steps": w.verified.map { [$0.start, $0.end] }]
            if let shard = w.shard { windows["shard"] = ["index": shard.index, "count": shard.count] }
            object["windows"] = windows
        }
        return object
    }

    /// One JSON document for a whole invocation: the overall verdict, and apart from each other the drift
    /// verdict (`drift_passed`, `reports`), the BatchNorm checks (`checks_passed`, `checks`) and the
    /// inputs that could not be used (`unusable`).
    public static func json(_ verdict: Verdict) throws -> Data {
        var object: [String: Any] = [
            "passed": verdict.exitCode == 0, "exit_code": Int(verdict.exitCode),
            "drift_passed": verdict.driftPassed, "reports": verdict.reports.map(jsonObject),
            "unusable": verdict.unusable.map { ["file": $0.file, "problem": $0.problem] },
        ]
        if let checks = verdict.checks { object["checks_passed"] = verdict.checksPassed; object["checks"] = BatchNormChecks.json(checks) }
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    /// JUnit XML: one <testsuite> per golden with one <testcase> per series group (steps, checkpoints,
    /// epochs, evaluation, data), failing with the group's first divergence; an unusable golden is a suite
    /// with one error; the BatchNorm checks are a suite of their own, one test case per check.
    public static func junit(_ verdict: Verdict) -> String {
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"repro verify\">\n"
        for r in verdict.reports {
            var groups = [String]()
            for s in r.series where !groups.contains(s.group) { groups.append(s.group) }
            if r.trainingFailure != nil { groups.append("training") }
            let failures = groups.filter { g in g == "training" || r.series.contains { $0.group == g && !$0.passed } }.count
            let suite = r.golden + (r.windows?.shard.map { " [shard \($0)]" } ?? "")
            xml += "  <testsuite name=\"\(escape(suite))\" tests=\"\(groups.count)\" failures=\"\(failures)\">\n"
            xml += "    <properties><property name=\"verdict\" value=\"\(r.verdict.rawValue)\"/>"
                + (r.windows.map { "<property name=\"windows\" value=\"\(escape($0.description))\"/>" } ?? "") + "</properties>\n"
            for g in groups {
                xml += "    <testcase classname=\"\(escape(r.golden))\" name=\"\(escape(g))\">"
                if g == "training", let f = r.trainingFailure {
                    xml += "\n      <failure message=\"\(escape(f.description))\"></failure>\n    </testcase>\n"
                    continue
                }
                let bad = r.series.filter { $0.group == g && !$0.passed }
                if bad.isEmpty {
                    xml += "</testcase>\n"
                } else {
                    let first = bad.compactMap(\.firstDivergence).min()?.description ?? "\(bad.count) series differ"
                    let detail = bad.map { "\($0.path): \($0.structural ?? "\($0.mismatches) of \($0.elements) values differ")" }.joined(separator: "\n")
                    xml += "\n      <failure message=\"\(escape(first))\">\(escape(detail))</failure>\n    </testcase>\n"
                }
            }
            xml += "  </testsuite>\n"
        }
        for (file, problem) in verdict.unusable {
            xml += "  <testsuite name=\"\(escape(file))\" tests=\"1\" failures=\"0\" errors=\"1\">\n"
            xml += "    <testcase classname=\"\(escape(file))\" name=\"readable\">\n      <error message=\"\(escape(problem))\"></error>\n    </testcase>\n  </testsuite>\n"
        }
        if let checks = verdict.checks {
            let scored = checks.filter { $0.bound.isFinite }
            xml += "  <testsuite name=\"BatchNorm checks\" tests=\"\(scored.count)\" failures=\"\(scored.filter { !$0.passed }.count)\">\n"
            for row in scored {
                xml += "    <testcase classname=\"BatchNorm checks\" name=\"\(escape(row.caseName + " | " + row.check))\">"
                if row.passed { xml += "</testcase>\n"; continue }
                xml += "\n      <failure message=\"\(escape(String(format: "worst error %.3e above the bound %.3e", row.worstError, row.bound)))\"></failure>\n    </testcase>\n"
            }
            xml += "  </testsuite>\n"
        }
        return xml + "</testsuites>\n"
    }
}
