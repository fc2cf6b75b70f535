import ArgumentParser
import Foundation
import ReproTraining
import ReproVerify

/// Options shared by verify and compare: the comparison policy override and the machine-readable reports.
struct ComparisonOptions: ParsableArguments {
    @Flag(help: "Compare bit for bit, whatever the golden's policy says.") var exact = false
    @Option(help: "Compare with this relative tolerance instead of the golden's policy (with --atol).") var rtol: Double?
    @Option(help: "Absolute tolerance to go with --rtol.") var atol: Double = 0
    @Option(help: "Also write the report as JSON to FILE (format: README, 'Reports').") var json: String?
    @Option(help: "Also write a JUnit XML report to FILE (one test case per golden and series group).") var junit: String?
    @Flag(help: "List every series, not only those that differ.") var verbose = false

    func validate() throws {
        if exact && rtol != nil { throw ValidationError("--exact and --rtol exclude each other") }
        if let rtol, !(rtol >= 0 && rtol.isFinite) { throw ValidationError("--rtol must be a non-negative number") }
        if !(atol >= 0 && atol.isFinite) { throw ValidationError("--atol must be a non-negative number") }
    }

    var override: ComparisonMode? {
        if exact { return .exact }
        if let rtol { return .tolerance(absolute: atol, relative: rtol) }
        return nil
    }

    /// Prints the reports and writes the JSON/JUnit files (atomically); returns the exit code.
    func finish(_ reports: [ComparisonReport], extraJSON: [String: Any] = [:], extraPassed: Bool = true) throws -> Int32 {
        for r in reports { print(Report.text(r, verbose: verbose)) }
        if let json { try writeAtomically(try Report.json(reports, extra: extraJSON), to: json) }
        if let junit { try writeAtomically(Data(Report.junit(reports).utf8), to: junit) }
        return reports.allSatisfy(\.passed) && extraPassed ? 0 : 1
    }
}

func writeAtomically(_ data: Data, to path: String) throws {
    do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) }
    catch { throw BadInput("\(path): cannot write the report (\(error.localizedDescription))") }
}

func failWithBadInput(_ message: String) throws -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    throw ExitCode(2)
}

/// `repro verify GOLDEN...`: re-run each golden's own configuration and compare everything.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Re-run goldens from their own configuration and compare every recorded series.",
        discussion: """
            Exit codes: 0 every golden matches; 1 drift (the report names the first step and tensor that \
            diverged); 2 bad input (missing, damaged or foreign file, wrong schema version, data that differ \
            from the golden's). verify never modifies a golden; re-record one deliberately with \
            'repro record ... --output Golden/NAME.h5'.
            """)

    @Argument(help: "Golden records to verify.") var goldens: [String]
    @Option(help: "Directory with the MNIST files the goldens were recorded on.") var dataDir = "Data/mnist"
    @Option(help: "Re-run with this many threads instead of the golden's (portable goldens must still match exactly; a blas golden then compares with tolerance).")
    var threads: Int?
    @OptionGroup var comparison: ComparisonOptions

    func run() throws {
        // Every verify also checks the BatchNorm implementation itself (the same checks as `repro check-bn`).
        let rows = try BatchNormChecks.run()
        let checks = BatchNormChecks.json(rows)
        let checksPassed = rows.allSatisfy(\.passed)
        let checkCount = rows.filter { $0.bound.isFinite }.count
        var verifier = Verifier(dataDirectory: dataDir, override: comparison.override, threads: threads)
        verifier.batchNormRows = rows
        var reports = [ComparisonReport]()
        for golden in goldens {
            do {
                reports.append(try verifier.verify(golden))
            } catch let failure as Verifier.Failure {
                try failWithBadInput(failure.description)
            } catch {
                try failWithBadInput("\(golden): \(error)")
            }
        }
        print(checksPassed ? "PASS BatchNorm checks: \(checkCount) of \(checkCount) (details: repro check-bn)" : BatchNormChecks.table(rows))
        let code = try comparison.finish(reports, extraJSON: checks.isEmpty ? [:] : ["checks": checks, "checks_passed": checksPassed],
                                         extraPassed: checksPassed)
        if code != 0 { throw ExitCode(code) }
    }
}

