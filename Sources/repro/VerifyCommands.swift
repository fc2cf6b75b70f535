import ArgumentParser
import Foundation
import ReproRecording
import ReproTraining
import ReproVerify

/// Options shared by verify and compare: the comparison policy override and the machine-readable reports.
struct ComparisonOptions: ParsableArguments {
    @Flag(help: "Compare bit for bit, whatever the golden's policy says.") var exact = false
    @Option(help: "Compare with this relative tolerance instead of the golden's policy (with --atol).") var rtol: Double?
    @Option(help: "Absolute tolerance to go with --rtol.") var atol: Double = 0
    @Option(help: "Also write the report as JSON to FILE (format: docs/verifying.md, 'Reports').") var json: String?
    @Option(help: "Also write a JUnit XML report to FILE (one test case per golden and series group).") var junit: String?
    @Option(help: "Also write a self-contained HTML report to FILE (loss curves, differences per step, series that differ).") var html: String?
    @Option(help: ArgumentHelp("Gate on the golden's round-off envelope: pass when every value is within \(TolerancePolicy.envelopeSafetyFactor.shortText)× its envelope (the verdict 'within-round-off'), not only on identical bits.",
                               valueName: "envelope"))
    var tolerance: ToleranceName?
    @Option(help: ArgumentHelp("The envelope's safety factor (negative controls: 0 flags every difference).", visibility: .hidden))
    var envelopeFactor: Double?
    @Flag(help: "List every series, not only those that differ.") var verbose = false

    func validate() throws {
        if [exact, rtol != nil, tolerance != nil].filter({ $0 }).count > 1 { throw ValidationError("--exact, --rtol and --tolerance exclude each other") }
        if let envelopeFactor, !(envelopeFactor >= 0 && envelopeFactor.isFinite) { throw ValidationError("--envelope-factor must be a non-negative number") }
        if let rtol, !(rtol >= 0 && rtol.isFinite) { throw ValidationError("--rtol must be a non-negative number") }
        if !(atol >= 0 && atol.isFinite) { throw ValidationError("--atol must be a non-negative number") }
    }

    var override: ComparisonMode? {
        if exact { return .exact }
        if let rtol { return .tolerance(absolute: atol, relative: rtol) }
        if tolerance == .envelope { return .envelope(factor: factor) }
        return nil
    }

    var factor: Double { envelopeFactor ?? TolerancePolicy.envelopeSafetyFactor }

    /// Writes the JSON/JUnit files (atomically) and exits with the verdict's code (0, 1 or 2).
    func finish(_ verdict: Verdict) throws {
        if let json { try writeAtomically(try Report.json(verdict), to: json) }
        if let junit { try writeAtomically(Data(Report.junit(verdict).utf8), to: junit) }
        if let html { try writeAtomically(Data(HTMLReport.render(verdict, title: "repro — " + verdict.reports.map(\.golden).joined(separator: ", ")).utf8), to: html) }
        if verdict.exitCode != 0 { throw ExitCode(verdict.exitCode) }
    }

    /// A report as it is printed: the verdict first.
    func show(_ report: ComparisonReport) { print(Report.text(report, verbose: verbose)) }

    /// An unusable input: one line on standard error, and the others still run.
    func showUnusable(_ problem: String) { FileHandle.standardError.write(Data("error: \(problem)\n".utf8)) }
}

