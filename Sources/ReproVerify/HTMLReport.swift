import Foundation
import ReproRecording

/// One self-contained HTML file for a verification or comparison: per golden the verdict, the first
/// divergence, the per-step loss of golden and candidate, the absolute difference per step on a log axis
/// with the first divergent step marked, and the series that differ. Inline SVG and CSS only: no scripts,
/// fonts or anything fetched; the charts scale to the window's width, so a phone shows them too.
public enum HTMLReport {
    public static func render(_ verdict: Verdict, title: String) -> String {
        var body = "<h1>\(escape(title))</h1>\n"
        body += "<p class=\"verdict \(verdict.exitCode == 0 ? "pass" : "fail")\">"
            + (verdict.exitCode == 0 ? "PASS" : verdict.exitCode == 1 ? "FAIL" : "UNUSABLE INPUT")
            + " — exit code \(verdict.exitCode)</p>\n"
        for (file, problem) in verdict.unusable {
            body += "<section><h2>\(escape(file))</h2><p class=\"verdict fail\">cannot be used</p><p>\(escape(problem))</p></section>\n"
        }
        for r in verdict.reports { body += section(r) }
        if let checks = verdict.checks {
            let scored = checks.filter { $0.bound.isFinite }
            body += "<section><h2>BatchNorm checks</h2><p class=\"verdict \(verdict.checksPassed ? "pass" : "fail")\">"
                + "\(scored.filter(\.passed).count) of \(scored.count) pass</p>"
            let failing = scored.filter { !$0.passed }
            if !failing.isEmpty {
                body += table(["case", "check", "worst error", "bound"], failing.map {
                    [$0.caseName, $0.check, String(format: "%.3e", $0.worstError), String(format: "%.3e", $0.bound)]
                })
            }
            body += "</section>\n"
        }
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title))</title>
            <style>
            body { font-family: sans-serif; margin: 0 auto; max-width: 960px; padding: 0.8em; color: #222; }
            h1 { font-size: 1.3em; } h2 { font-size: 1.1em; word-break: break-all; }
            .verdict { font-weight: bold; font-size: 1.1em; } .pass { color: #17692a; } .fail { color: #b3261e; }
            .divergence { background: #fdeceb; border-left: 4px solid #b3261e; padding: 0.4em 0.6em; word-break: break-word; }
            svg { width: 100%; height: auto; display: block; margin: 0.6em 0; }
            .table { overflow-x: auto; } table { border-collapse: collapse; font-size: 0.85em; }
            td, th { border-bottom: 1px solid #ddd; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
            .note { color: #555; font-size: 0.9em; } .chart { margin: 0.8em 0 0 0; font-size: 0.9em; }
            @media (max-width: 600px) {
              svg text { font-size: 22px; }
              table, tbody, tr, td { display: block; } tr:first-child { display: none; }
              tr { border-bottom: 1px solid #bbb; padding: 0.3em 0; } td { border: none; padding: 0.1em 0.3em; }
            }
            </style></head><body>
            \(body)</body></html>

            """
    }

    static func section(_ r: ComparisonReport) -> String {
        var out = "<section><h2>\(escape(r.golden))</h2>\n"
        let failed = r.series.filter { !$0.passed }
        let verdict = r.verdict.rawValue
        out += "<p class=\"verdict \(r.passed ? "pass" : "fail")\">" + (r.passed ? "PASS" : r.verdict == .withinRoundOff ? "DIFFERS" : "DRIFT")
            + " — \(verdict) — \(r.series.count) series" + (r.windows.map { ", \(escape($0.description))" } ?? "") + ", \(escape(r.mode.description))</p>\n"
        for d in r.configurationDifferences { out += "<p>configuration differs: \(escape(d))</p>\n" }
        if !r.passed, let first = r.firstDivergence { out += "<p class=\"divergence\">\(escape(first.description))</p>\n" }
        out += "<p class=\"note\">candidate: \(escape(r.candidate)); comparison \(escape(r.mode.description)) because \(escape(r.modeReason))</p>\n"
        if let beyond = r.firstBeyondEnvelope, r.verdict == .drift, r.envelopeReplicas != nil, beyond != r.firstDivergence {
            out += "<p class=\"divergence\">\(escape(beyond.description))</p>\n"
        }
        if let curves = r.lossCurves, !curves.golden.isEmpty {
            out += lossChart(curves)
            out += differenceChart(curves, firstStep: r.passed ? nil : r.firstDivergence?.step)
        }
        out += divergenceMap(r)
        if !failed.isEmpty {
            let rows = failed.sorted { ($0.firstDivergence?.step ?? .max, $0.path) < ($1.firstDivergence?.step ?? .max, $1.path) }.prefix(200).map { s in
                [s.path, "\(s.mismatches) of \(s.elements)",
                 s.structural ?? (RecordSchema.probeChecksumDatasets.contains(s.path) ? "— (a checksum)"
                                  : s.isInteger ? "\(Int64(s.worstAbsolute))" : String(format: "%.3g", s.worstAbsolute)),
                 s.worstPlace, s.firstDivergence.map { "step \($0.step)" } ?? ""]
            }
            out += "<h3>Series that differ (\(failed.count))</h3>" + table(["series", "differ", "worst |Δ|", "at", "first"], Array(rows))
        }
        return out + "</section>\n"
    }

    static let width = 800.0, height = 260.0, left = 84.0, right = 12.0, top = 14.0, bottom = 34.0

    /// Golden loss as a line, candidate loss as a line (or dots where only windows ran); a log axis when the
    /// loss spans more than two decades (a 50-epoch run goes from 2.3 to 1e-7).
    static func lossChart(_ c: LossCurves) -> String {
        let steps = c.golden.count
        let values = (c.golden + c.candidate.map(\.loss)).filter(\.isFinite)
        guard let lo = values.min(), let hi = values.max() else { return "" }
        let logarithmic = lo > 0 && Double(hi) / Double(lo) > 100
        let scale = { (v: Double) in logarithmic ? log10(v) : v }
        let (y0, y1) = (scale(Double(lo)), Double(hi) == Double(lo) ? scale(Double(lo)) + 1 : scale(Double(hi)))
        func x(_ step: Int) -> Double { left + (width - left - right) * Double(step - 1) / Double(max(steps - 1, 1)) }
        func y(_ v: Double) -> Double { top + (height - top - bottom) * (1 - (scale(v) - y0) / (y1 - y0)) }
        var svg = frame(title: "Per-step training loss\(logarithmic ? " (log scale)" : ""): golden (grey) and candidate (blue)",
                        yTicks: [(y(Double(lo)), fmt(Double(lo))), (y(Double(hi)), fmt(Double(hi)))], steps: steps)
        svg += polyline(sampled(c.golden.enumerated().map { ($0.offset + 1, Double($0.element)) }).map { (x($0.0), y($0.1)) },
                        color: "#b8b8b8", width: 4)
        let candidate = c.candidate.filter { $0.loss.isFinite }
        if candidate.count == steps {
            svg += polyline(sampled(candidate.map { ($0.step, Double($0.loss)) }).map { (x($0.0), y($0.1)) }, color: "#1f5fbf", width: 1.2)
        } else {
            for (step, loss) in sampled(candidate.map { ($0.step, Double($0.loss)) }) {
                svg += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"1.6\" fill=\"#1f5fbf\"/>", x(step), y(loss))
            }
        }
        return svg + "</svg>\n"
    }

    /// |golden − candidate| per step on a log axis; exact agreement sits on the bottom line ("= 0"), a NaN
    /// or missing value on the top one; the first divergent step is marked.
    static func differenceChart(_ c: LossCurves, firstStep: Int?) -> String {
        let steps = c.golden.count
        var differences = [(Int, Double)]()
        for (step, loss) in c.candidate where step >= 1 && step <= steps {
            let g = c.golden[step - 1]
            differences.append((step, g.bitPattern == loss.bitPattern ? 0 : Double(abs(g - loss))))
        }
        let positive = differences.map(\.1).filter { $0 > 0 && $0.isFinite }
        let exponents = (floor(log10(positive.min() ?? 1e-8)), ceil(log10(positive.max() ?? 1e-7)))
        let (e0, e1) = (min(exponents.0, -8), max(exponents.1, exponents.0 + 1, -7))
        func x(_ step: Int) -> Double { left + (width - left - right) * Double(step - 1) / Double(max(steps - 1, 1)) }
        func y(_ d: Double) -> Double {
            if d == 0 { return height - bottom }
            if !d.isFinite { return top }
            return top + (height - top - bottom - 10) * (1 - (log10(d) - e0) / (e1 - e0))
        }
        let ticks = stride(from: e0, through: e1, by: max(1, ((e1 - e0) / 4).rounded(.up))).map { (y(pow(10, $0)), "1e\(Int($0))") } + [(height - bottom, "= 0")]
        var svg = frame(title: "|Δ loss| per step (log scale)", yTicks: ticks, steps: steps)
        for (step, d) in bucketMaximum(differences) {
            svg += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"1.8\" fill=\"%@\"/>", x(step), y(d), d == 0 ? "#17692a" : "#b3261e")
        }
        if let firstStep, firstStep >= 1 {
            let fx = x(min(firstStep, steps))
            svg += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#b3261e\" stroke-dasharray=\"4 3\"/>", fx, top, fx, height - bottom)
            svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#b3261e\">first divergence: step %d</text>",
                          min(fx + 4, width - 190), top + 12, firstStep)
        }
        return svg + "</svg>\n"
    }

    /// The places of a step (rows, in the order the step runs) × steps (columns, up to 240, each the largest
    /// of its steps): colour = |Δ| ÷ envelope, so where a change starts and how it spreads shows at a glance.
    /// Only places where something differs are rows; nothing is drawn for an identical run.
    static func divergenceMap(_ r: ComparisonReport) -> String {
        let map = r.divergenceMap
        guard !map.isEmpty, !r.tracePlaces.isEmpty else { return "" }
        let cells = map.map { (DivergenceMap.cell($0.key), $0.value) }
        let rows = Set(cells.map(\.0.place)).sorted()
        let lastStep = max(cells.map(\.0.step).max()!, r.lossCurves?.golden.count ?? 0)
        let columns = min(240, lastStep + 1), perColumn = Double(lastStep + 1) / Double(columns)
        var grid = [[Double?]](repeating: [Double?](repeating: nil, count: columns), count: rows.count)
        let rowOf = Dictionary(uniqueKeysWithValues: rows.enumerated().map { ($1, $0) })
        for ((step, place), value) in cells {
            let c = min(columns - 1, Int(Double(step) / perColumn)), row = rowOf[place]!
            grid[row][c] = max(grid[row][c] ?? -1, value)
        }
        let factor = r.envelopeFactor, cellW = (width - 250) / Double(columns), cellH = 9.0
        let h = Double(rows.count) * cellH + 40
        func colour(_ v: Double) -> String {
            if v < 0 { return "#9ec5e8" }                 // bits differ, no distance (a checksum)
            if r.envelopeReplicas == nil { return "#888" } // no envelope to measure by
            if !v.isFinite { return "#5c0a06" }
            if v <= 1 { return "#f3e7a1" }
            if v <= factor { return "#f0a34a" }
            return "#b3261e"
        }
        var svg = "<p class=\"chart\">Divergence map: the step's places (rows, in the order a step runs) × steps; colour = |Δ| ÷ envelope "
            + "(pale: within 1 envelope, orange: within \(factor.shortText), red: beyond — drift; blue: a checksum differs, no distance; "
            + "grey: the golden has no envelope)</p>"
        svg += "<svg viewBox=\"0 0 \(Int(width)) \(Int(h))\" role=\"img\" aria-label=\"divergence map\"><rect width=\"\(Int(width))\" height=\"\(Int(h))\" fill=\"#fff\"/>"
        for (i, place) in rows.enumerated() {
            let name = place < r.tracePlaces.count ? r.tracePlaces[place] : "?"
            svg += String(format: "<text x=\"244\" y=\"%.1f\" font-size=\"7.5\" text-anchor=\"end\">%@</text>", Double(i) * cellH + cellH - 1.5, escape(String(name.prefix(48))))
            // Runs of neighbouring cells of one colour as one rectangle.
            var c = 0
            while c < columns {
                guard let value = grid[i][c] else { c += 1; continue }
                let fill = colour(value)
                var end = c + 1
                while end < columns, let next = grid[i][end], colour(next) == fill { end += 1 }
                svg += String(format: "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" fill=\"%@\"/>", 250 + Double(c) * cellW, Double(i) * cellH,
                              max(Double(end - c) * cellW, 0.6), cellH - 1, fill)
                c = end
            }
        }
        let y = Double(rows.count) * cellH + 14
        svg += String(format: "<text x=\"250\" y=\"%.0f\" font-size=\"11\">step 0</text><text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"end\">step %d</text>",
                      y, width - 2, y, lastStep)
        return svg + "</svg>\n"
    }

    static func frame(title: String, yTicks: [(Double, String)], steps: Int) -> String {
        var s = "<p class=\"chart\">\(escape(title))</p><svg viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"\(escape(title))\">"
        s += "<rect x=\"0\" y=\"0\" width=\"\(Int(width))\" height=\"\(Int(height))\" fill=\"#fff\"/>"
        s += String(format: "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#444\"/>", left, height - bottom, width - right, height - bottom)
        s += String(format: "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#444\"/>", left, top, left, height - bottom)
        for (y, label) in yTicks {
            s += String(format: "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%@</text>", left - 4, y + 4, label)
            s += String(format: "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#eee\"/>", left, y, width - right, y)
        }
        s += String(format: "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\">step 1</text>", left, height - 14)
        s += String(format: "<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"end\">step %d</text>", width - right, height - 14, steps)
        return s
    }

    static func polyline(_ points: [(Double, Double)], color: String, width: Double) -> String {
        let coordinates = points.filter { $0.1.isFinite }.map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " ")
        return "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"\(width)\" points=\"\(coordinates)\"/>"
    }

    /// At most ~1,500 points: every k-th (a 50-epoch run has 18,750 steps).
    static func sampled(_ points: [(Int, Double)]) -> [(Int, Double)] {
        let k = max(1, points.count / 1500)
        return points.enumerated().filter { $0.offset % k == 0 || $0.offset == points.count - 1 }.map(\.element)
    }

    /// At most ~1,500 points, each the largest difference of its bucket (so no divergence is thinned away).
    static func bucketMaximum(_ points: [(Int, Double)]) -> [(Int, Double)] {
        let k = max(1, points.count / 1500)
        return stride(from: 0, to: points.count, by: k).map { start in
            points[start..<min(start + k, points.count)].max { a, b in (a.1.isNaN ? .infinity : a.1) < (b.1.isNaN ? .infinity : b.1) }!
        }
    }

    static func table(_ header: [String], _ rows: [[String]]) -> String {
        "<div class=\"table\"><table><tr>" + header.map { "<th>\(escape($0))</th>" }.joined() + "</tr>"
            + rows.map { "<tr>" + $0.map { "<td>\(escape($0))</td>" }.joined() + "</tr>" }.joined() + "</table></div>\n"
    }

    static func fmt(_ v: Double) -> String { String(format: "%.3g", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