/// `repro compare A B`: the same comparison between two existing records, no re-run.
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare two existing records series by series (no re-run). Exit codes as for verify.")

    @Argument(help: "The reference record (its tolerance policy applies).") var golden: String
    @Argument(help: "The record to check against it.") var candidate: String
    @OptionGroup var comparison: ComparisonOptions

    func run() throws {
        let report: ComparisonReport
        do { report = try Verifier.compare(golden, candidate, override: comparison.override) }
        catch let failure as Verifier.Failure { try failWithBadInput(failure.description) }
        let code = try comparison.finish([report])
        if code != 0 { throw ExitCode(code) }
    }
}

/// `repro inspect FILE`: a readable summary of a record.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Summarize a record: configuration, environment, series and checkpoints.")

    @Argument(help: "The record.") var file: String

    func run() throws {
        let record: OpenRecord
        do { record = try OpenRecord(path: file) } catch { try failWithBadInput(error.description) }
        let c = record.config
        print("\(file): repro record, schema \(1), \(c.kernels) kernels, comparison policy '\(record.storedPolicy.mode)'")
        print("config: \(c.name) dataset \(c.dataset), \(c.norm ? "with" : "without") BatchNorm, seed \(c.seed), batch \(c.batchSize), "
              + "lr \(c.learningRate), momentum \(c.momentum), weight decay \(c.weightDecay), epochs \(c.epochs)"
              + (c.maxSteps.map { ", max steps \($0)" } ?? "") + ", threads \(c.threads)")
        print("plan: \(record.plan.totalSteps) steps (\(record.plan.stepsPerEpoch) per epoch), \(record.plan.epochsStarted) epoch(s) started")
        print("environment: " + record.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))
        let loss = try record.values("/steps/loss").values
        if let first = loss.first, let last = loss.last {
            print(String(format: "steps: loss %.5f at step 1 → %.5f at step %d", first, last, loss.count))
        }
        for phase in ["before", "after"] where record.datasets.contains("/evaluation/\(phase)/loss") {
            let l = try record.values("/evaluation/\(phase)/loss").values, a = try record.values("/evaluation/\(phase)/accuracy").values
            print(String(format: "evaluation %@: train %.5f / %.2f%%, val %.5f / %.2f%%, test %.5f / %.2f%%", phase, l[0], a[0], l[1], a[1], l[2], a[2]))
        }
        let checkpoints = Set(record.datasets.filter { $0.hasPrefix("/checkpoints/") }.map { $0.split(separator: "/")[1] }).sorted()
        print("checkpoints: " + checkpoints.map { String(Int($0) ?? 0) }.joined(separator: ", "))
        print("series: \(record.datasets.count) datasets")
        for d in record.datasets where !d.hasPrefix("/checkpoints/") {
            print("  \(d) \(try record.reader.shape(of: d)) \(try record.reader.elementKind(of: d).rawValue)")
        }
    }
}

/// `repro check-bn`: the BatchNorm implementation against the reference formula and finite differences.
struct CheckBNCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-bn",
        abstract: "Check the BatchNorm layer against its Float64 formula, central-difference gradients and the running-buffer recurrence.",
        discussion: "Exit codes: 0 every check passes, 1 a check fails, 2 bad input.")

    @Option(help: "Also write the table as JSON to FILE.") var json: String?
    @Option(help: ArgumentHelp("Break the layer on purpose to see the checks fail (negative control).", visibility: .hidden))
    var injectFault: String?

    func run() throws {
        var fault: BatchNormChecks.Fault?
        if let name = injectFault {
            guard let f = BatchNormChecks.Fault(rawValue: name) else {
                try failWithBadInput("unknown fault '\(name)' (\(BatchNormChecks.Fault.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            fault = f
        }
        let start = DispatchTime.now()
        let rows = try BatchNormChecks.run(fault: fault)
        print(BatchNormChecks.table(rows))
        print(String(format: "(%.2f s)", Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9))
        if let json {
            let object: [String: Any] = ["passed": rows.allSatisfy(\.passed), "checks": BatchNormChecks.json(rows)]
            try writeAtomically(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), to: json)
        }
        if !rows.allSatisfy(\.passed) { throw ExitCode(1) }
    }
}