func writeAtomically(_ data: Data, to path: String) throws {
    do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) }
    catch { try failWithBadInput("\(path): cannot write the report (\(error.localizedDescription))") }
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
            verify never modifies a golden; re-record one deliberately with 'repro record --like Golden/NAME.h5'. \
            Each golden is verified on its own: one that cannot be used is reported and the others still run.

            """ + ExitCodes.contract)

    @Argument(help: "Golden records to verify.") var goldens: [String]
    @Option(help: "Directory with the data the goldens were recorded on (default: Data/mnist or Data/svhn, by each golden's dataset).")
    var dataDir: String?
    @Option(help: "Re-run with this many threads instead of the golden's (portable goldens must still match exactly; a blas golden is then judged by its envelope, or without one by its tolerance).")
    var threads: Int?
    @Option(help: ArgumentHelp("Re-run this many windows, chosen deterministically (always the first window, one that crosses an epoch boundary and the last), or all of them (default).",
                               valueName: "count|all"))
    var windows: WindowCount?
    @Flag(help: "One end-to-end re-run instead of windows.") var full = false
    @Option(help: ArgumentHelp("Verify only every N-th chosen window starting at the I-th (1-based), to split one golden across machines.",
                               valueName: "I/N"))
    var shard: Shard?
    @OptionGroup var comparison: ComparisonOptions

    func validate() throws {
        if full && (windows != nil || shard != nil) { throw ValidationError("--full re-runs everything: it excludes --windows and --shard") }
        try check(threads, in: RunConfig.Limits.threads, "--threads")
    }

    var selection: WindowSelection {
        if full { return .full }
        if case .count(let n) = windows { return .count(n) }
        return .all
    }

    @Option(help: ArgumentHelp("Change the re-run on purpose to see verify report it (negative control).", visibility: .hidden))
    var injectFault: Verifier.RerunFault?
    @Option(help: ArgumentHelp("With --inject-fault: a scaled gradient's change (1 + F), for measuring the detection floor.", visibility: .hidden))
    var faultFactor: Double?
    @Option(help: "Re-run with this kernel set instead of the golden's, judged by the golden's round-off envelope (without one: by its stored tolerance).")
    var kernels: KernelChoice?

    func run() throws {
        // Every verify also checks the BatchNorm implementation itself (the same checks as `repro check-bn`).
        var verdict = Verdict()
        let rows = try BatchNormChecks.run()
        verdict.checks = rows
        var verifier = Verifier(dataDirectory: dataDir, checks: rows, override: comparison.override, threads: threads)
        verifier.fault = injectFault
        verifier.kernels = kernels
        verifier.faultFactor = faultFactor
        verifier.envelopeFactor = comparison.factor
        // Each golden on its own: one that cannot be used is reported and the others are still verified.
        for golden in goldens {
            do {
                let report = try verifier.verify(golden, windows: selection, shard: shard)
                comparison.show(report)
                verdict.reports.append(report)
            } catch {
                comparison.showUnusable(error.description)
                verdict.unusable.append((golden, error.description))
            }
        }
        let scored = rows.filter { $0.bound.isFinite }
        print(verdict.checksPassed ? "PASS BatchNorm checks: \(scored.count) of \(scored.count) (details: repro check-bn)"
              : "FAIL BatchNorm checks: \(scored.filter { !$0.passed }.count) of \(scored.count) fail\n" + BatchNormChecks.table(rows))
        try comparison.finish(verdict)
    }
}

/// `repro compare A B`: the same comparison between two existing records, no re-run.
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare two existing records series by series (no re-run).",
        discussion: ExitCodes.contract)

    @Argument(help: "The reference record (its tolerance policy applies).") var golden: String
    @Argument(help: "The record to check against it.") var candidate: String
    @OptionGroup var comparison: ComparisonOptions

    func run() throws {
        var verdict = Verdict()
        do {
            let report = try Verifier.compare(golden, candidate, override: comparison.override, factor: comparison.factor)
            comparison.show(report)
            verdict.reports.append(report)
        } catch {
            comparison.showUnusable(error.description)
            verdict.unusable.append((golden + " / " + candidate, error.description))
        }
        try comparison.finish(verdict)
    }
}

/// `repro inspect FILE`: a readable summary of a record.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Summarize a record: configuration, environment, series and checkpoints.",
        discussion: ExitCodes.contract)

    @Argument(help: "The record.") var file: String

    func run() throws {
        let record: Record
        do { record = try Record(path: file) } catch { try failWithBadInput(error.description) }
        let c = record.config
        print("\(file): repro record, schema \(record.header.schemaVersion), \(c.kernels) kernels, comparison policy '\(record.policy.mode)'")
        print("round-off envelope: " + (record.envelopeReplicas.map { "\($0) replicas per window (docs/verifying.md)" } ?? "none (record --envelope K adds one)"))
        print("config: \(c.name) dataset \(c.dataset), \(c.norm ? "with" : "without") BatchNorm, seed \(c.seed), batch \(c.batchSize), "
              + "lr \(c.learningRate), momentum \(c.momentum), weight decay \(c.weightDecay), epochs \(c.epochs)"
              + (c.maxSteps.map { ", max steps \($0)" } ?? "") + ", threads \(c.threads)")
        print("plan: \(record.plan.totalSteps) steps (\(record.plan.stepsPerEpoch) per epoch), \(record.plan.epochsStarted) epoch(s) started")
        print("profile: \(c.profile.rawValue); \(record.plan.windows.count) verification windows "
              + (c.windowSteps.map { "of up to \($0) steps from each checkpoint" } ?? "from checkpoint to checkpoint"))
        print("environment: " + record.environment.facts.map { "\($0.name)=\($0.value)" }.joined(separator: "; "))
        let loss = try record.values(RecordSchema.stepLoss).values
        if let first = loss.first, let last = loss.last {
            print(String(format: "steps: loss %.5f at step 1 → %.5f at step %d", first, last, loss.count))
        }
        for phase in ["before", "after"] {
            let l = try record.values(RecordSchema.evaluation(phase, .loss)).values
            let a = try record.values(RecordSchema.evaluation(phase, .accuracy)).values
            print(String(format: "evaluation %@: train %.5f / %.2f%%, val %.5f / %.2f%%, test %.5f / %.2f%%", phase, l[0], a[0], l[1], a[1], l[2], a[2]))
        }
        print("checkpoints: " + record.plan.checkpointSteps.map(String.init).joined(separator: ", "))
        print("series: \(record.datasets.count) datasets")
        let stepSeries = record.stepSeries
        let kept = record.plan.totalSteps - (0..<record.plan.totalSteps).filter { !record.plan.isKept($0 + 1, profile: c.profile) }.count
        print("  per step (\(record.plan.totalSteps) steps):")
        for series in stepSeries {
            let rows = series.keptOnlyInWindows ? "\(kept) of \(record.plan.totalSteps) steps stored" : "every step"
            print("    \(series.path) \(record.shape(of: series.path)) \(series.kind.rawValue), \(rows): \(series.meaning)")
        }
        let stepPaths = Set(stepSeries.map(\.path))
        print("  other:")
        for d in record.datasets where !d.hasPrefix(RecordSchema.checkpoints + "/") && !stepPaths.contains(d) {
            print("    \(d) \(record.shape(of: d)) \(try record.values(d).kind.rawValue)")
        }
    }
}

/// `repro check-bn`: the BatchNorm implementation against the reference formula and finite differences.
struct CheckBNCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-bn",
        abstract: "Check the BatchNorm layer against its Float64 formula, central-difference gradients and the running-buffer recurrence.",
        discussion: ExitCodes.contract)

    @Option(help: "Also write the table as JSON to FILE.") var json: String?
    @Option(help: ArgumentHelp("Break the layer on purpose to see the checks fail (negative control).", visibility: .hidden))
    var injectFault: BatchNormChecks.Fault?

    func run() throws {
        let fault = injectFault
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
