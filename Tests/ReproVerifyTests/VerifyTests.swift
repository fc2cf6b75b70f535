import Foundation
import Testing
import ReproData
import ReproNN
import ReproRecording
import ReproStorage
import ReproTestSupport
import ReproTraining
import ReproVerify

/// The real BatchNorm check table, computed once for every record these tests write.
let checkTable: [CheckRow] = try! BatchNormChecks.run()

/// A tiny dataset and a short run: 300 training images → 241 train, batch 32 → 7 steps per epoch, 2 epochs.
struct Fixture {
    let directory: String
    let data: ImageDataset
    let config: RunConfig

    init(name: String = #function, alterLabel: Int? = nil) throws {
        directory = NSTemporaryDirectory() + "repro-verify-tests-\(getpid())-\(name.filter(\.isLetter))"
        try? FileManager.default.removeItem(atPath: directory)
        var train = SyntheticMNIST.split(count: 300, seed: 1)
        if let index = alterLabel {
            var labels = train.labels
            labels[index] = (labels[index] + 1) % 10
            train = ImageSplit(images: train.images, labels: labels)
        }
        try IDXWriter.write(train: train, test: SyntheticMNIST.split(count: 70, seed: 3), to: directory + "/data", gzip: false)
        data = try MNIST.load(directory: directory + "/data")
        var c = RunConfig()
        c.batchSize = 32
        c.epochs = 2
        c.checkpointEvery = 4
        config = c
    }

    var dataDirectory: String { directory + "/data" }

    func record(_ name: String, fault: PlantedFault? = nil, _ change: (inout RunConfig) -> Void = { _ in }) throws -> String {
        var c = config
        change(&c)
        let path = directory + "/" + name + ".h5"
        try Recording.record(config: c, data: data, to: path, checks: checkTable, hooks: fault ?? NoFault())
        return path
    }
}

@Suite struct SensitivityTests {
    func firstDivergence(norm: Bool = true, fault: PlantedFault? = nil,
                         _ change: (inout RunConfig) -> Void = { _ in }) throws -> Divergence? {
        let f = try Fixture(name: "sens-\(UUID().uuidString.prefix(8))")  // its own folder: parameterized cases may run in parallel
        let golden = try f.record("golden") { $0.norm = norm }
        let changed = try f.record("changed", fault: fault) { $0.norm = norm; change(&$0) }
        let report = try Verifier.compare(golden, changed, override: nil)
        #expect(!report.passed)
        return report.firstDivergence
    }

    // Localization in pass order (issue: "Localize drift to the step, the layer and the pass"): each planted
    // change is reported at the exact step and place of the step's execution order where it acts.

    /// Weight decay dropped, model without BN: steps 1's forward, loss and backward are untouched; its update
    /// is not (the first parameter updated is conv1.weight).
    @Test func weightDecayDroppedActsInStep1sUpdate() throws {
        let d = try firstDivergence(norm: false) { $0.weightDecay = 0 }
        #expect(d?.step == 1 && d?.point == TracePoint(.update, "conv1", .update("conv1.weight")), "\(d?.description ?? "none")")
        #expect(d?.description.contains("update of conv1.weight") == true, "\(d?.description ?? "none")")
    }

