import Foundation
import Testing
import ReproData
import ReproNN
import ReproRecording
import ReproStorage
import ReproTestSupport
import ReproTraining
import ReproVerify

/// Resume and window verification on the tiny fixture: 241 training samples, batch 32, 7 steps per epoch.
@Suite struct ResumeTests {
    /// 3 epochs (21 steps), a checkpoint every 2 steps: step 4 is inside epoch 0, step 14 ends epoch 1.
    static func record(_ f: Fixture, _ name: String, norm: Bool, _ change: (inout RunConfig) -> Void = { _ in }) throws -> String {
        try f.record(name) { $0.epochs = 3; $0.checkpointEvery = 2; $0.norm = norm; change(&$0) }
    }

    /// Resuming from step 0, a step inside an epoch, an epoch boundary and the last checkpoint writes the
    /// uninterrupted run's file byte for byte, with and without BatchNorm, in both profiles.
    @Test(arguments: [(true, RecordProfile.complete), (false, .complete), (true, .golden)])
    func resumeEqualsTheUninterruptedRun(norm: Bool, profile: RecordProfile) throws {
        let f = try Fixture(name: "resume\(norm)\(profile)")
        let original = try Self.record(f, "original", norm: norm) { $0.profile = profile; $0.windowSteps = profile == .golden ? 1 : nil }
        let source = try Record(path: original)
        for step in [0, 4, 14, 21] {
            let path = f.directory + "/resumed\(step).h5"
            try Recording.resume(source, config: source.config, from: step, data: f.data, to: path,
                                 header: RecordHeader(created: "", reproVersion: ""), checks: checkTable)
            #expect(FileManager.default.contents(atPath: path) == FileManager.default.contents(atPath: original), "from step \(step)")
            #expect(try Verifier.compare(original, path, override: .exact).series.allSatisfy(\.passed))
        }
    }

    /// A run made longer by resuming equals the longer run made in one go.
    @Test func extendingARunEqualsTheLongerRun() throws {
        let f = try Fixture(name: "extend")
        let short = try f.record("short") { $0.maxSteps = 9; $0.checkpointEvery = 4 }
        let long = try f.record("long") { $0.maxSteps = 17; $0.checkpointEvery = 4 }
        var config = try Record(path: short).config
        config.maxSteps = 17
        let path = f.directory + "/extended.h5"
        try Recording.resume(try Record(path: short), config: config, from: nil, data: f.data, to: path,
                             header: RecordHeader(created: "", reproVersion: ""), checks: checkTable)
        #expect(FileManager.default.contents(atPath: path) == FileManager.default.contents(atPath: long))
    }

    /// Negative controls: a restore that drops the momentum buffers, or the running sums of the interrupted
    /// epoch, is detected — the resumed run differs from the uninterrupted one where it should.
    @Test func aWrongRestoreIsDetected() throws {
        let f = try Fixture(name: "wrongrestore")
        let original = try Self.record(f, "original", norm: true)
        let source = try Record(path: original)
        let replay = RecordReplay(source)
        func resumed(_ name: String, _ spoil: (inout ResumePoint) -> Void) throws -> ComparisonReport {
            var point = try replay.resumePoint(at: 4)
            spoil(&point)
            let path = f.directory + "/\(name).h5"
            let file = try RecordFile(target: path)
            let writer = try RecordWriter(file: file, config: source.config, data: DataDescription(dataset: .mnist, data: f.data),
                                          header: RecordHeader(created: "", reproVersion: ""), checks: checkTable)
            try replay.replay(config: source.config, data: f.data, through: 4, into: [writer])
            try Trainer(config: source.config, data: f.data).run(observers: [writer], from: point)
            try writer.finish()
            return try Verifier.compare(original, path, override: .exact)
        }
        let intact = try resumed("intact") { _ in }
        #expect(intact.passed)
        let noMomentum = try resumed("nomomentum") { p in
            p = ResumePoint(step: p.step, model: p.model, momentumBuffers: [], epochLossSum: p.epochLossSum,
                            epochCorrect: p.epochCorrect, epochSamples: p.epochSamples)
        }
        // Step 5 runs from the right weights but updates them without momentum: its update pass differs.
        #expect(!noMomentum.passed && noMomentum.firstDivergence?.step == 5 && noMomentum.firstDivergence?.point?.pass == .update,
                "\(noMomentum.firstDivergence?.description ?? "none")")
        let noSums = try resumed("nosums") { p in p.epochLossSum = 0; p.epochCorrect = 0; p.epochSamples = 0 }
        // Every step is right; epoch 0's training metrics (ending at step 7) are not.
        #expect(!noSums.passed && noSums.firstDivergence?.step == 7 && noSums.firstDivergence?.description.contains("epochs/train_") == true,
                "\(noSums.firstDivergence?.description ?? "none")")
    }

    @Test func resumeRefusesAnotherConfiguration() throws {
        let f = try Fixture(name: "resumerefuses")
        let source = try Record(path: try f.record("source") { $0.maxSteps = 5; $0.checkpointEvery = 2 })
        var other = source.config
        other.learningRate = 0.02
        #expect(throws: ReplayError.self) {
            try Recording.resume(source, config: other, from: nil, data: f.data, to: f.directory + "/x.h5",
                                 header: RecordHeader(created: "", reproVersion: ""), checks: checkTable)
        }
        #expect(throws: ReplayError.self) {  // no checkpoint at step 3
            try Recording.resume(source, config: source.config, from: 3, data: f.data, to: f.directory + "/y.h5",
                                 header: RecordHeader(created: "", reproVersion: ""), checks: checkTable)
        }
    }
}

