import Foundation
import Testing
import ReproNN
import ReproRecording
import ReproTestSupport

/// docs/SCHEMA.md's table of step series is the code's: generated from `StepSeries`, checked here.
/// `REPRO_REGENERATE_DOCS=1 swift test --filter SchemaDocumentTests` writes the generated table into the doc.
@Suite struct SchemaDocumentTests {
    static let schemaPath = CommittedGoldens.folder.deletingLastPathComponent().appendingPathComponent("docs/SCHEMA.md").path
    static let begin = "<!-- step-series table: generated from StepSeries.documentationTable (Sources/ReproRecording/StepSeries.swift); SchemaDocumentTests fails when the two differ -->"
    static let end = "<!-- end of step-series table -->"

    /// The text between the markers, or nil when they are missing.
    static func section(of document: String) -> String? {
        guard let a = document.range(of: begin), let b = document.range(of: end, range: a.upperBound..<document.endIndex) else { return nil }
        return document[a.upperBound..<b.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static var generated: String { StepSeries.documentationTable(for: LeNet5<Float>.layout(normalized: true, batchNorm: .notebook)) }

    @Test func schemaDocumentListsTheStepSeriesTheCodeWrites() throws {
        var document = try String(contentsOfFile: Self.schemaPath, encoding: .utf8)
        if ProcessInfo.processInfo.environment["REPRO_REGENERATE_DOCS"] == "1", let a = document.range(of: Self.begin),
           let b = document.range(of: Self.end, range: a.upperBound..<document.endIndex) {
            document.replaceSubrange(a.upperBound..<b.lowerBound, with: "\n" + Self.generated + "\n")
            try document.write(toFile: Self.schemaPath, atomically: true, encoding: .utf8)
        }
        let section = try #require(Self.section(of: document), "docs/SCHEMA.md lost its step-series markers")
        #expect(section == Self.generated, "docs/SCHEMA.md's step-series table differs from the code's; expected:\n\(Self.generated)")
    }

    /// The generated table names every series the writer creates, with its stored type.
    @Test func generatedTableNamesEveryKindOfSeries() {
        let table = Self.generated
        for row in ["`loss` | float32 [S] | every step", "`accuracy` | float32 [S]", "`<bn>/batch_mean` | float32 [S, C]",
                    "`<bn>/running_std` | float32 [S, C]", "`probes/checksum` | int64 [S, P] | steps inside windows; other rows −1",
                    "`probes/largest` | float64 [S, P]", "`probes/norm` | float64 [S, N]"] {
            #expect(table.contains(row), "missing: \(row)")
        }
        #expect(table.split(separator: "\n").count == 2 + 2 + RecordSchema.BatchNormSeries.allCases.count + 3)
    }

    /// Negative control: a doc whose table says another type, or lost a row, is told apart.
    @Test func anEditedTableIsNoticed() throws {
        let document = try String(contentsOfFile: Self.schemaPath, encoding: .utf8)
        let section = try #require(Self.section(of: document))
        let retyped = document.replacingOccurrences(of: "`probes/largest` | float64", with: "`probes/largest` | float32")
        #expect(Self.section(of: retyped) != section)
        #expect(Self.section(of: retyped) != Self.generated)
        let lines = section.split(separator: "\n")
        let shortened = document.replacingOccurrences(of: section, with: lines.dropLast().joined(separator: "\n"))
        #expect(Self.section(of: shortened) != Self.generated)
        #expect(Self.section(of: document.replacingOccurrences(of: Self.end, with: "")) == nil)
    }
}