    /// The JSON report names the pass, layer and place of the first divergence for CI tooling.
    @Test func jsonReportNamesThePlace() throws {
        let f = try Fixture(name: "sensjson")
        let golden = try f.record("golden") { $0.norm = false }
        let changed = try f.record("changed", fault: .conv2ForwardReordered) { $0.norm = false }
        let first = Report.jsonObject(try Verifier.compare(golden, changed, override: nil))["first_divergence"] as? [String: Any]
        #expect(first?["step"] as? Int == 0 && first?["pass"] as? String == "forward" && first?["layer"] as? String == "conv2"
                && first?["place"] as? String == "forward/conv2/output", "\(first ?? [:])")
        #expect((first?["message"] as? String)?.contains("forward of conv2: output, checksum: 0x") == true, "\(first ?? [:])")
    }

    /// conv2's forward accumulating in another order, model without BN: the first forward pass that runs it
    /// is the evaluation before training (step 0); there conv2's output is the first value to differ (the
    /// images and conv1, relu1, pool1 before it do not).
    @Test func reorderedConv2ForwardActsInItsForward() throws {
        let d = try firstDivergence(norm: false, fault: .conv2ForwardReordered)
        #expect(d?.step == 0 && d?.point == TracePoint(.forward, "conv2", .output), "\(d?.description ?? "none")")
        #expect(d?.description.contains("forward of conv2: output") == true, "\(d?.description ?? "none")")
    }

    /// ∂γ of one BN layer scaled by 1 + 1e-3: step 1, that layer's backward (not a later forward statistic,
    /// and not an earlier layer's backward: everything before it in backward order is unchanged).
    @Test(arguments: ["bn1", "bn2", "bn3", "bn4"])
    func wrongGammaGradientActsInThatLayersBackward(layer: String) throws {
        let d = try firstDivergence(fault: .batchNormGammaGradient(layer: layer, factor: 1 + 1e-3))
        #expect(d?.step == 1 && d?.point == TracePoint(.backward, layer, .parameterGradient("\(layer).gamma")),
                "\(d?.description ?? "none")")
    }

    /// An optimizer-only change acts in the update pass of the step where it first matters: momentum from
    /// step 2 on (step 1 has no momentum buffer yet), the learning rate from step 1 on.
    @Test func momentumActsInStep2sUpdate() throws {
        let d = try firstDivergence { $0.momentum = 0.85 }
        #expect(d?.step == 2 && d?.point?.pass == .update && d?.point?.layer == "conv1", "\(d?.description ?? "none")")
    }

    @Test func identicalRunsPass() throws {
        let f = try Fixture()
        let report = try Verifier.compare(try f.record("a"), try f.record("b"), override: nil)
        #expect(report.passed && report.mode == .exact)
        #expect(report.series.count > 100)
    }

    @Test func batchNormMomentumActsAtStep1() throws {
        let d = try firstDivergence { $0.batchNorm.momentum = 0.899 }
        #expect(d?.step == 1 && d?.description.contains("bn1.running_mean") == true, "\(d?.description ?? "none")")
    }

    @Test func batchNormEpsilonActsAtStep1() throws {
        let d = try firstDivergence { $0.batchNorm.epsilon = 1e-5 }
        #expect(d?.step == 1 && d?.description.contains("bn1.batch_std") == true, "\(d?.description ?? "none")")
    }

    @Test func learningRateActsInStep1sUpdate() throws {
        let d = try firstDivergence { $0.learningRate *= 1.001 }
        #expect(d?.step == 1 && d?.point == TracePoint(.update, "conv1", .update("conv1.weight")), "\(d?.description ?? "none")")
    }

    @Test func anotherSeedActsAtStep0() throws {
        let d = try firstDivergence { $0.seed = 1 }
        #expect(d?.step == 0, "\(d?.description ?? "none")")
    }

    /// One training label changed: nothing moves until the first step whose batch holds that sample, and
    /// there the labels' probe (the data pass) is the first value to differ. The sample is one of
    /// the last 17 of the split, which the pre-training evaluation of the train set (full batches of 32
    /// only: 224 of 241) never sees; a sample it does see makes the divergence step 0, correctly.
    @Test func oneLabelActsAtTheFirstStepThatSeesIt() throws {
        let base = try Fixture(name: "label")
        let split = DataOrder.trainValidationSplit(count: 300, seed: 0)
        let sample = split.train[235]
        let changed = try Fixture(name: "labelchanged", alterLabel: Int(sample))
        let golden = try base.record("golden")
        let c = changed.config
        let path = changed.directory + "/changed.h5"
        try Recording.record(config: c, data: changed.data, to: path, checks: checkTable)
        let plan = RunPlan(config: c, trainCount: split.train.count)
        var expected: Int?
        for epoch in 0..<plan.epochsStarted where expected == nil {
            let order = DataOrder.epochOrder(trainIndices: split.train, epoch: epoch, seed: 0)
            if let position = order.firstIndex(of: sample), position < plan.stepsPerEpoch * c.batchSize {
                expected = epoch * plan.stepsPerEpoch + position / c.batchSize + 1
            }
        }
        // The data fingerprint differs, but no numeric series may move before that step.
        let report = try Verifier.compare(golden, path, override: nil)
        let d = report.firstDivergence
        #expect(expected != nil && d?.step == expected, "expected step \(expected ?? -1), got \(d?.description ?? "none")")
        #expect(d?.point == TracePoint(.data, "input", .labels), "\(d?.description ?? "none")")
    }

    @Test func toleranceModeReportsMarginAndWeakness() throws {
        let f = try Fixture()
        // A real change (weight decay 9 ULP larger) whose effect stays far below the tolerance over these
        // 14 steps. (A 1-ULP learning-rate change used to serve here, but chaotic growth carried it past
        // atol 1e-3 in the momentum buffers once the kernels' rounding changed: it was luck, not a bound.)
        let a = try f.record("a"), b = try f.record("b") { $0.weightDecay *= 1.000001 }
        let loose = try Verifier.compare(a, b, override: .tolerance(absolute: 1e-3, relative: 0.5))
        #expect(loose.passed)
        #expect(Report.text(loose).contains("passes unnoticed"))
        let exact = try Verifier.compare(a, b, override: .exact)
        #expect(!exact.passed)  // negative control: the same pair fails when compared exactly
        var jsonVerdict = Verdict()
        jsonVerdict.reports = [exact]
        let json = try JSONSerialization.jsonObject(with: try Report.json(jsonVerdict)) as? [String: Any]
        #expect(json?["passed"] as? Bool == false)
        var verdict = Verdict()
        verdict.reports = [exact]
        let junit = Report.junit(verdict)
        #expect(junit.contains("<failure message=\"first divergence at step"))
    }
}

