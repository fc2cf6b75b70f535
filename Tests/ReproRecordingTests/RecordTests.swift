import Foundation
import Testing
import ReproData
import ReproNN
import ReproRecording
import ReproStorage
import ReproTestSupport
import ReproTraining

/// A stand-in BatchNorm check table: the record tests are about the recording, not the checks (the verify
/// tests store the real table).
let placeholderChecks = [CheckRow(caseName: "placeholder", check: "not run in this test", worstError: 0, bound: 1, passed: true)]

@Suite struct RecordTests {
    static func config(_ configure: (inout RunConfig) -> Void = { _ in }) -> RunConfig {
        var config = RunConfig()
        config.batchSize = 32
        config.epochs = 2
        configure(&config)
        return config
    }

    static func record(_ tiny: TinyMNIST, to path: String, configure: (inout RunConfig) -> Void = { _ in }) throws {
        try Recording.record(config: config(configure), data: try MNIST.load(directory: tiny.directory), to: path,
                             header: RecordHeader(created: "", reproVersion: "test"), checks: placeholderChecks)
    }

    @Test func twoRecordsAreByteIdentical() throws {
        let tiny = try TinyMNIST()
        let a = tiny.directory + "/a.h5", b = tiny.directory + "/b.h5"
        try Self.record(tiny, to: a)
        try Self.record(tiny, to: b)
        #expect(FileManager.default.contents(atPath: a) == FileManager.default.contents(atPath: b), "records differ")
        // Negative control: another seed gives another file.
        let c = tiny.directory + "/c.h5"
        try Self.record(tiny, to: c) { $0.seed = 1 }
        #expect(FileManager.default.contents(atPath: a) != FileManager.default.contents(atPath: c), "seeds 0 and 1 gave the same record")
    }

    /// The config codec: what is written reads back equal, for both kernel kinds and non-default options.
    @Test func configRoundTrips() throws {
        let tiny = try TinyMNIST()
        for (i, kernels) in KernelChoice.allCases.enumerated() {
            let path = tiny.directory + "/roundtrip\(i).h5"
            let config = Self.config {
                $0.maxSteps = 9; $0.checkpointEvery = 4; $0.evaluationLimit = 50; $0.kernels = kernels
                $0.threads = kernels == .blas ? 2 : 1; $0.seed = UInt64.max - 3; $0.name = "round-trip_\(i)"
                $0.learningRate = 0.02; $0.weightDecay = 0; $0.momentum = 0.5
                $0.batchNorm = BatchNormOptions(affine: true, trackRunningStats: true, momentum: 0.8, epsilon: 1e-5, unbiased: false)
            }
            try Recording.record(config: config, data: try MNIST.load(directory: tiny.directory), to: path, checks: placeholderChecks)
            let record = try Record(path: path)
            #expect(record.config == config)
            #expect(record.config.differences(from: config).isEmpty)
            // Negative control: a config that differs in one value is not equal, and the difference is named.
            var other = config
            other.momentum = 0.6
            #expect(record.config != other && record.config.differences(from: other) == ["momentum: 0.5 vs 0.6"])
        }
    }

    @Test func recordHoldsEverySeries() throws {
        let tiny = try TinyMNIST()
        let path = tiny.directory + "/r.h5"
        try Self.record(tiny, to: path) { $0.maxSteps = 10; $0.checkpointEvery = 4 }
        #expect(RecordFile.checksumProblem(path) == nil)
        let record = try Record(path: path)
        #expect(record.header == RecordHeader(created: "", reproVersion: "test"))
        // 300 samples → 241 train (int(0.8·300 + 1)), 7 steps of 32 per epoch; 10 steps = 2 epochs started.
        #expect(record.shape(of: RecordSchema.trainIndices) == [241])
        #expect(record.shape(of: RecordSchema.stepLoss) == [10])
        #expect(record.shape(of: RecordSchema.epochOrder) == [2, 241])
        #expect(record.shape(of: RecordSchema.stepBatchNorm("bn3", .runningStd)) == [10, 120])
        #expect(record.plan.checkpointSteps == [0, 4, 8, 10])
        #expect(record.datasets.filter { $0.hasSuffix("/conv1.bias") && $0.contains("/model/") }.count == 4)
        // The step-0 checkpoint is the seeded initialization.
        let model = LeNet5<Float>(normalized: true, kernels: Trainer.kernels(.portable))
        model.initialize(seed: 0)
        let stored = try record.values(RecordSchema.checkpointModel(step: 0) + "/conv1.weight").values
        #expect(stored == model.conv1.weight.value.map(Double.init))
        // The last recorded running_std equals the final checkpoint's buffer.
        let series = try record.values(RecordSchema.stepBatchNorm("bn2", .runningStd)).values
        let final = try record.values(RecordSchema.checkpointModel(step: 10) + "/bn2.running_std").values
        #expect(Array(series.suffix(16)) == final)
    }

    /// The cursor a checkpoint states: step 4 is batch 4 of epoch 0, step 8 batch 1 of epoch 1.
    @Test func checkpointCursor() {
        let plan = RunPlan(config: Self.config { $0.maxSteps = 10; $0.checkpointEvery = 4 }, trainCount: 241)
        #expect(plan.cursor(afterStep: 4) == (0, 4) && plan.cursor(afterStep: 8) == (1, 1) && plan.cursor(afterStep: 7) == (1, 0))
    }

    @Test func checksumCatchesAFlippedByte() throws {
        let tiny = try TinyMNIST()
        let path = tiny.directory + "/flip.h5"
        try Self.record(tiny, to: path) { $0.maxSteps = 2 }
        #expect(RecordFile.checksumProblem(path) == nil)
        var bytes = [UInt8](FileManager.default.contents(atPath: path)!)
        bytes[bytes.count / 2] ^= 1
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        #expect(RecordFile.checksumProblem(path) != nil)
    }

    @Test func missingOutputFolderIsRefused() throws {
        #expect(throws: StorageError.self) { try RecordFile(target: "/nonexistent-folder/x.h5") }
    }

    /// A run that fails part-way (a non-finite loss at step 2, from an infinite learning rate) leaves
    /// neither the target nor its temporary file behind.
    @Test func failedRunLeavesNoFileAtTheTarget() throws {
        let tiny = try TinyMNIST()
        let path = tiny.directory + "/never.h5"
        var temporary = ""
        #expect(throws: TrainingError.self) {
            try Recording.record(config: Self.config { $0.learningRate = .infinity }, data: try MNIST.load(directory: tiny.directory),
                                 to: path, checks: placeholderChecks, temporaryFileCreated: { temporary = $0 })
        }
        #expect(!temporary.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(!FileManager.default.fileExists(atPath: temporary))
        // Control: the same configuration with a finite learning rate writes the file.
        try Recording.record(config: Self.config { $0.maxSteps = 2 }, data: try MNIST.load(directory: tiny.directory), to: path,
                             checks: placeholderChecks)
        #expect(FileManager.default.fileExists(atPath: path))
    }
}