@Suite struct WindowVerificationTests {
    /// The fixture's "full-length" golden: 6 epochs (42 steps; epochs end at 7, 14, 21, …) in the golden
    /// profile, checkpoints every 10 steps and windows of 6 — windows 0–6, 10–16 (across the end of epoch 1
    /// at step 14), 20–26, 30–36, 40–42 (the evaluation after training).
    static func fullGolden(_ f: Fixture) throws -> String {
        try f.record("full") { $0.epochs = 6; $0.checkpointEvery = 10; $0.windowSteps = 6; $0.profile = .golden }
    }

    /// The short golden's analog: the first 5 steps of epoch 0.
    static func shortGolden(_ f: Fixture) throws -> String {
        try f.record("short") { $0.epochs = 1; $0.maxSteps = 5; $0.checkpointEvery = 2 }
    }

    @Test func windowsOfAFullGoldenVerify() throws {
        let f = try Fixture(name: "windowsverify")
        let golden = try Self.fullGolden(f)
        let record = try Record(path: golden)
        #expect(record.plan.windows.map { [$0.start, $0.end] } == [[0, 6], [10, 16], [20, 26], [30, 36], [40, 42]])
        let verifier = Verifier(dataDirectory: f.dataDirectory, checks: checkTable)
        let all = try verifier.verify(golden)
        #expect(all.passed && all.windows?.verified.count == 5, "\(Report.text(all))")
        #expect(try verifier.verify(golden, windows: .full).passed)
        // The golden profile keeps BN series inside windows only, and far fewer bytes than a complete record.
        let complete = try f.record("complete") { $0.epochs = 6; $0.checkpointEvery = 10; $0.windowSteps = 6 }
        let sizes = [golden, complete].map { (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int) ?? 0 }
        #expect(sizes[0] < sizes[1], "\(sizes)")
    }