@Suite struct DamagedFileTests {
    static let fixture = Result { try Fixture(name: "damaged") }

    func goodRecord() throws -> String {
        let f = try Self.fixture.get()
        let path = f.directory + "/good.h5"
        if !FileManager.default.fileExists(atPath: path) { _ = try f.record("good") { $0.maxSteps = 3 } }
        return path
    }

    func expectRefused(_ bytes: [UInt8]?, mentions: String, edit: ((String) throws -> Void)? = nil) throws {
        let good = try goodRecord()
        let path = try Self.fixture.get().directory + "/bad-\(mentions.filter(\.isLetter)).h5"
        try? FileManager.default.removeItem(atPath: path)
        if let bytes { _ = FileManager.default.createFile(atPath: path, contents: Data(bytes)) }
        else { try FileManager.default.copyItem(atPath: good, toPath: path) }
        try edit?(path)
        do {
            _ = try Record(path: path)
            Issue.record("\(mentions): accepted")
        } catch {
            #expect(error.description.hasPrefix(path), "\(error.description)")
            #expect(error.description.contains(mentions), "\(error.description)")
        }
    }

    var goodBytes: [UInt8] { get throws { [UInt8](FileManager.default.contents(atPath: try goodRecord())!) } }

    @Test func goodRecordOpens() throws { _ = try Record(path: try goodRecord()) }

