import Foundation

/// Renders comparison reports: text for people (verdict first), JSON and JUnit XML for machines.
public enum Report {
    public static func text(_ r: ComparisonReport, verbose: Bool = false) -> String {
        var lines = [String]()
        let failed = r.series.filter { !$0.passed }
        if r.passed {
            lines.append("PASS \(r.golden): \(r.series.count) series, \(r.series.reduce(0) { $0 + $1.elements }) values, \(r.mode)")
        } else {
            lines.append("DRIFT \(r.golden): \(failed.count) of \(r.series.count) series differ (\(r.mode))")
            if let first = r.firstDivergence { lines.append("  " + first.description) }
        }
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
                line += String(format: "; worst |Δ| %.3g (rel %.3g, %@ ULP) at %@", s.worstAbsolute, s.worstRelative,
                               s.worstULP == .max ? "∞" : "\(s.worstULP)", s.worstPlace)
            }
            if case .tolerance = r.mode, s.passed { line += String(format: "; margin %.0f%%", 100 * (1 - s.worstRatio)) }
            lines.append(line)
        }
        if hidden > 0 { lines.append("  … and \(hidden) more series that differ (--verbose lists every series)") }
        return lines.joined(separator: "\n")
    }

    public static func jsonObject(_ r: ComparisonReport) -> [String: Any] {
        var mode: [String: Any] = ["kind": r.mode == .exact ? "exact" : "tolerance", "reason": r.modeReason]
        if case let .tolerance(a, rel) = r.mode { mode["absolute"] = a; mode["relative"] = rel }
        if let weak = TolerancePolicy.weakness(of: r.mode) { mode["weakness"] = weak }
        var object: [String: Any] = [
            "golden": r.golden, "candidate": r.candidate, "passed": r.passed, "mode": mode,
            "series": r.series.map { s -> [String: Any] in
                var o: [String: Any] = ["path": s.path, "group": s.group, "elements": s.elements, "mismatches": s.mismatches,
                                        "passed": s.passed, "worst_ulp": s.worstULP == .max ? -1 : Int(s.worstULP)]
                if s.worstAbsolute.isFinite { o["worst_absolute"] = s.worstAbsolute }
                if s.worstRelative.isFinite { o["worst_relative"] = s.worstRelative }
                if s.worstIndex >= 0 { o["worst_index"] = s.worstIndex; o["worst_place"] = s.worstPlace }
                if case .tolerance = r.mode { o["worst_ratio"] = s.worstRatio.isFinite ? s.worstRatio : -1 }
                if let d = s.firstDivergence { o["first_divergence"] = ["step": d.step, "message": d.description] }
                if let st = s.structural { o["structural"] = st }
                return o
            },
        ]
        if let d = r.firstDivergence { object["first_divergence"] = ["step": d.step, "message": d.description] }
        return object
    }

    /// One JSON document for a whole invocation: {"passed": Bool, "reports": [...], "checks": ...}.
    public static func json(_ reports: [ComparisonReport], extra: [String: Any] = [:]) throws -> Data {
        var object = extra
        object["passed"] = reports.allSatisfy(\.passed) && (extra["checks_passed"] as? Bool ?? true)
        object["reports"] = reports.map(jsonObject)
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    /// JUnit XML: one <testsuite> per golden, one <testcase> per series group (steps, checkpoints, epochs,
    /// evaluation, data), failing with the group's first divergence.
    public static func junit(_ reports: [ComparisonReport]) -> String {
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"repro verify\">\n"
        for r in reports {
            var groups = [String]()
            for s in r.series where !groups.contains(s.group) { groups.append(s.group) }
            let failures = groups.filter { g in r.series.contains { $0.group == g && !$0.passed } }.count
            xml += "  <testsuite name=\"\(escape(r.golden))\" tests=\"\(groups.count)\" failures=\"\(failures)\">\n"
            for g in groups {
                let members = r.series.filter { $0.group == g }
                xml += "    <testcase classname=\"\(escape(r.golden))\" name=\"\(escape(g))\">"
                let bad = members.filter { !$0.passed }
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
        return xml + "</testsuites>\n"
    }
}