    /// Changes that act only after epoch 0 fail the full-length golden at the step where they first act, and
    /// pass the short golden of epoch 0's first steps — the blind spot window verification closes.
    @Test(arguments: [(Verifier.RerunFault.laterShuffle, 8, "epoch 1 order"),
                      (.laterEpochMetric, 14, "epochs/train_loss[1]"),
                      (.laterValidation, 14, "epochs/val_loss[1]")])
    func laterEpochChangesNeedTheFullGolden(fault: Verifier.RerunFault, step: Int, place: String) throws {
        let f = try Fixture(name: "later\(fault.rawValue.filter(\.isLetter))")
        let golden = try Self.fullGolden(f), short = try Self.shortGolden(f)
        var verifier = Verifier(dataDirectory: f.dataDirectory, checks: checkTable)
        verifier.fault = fault
        let full = try verifier.verify(golden)
        #expect(!full.passed)
        #expect(full.firstDivergence?.step == step && full.firstDivergence?.description.contains(place) == true,
                "\(full.firstDivergence?.description ?? "none")")
        #expect(full.firstDivergence?.window != nil)
        let fully = try verifier.verify(golden, windows: .full)
        #expect(!fully.passed && fully.firstDivergence?.step == step, "\(fully.firstDivergence?.description ?? "none")")
        // The same change passes the short golden: it never reaches epoch 1.
        #expect(try verifier.verify(short).passed)
    }

    /// Every shard split covers every chosen window exactly once, and each shard's report names its shard.
    @Test func shardsCoverEveryWindowOnce() throws {
        let plan = RunPlan(config: { var c = RunConfig(); c.batchSize = 32; c.epochs = 50; c.checkpointEvery = 13; c.windowSteps = 5; return c }(),
                           trainCount: 241)
        let windows = plan.windows
        #expect(windows.count > 20)
        for selection in [windows, WindowSelection.choose(8, of: windows, plan: plan)] {
            for n in 1...7 {
                let shards = (1...n).map { Shard("\($0)/\(n)")!.take(selection) }
                #expect(shards.flatMap { $0 }.map(\.index).sorted() == selection.map(\.index), "\(n) shards")
            }
        }
        #expect(Shard("0/3") == nil && Shard("4/3") == nil && Shard("1/0") == nil && Shard("x") == nil)

        let f = try Fixture(name: "shardreport")
        let verifier = Verifier(dataDirectory: f.dataDirectory, checks: checkTable)
        let report = try verifier.verify(try Self.fullGolden(f), shard: Shard("2/2"))
        #expect(report.passed && report.windows?.verified.map(\.index) == [1, 3])
        var verdict = Verdict()
        verdict.reports = [report]
        #expect(Report.junit(verdict).contains("[shard 2/2]"))
        let json = try JSONSerialization.jsonObject(with: try Report.json(verdict)) as? [String: Any]
        let windows0 = ((json?["reports"] as? [[String: Any]])?.first?["windows"] as? [String: Any])
        #expect((windows0?["shard"] as? [String: Int]) == ["index": 2, "count": 2])
    }

    /// The deterministic choice: the first window, one crossing an epoch boundary, the last, then spread.
    @Test func windowChoiceCoversTheBoundaries() {
        var config = RunConfig()
        config.epochs = 50; config.checkpointEvery = 3700; config.windowSteps = 160
        let plan = RunPlan(config: config, trainCount: 48001)
        let chosen = WindowSelection.choose(4, of: plan.windows, plan: plan)
        #expect(chosen.count == 4 && chosen.first?.index == 0 && chosen.last?.end == plan.totalSteps)
        #expect(chosen.contains { w in (0..<50).contains { e in plan.endOfEpoch(e) > w.start && plan.endOfEpoch(e) < w.end } })
        #expect(WindowSelection.choose(4, of: plan.windows, plan: plan) == chosen)  // the same every time
    }
}

@Suite struct SVHNRecordTests {
    /// A short svhn_bn run on generated SVHN files (300 training images: 241 train, 7 steps of 32 per epoch)
    /// verifies exactly against itself, and a changed label is drift.
    @Test func svhnRunVerifiesAgainstItself() throws {
        let folder = NSTemporaryDirectory() + "repro-svhn-record-\(getpid())"
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder + "/data", withIntermediateDirectories: true)
        let train = MATWriter.syntheticSVHN(count: 300, seed: 5), test = MATWriter.syntheticSVHN(count: 70, seed: 6)
        _ = FileManager.default.createFile(atPath: folder + "/data/train_32x32.mat", contents: Data(MATWriter.svhn(train)))
        _ = FileManager.default.createFile(atPath: folder + "/data/test_32x32.mat", contents: Data(MATWriter.svhn(test)))
        let data = try ImageDataset.load(.svhn, directory: folder + "/data")
        var config = RunConfig()
        (config.dataset, config.norm, config.name) = (.svhn, true, "svhn_bn")
        (config.batchSize, config.epochs, config.checkpointEvery) = (32, 2, 4)
        let path = folder + "/svhn_bn.h5"
        try Recording.record(config: config, data: data, to: path, checks: checkTable)
        let record = try Record(path: path)
        #expect(record.config.dataset == .svhn && record.data.fingerprints.map(\.file) == ["train_32x32.mat", "test_32x32.mat"])
        let verifier = Verifier(dataDirectory: folder + "/data", checks: checkTable)
        #expect(try verifier.verify(path).passed)
        #expect(try verifier.verify(path, windows: .full).passed)
        // Negative control: the same run on MNIST-shaped data of the same size is another run.
        let mnist = try Fixture(name: "svhnvsmnist")
        let other = try mnist.record("mnist") { $0.batchSize = 32; $0.epochs = 2; $0.checkpointEvery = 4 }
        #expect(!(try Verifier.compare(path, other, override: nil).passed))
    }
}