    @Test func truncated() throws { try expectRefused(Array(try goodBytes.prefix(try goodBytes.count / 2)), mentions: "checksum mismatch") }
    @Test func bitFlipped() throws {
        var b = try goodBytes
        b[b.count - 1000] ^= 0x10
        try expectRefused(b, mentions: "checksum mismatch")
    }
    @Test func empty() throws { try expectRefused([], mentions: "empty file") }
    @Test func text() throws { try expectRefused(Array("step,loss\n1,2.3\n".utf8), mentions: "not a repro record") }
    @Test func missing() throws {
        #expect(throws: RecordError.self) { try Record(path: "/nonexistent/golden.h5") }
    }
    @Test func gitLFSPointer() throws {
        let pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 2972714\n"
        try expectRefused(Array(pointer.utf8), mentions: "Git LFS pointer")
    }
    @Test func plainHDF5WithoutChecksum() throws {
        let path = try Self.fixture.get().directory + "/plain.h5"
        let w = try HDF5Writer(creating: path)
        try w.setAttribute("format", "something else")
        try w.close()
        #expect(throws: RecordError.self) { try Record(path: path) }
        do { _ = try Record(path: path) } catch { #expect(error.description.contains("checksum")) }
    }
}

/// Exit codes mean one thing each, and one golden's failure never hides another's report.
@Suite struct VerdictTests {
    /// A valid golden whose re-run fails mid-training (the re-run's learning rate made infinite: step 1's
    /// forward and backward are unchanged, its update makes every weight non-finite, and step 2's loss is
    /// NaN) is drift, exit 1: first seen in step 1's update, the training failure at step 2.
    @Test func rerunThatFailsIsDriftAtItsStep() throws {
        let f = try Fixture(name: "rerunfails")
        let golden = try f.record("golden") { $0.maxSteps = 5 }
        var verifier = Verifier(dataDirectory: f.dataDirectory, checks: checkTable)
        verifier.fault = .infiniteLearningRate
        let report = try verifier.verify(golden)
        #expect(!report.passed)
        #expect(report.trainingFailure?.step == 2, "\(report.trainingFailure?.description ?? "none")")
        #expect(report.firstDivergence?.step == 1 && report.firstDivergence?.point == TracePoint(.update, "conv1", .update("conv1.weight")),
                "\(report.firstDivergence?.description ?? "none")")
        // Windows 0–4 and 4–5: step 1, before the failure, was compared and matches, and so does step 5, whose
        // forward pass starts from the golden's checkpoint 4 (its update is what goes wrong).
        #expect(report.series.first { $0.path == RecordSchema.stepLoss }.map { $0.elements == 2 && $0.passed } == true)
        var verdict = Verdict()
        verdict.reports = [report]
        #expect(verdict.exitCode == 1)
        #expect(Report.junit(verdict).contains("name=\"training\">\n      <failure message=\"window 0 (steps 1–4): the re-run failed at step 2"))
        // The same failure in one full re-run.
        let full = try verifier.verify(golden, windows: .full)
        #expect(full.trainingFailure?.step == 2 && full.series.first { $0.path == RecordSchema.stepLoss }.map { $0.elements == 1 && $0.passed } == true)
        // Control: without the fault the same golden verifies.
        verifier.fault = nil
        #expect(try verifier.verify(golden).passed)
    }

    /// One unusable golden among good ones: the others are still verified; the exit code says 2.
    @Test func unusableGoldenDoesNotStopTheOthers() throws {
        let f = try Fixture(name: "mixed")
        let good = try f.record("good") { $0.maxSteps = 3 }
        let missing = f.directory + "/absent.h5"
        let verifier = Verifier(dataDirectory: f.dataDirectory, checks: checkTable)
        var verdict = Verdict()
        verdict.checks = checkTable
        for path in [missing, good] {
            do { verdict.reports.append(try verifier.verify(path)) }
            catch { verdict.unusable.append((path, error.description)) }
        }
        #expect(verdict.reports.count == 1 && verdict.reports[0].passed)
        #expect(verdict.unusable.count == 1 && verdict.unusable[0].problem.contains("no such file"))
        #expect(verdict.exitCode == 2)
        // Drift and BatchNorm-check failures are apart in every format.
        var failingChecks = checkTable
        failingChecks[0].passed = false
        var checksOnly = Verdict()
        checksOnly.reports = verdict.reports
        checksOnly.checks = failingChecks
        #expect(checksOnly.exitCode == 1 && checksOnly.driftPassed && !checksOnly.checksPassed)
        let json = try JSONSerialization.jsonObject(with: try Report.json(checksOnly)) as? [String: Any]
        #expect(json?["drift_passed"] as? Bool == true && json?["checks_passed"] as? Bool == false && json?["exit_code"] as? Int == 1)
        let junit = Report.junit(checksOnly)
        #expect(junit.contains("<testsuite name=\"BatchNorm checks\"") && junit.contains("failures=\"1\">"))
        // Control: everything passing exits 0.
        var clean = Verdict()
        clean.reports = verdict.reports
        clean.checks = checkTable
        #expect(clean.exitCode == 0)
    }

