import Foundation
import Testing
import ReproData
import ReproNN
import ReproStorage
import ReproTraining

@Suite struct RecordTests {
    static func record(_ tiny: TinyMNIST, to path: String, configure: (inout RunConfig) -> Void = { _ in }) throws {
        var config = RunConfig()
        config.batchSize = 32
        config.epochs = 2
        config.output = path
        config.dataDirectory = tiny.directory
        configure(&config)
        let data = try MNIST.load(directory: tiny.directory)
        let file = try RecordFile(target: path)
        let recorder = try Recorder(file: file, config: config, data: data, reproVersion: "test", created: "")
        try Trainer(config: config, data: data).run(observers: [recorder])
        try recorder.finish()
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

    @Test func recordHoldsEverySeries() throws {
        let tiny = try TinyMNIST()
        let path = tiny.directory + "/r.h5"
        try Self.record(tiny, to: path) { $0.maxSteps = 10; $0.checkpointEvery = 4 }
        #expect(RecordFile.checksumProblem(path) == nil)
        let r = try HDF5Reader(opening: path)
        #expect(try r.stringAttribute(RecordSchema.formatAttribute) == RecordSchema.formatName)
        #expect(try r.numberAttribute(RecordSchema.completeAttribute, as: Int32.self) == 1)
        // 300 samples → 241 train (int(0.8·300 + 1)), 7 steps of 32 per epoch; 10 steps = 2 epochs started.
        #expect(try r.shape(of: RecordSchema.trainIndices) == [241])
        #expect(try r.shape(of: RecordSchema.stepLoss) == [10])
        #expect(try r.shape(of: RecordSchema.epochOrder) == [2, 241])
        #expect(try r.shape(of: RecordSchema.stepBatchNorm("bn3", "running_std")) == [10, 120])
        #expect(try r.members(of: RecordSchema.checkpoints) == ["00000000", "00000004", "00000008", "00000010"])
        // The step-0 checkpoint is the seeded initialization.
        let model = LeNet5<Float>(normalized: true, kernels: try Trainer.kernels(named: "blas"))
        model.initialize(seed: 0)
        let stored = try r.read(RecordSchema.checkpointTensor(step: 0, "conv1.weight"), as: Float.self, expectedShape: [6, 3, 5, 5])
        #expect(stored.values == model.conv1.weight.value)
        // Resume information of a mid-epoch checkpoint: step 4 is batch 4 of epoch 0.
        #expect(try r.numberAttribute("epoch", as: Int64.self, on: RecordSchema.checkpoint(step: 4)) == 0)
        #expect(try r.numberAttribute("batch_in_epoch", as: Int64.self, on: RecordSchema.checkpoint(step: 4)) == 4)
        #expect(try r.numberAttribute("epoch", as: Int64.self, on: RecordSchema.checkpoint(step: 8)) == 1)
        #expect(try r.numberAttribute("batch_in_epoch", as: Int64.self, on: RecordSchema.checkpoint(step: 8)) == 1)
        // The last recorded running_std equals the final checkpoint's buffer.
        let series = try r.read(RecordSchema.stepBatchNorm("bn2", "running_std"), as: Float.self).values
        let final = try r.read(RecordSchema.checkpointTensor(step: 10, "bn2.running_std"), as: Float.self).values
        #expect(Array(series.suffix(16)) == final)
    }

    @Test func checksumCatchesAFlippedByte() throws {
        let tiny = try TinyMNIST()
        let path = tiny.directory + "/flip.h5"
        try Self.record(tiny, to: path) { $0.maxSteps = 2 }
        #expect(RecordFile.checksumProblem(path) == nil)
        var bytes = [UInt8](FileManager.default.contents(atPath: path)!)
        bytes[bytes.count / 2] ^= 1
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        #expect(RecordFile.checksumProblem(path) != nil)
    }

    @Test func unwritableOrMissingOutputFolderIsRefused() throws {
        #expect(throws: StorageError.self) { try RecordFile(target: "/nonexistent-folder/x.h5") }
    }

    @Test func failedRunLeavesNoFileAtTheTarget() throws {
        let tiny = try TinyMNIST()
        let path = tiny.directory + "/never.h5"
        let file = try RecordFile(target: path)
        file.abandon()
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(!FileManager.default.fileExists(atPath: file.temporaryPath))
    }
}