    /// compare of two records made with different configurations leads with the differing values, and
    /// integer series report integer differences (no ULP).
    @Test func compareNamesConfigurationDifferencesFirst() throws {
        let f = try Fixture(name: "configdiff")
        let a = try f.record("a") { $0.maxSteps = 3 }, b = try f.record("b") { $0.maxSteps = 3; $0.seed = 5 }
        let report = try Verifier.compare(a, b, override: nil)
        #expect(report.configurationDifferences == ["seed: 0 vs 5"])
        let text = Report.text(report)
        let lines = text.split(separator: "\n")
        #expect(lines.count > 2 && lines[1].contains("configuration differs: seed: 0 vs 5"), "\(text)")
        let order = report.series.first { $0.path == RecordSchema.epochOrder }
        #expect(order?.isInteger == true && order?.worstULP == nil && order?.passed == false)
        #expect(order?.firstDivergence?.description.contains("ULP") == false, "\(order?.firstDivergence?.description ?? "")")
    }
}

@Suite struct HTMLReportTests {
    /// Tags open and close in order (void elements excepted), and nothing is fetched: no script, no
    /// external reference of any kind.
    static func problems(_ html: String) -> [String] {
        var out = [String]()
        if html.lowercased().contains("http") { out.append("an http reference") }
        if html.lowercased().contains("<script") { out.append("a script") }
        if html.range(of: #"(src|href)\s*="#, options: .regularExpression) != nil { out.append("an external src or href") }
        let void: Set<String> = ["meta", "br", "img", "hr", "input", "link", "rect", "line", "circle", "polyline"]
        var stack = [String]()
        let tag = try! NSRegularExpression(pattern: #"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*?(/?)>"#)
        for m in tag.matches(in: html, range: NSRange(html.startIndex..., in: html)) {
            let closing = (html as NSString).substring(with: m.range(at: 1)) == "/"
            let name = (html as NSString).substring(with: m.range(at: 2)).lowercased()
            let selfClosing = (html as NSString).substring(with: m.range(at: 3)) == "/"
            if void.contains(name) || selfClosing { continue }
            if closing {
                guard stack.last == name else { out.append("</\(name)> closes <\(stack.last ?? "nothing")>"); break }
                stack.removeLast()
            } else { stack.append(name) }
        }
        if !stack.isEmpty { out.append("unclosed <\(stack.joined(separator: "><"))>") }
        return out
    }

    @Test func driftReportIsWellFormedAndSelfContained() throws {
        let f = try Fixture(name: "html")
        let a = try f.record("a") { $0.maxSteps = 6 }, b = try f.record("b") { $0.maxSteps = 6; $0.learningRate *= 1.001 }
        var verdict = Verdict()
        verdict.reports = [try Verifier.compare(a, b, override: nil)]
        verdict.checks = checkTable
        verdict.unusable = [("missing.h5", "missing.h5: no such file <&>")]
        let html = HTMLReport.render(verdict, title: "test <report>")
        #expect(Self.problems(html).isEmpty, "\(Self.problems(html))")
        #expect(html.contains("first divergence: step 1") && html.contains("<polyline") && html.contains("DRIFT"))
        #expect(html.contains("no such file &lt;&amp;&gt;"))
        // Negative controls: the checker sees a script, an external reference and a broken nesting.
        #expect(!Self.problems(html.replacingOccurrences(of: "</body>", with: "<script>x()</script></body>")).isEmpty)
        #expect(!Self.problems(html.replacingOccurrences(of: "<svg ", with: "<img src=\"x.png\"><svg ")).isEmpty)
        #expect(!Self.problems(html.replacingOccurrences(of: "</section>", with: "")).isEmpty)
    }
}
