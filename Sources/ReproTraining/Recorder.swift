import ReproData
import ReproKernels
import ReproNN
import ReproStorage

/// Writes everything a run produces into one record (layout: `RecordSchema`). Per-step series are buffered
/// for one epoch and written as rows of full-size datasets created up front (memory stays one epoch's
/// worth); checkpoints are written as they happen.
public final class Recorder: TrainingObserver {
    public let file: RecordFile
    let config: RunConfig
    var plan: RunPlan?
    var stepLoss: [Float] = [], stepAccuracy: [Float] = []
    /// Steps already written to the file; the buffers hold the steps after it.
    var stepsWritten = 0
    var epochsWritten = 0
    /// Per BN layer (forward order): batch_mean, batch_std, running_mean, running_std, each [S × C] row-major.
    var batchNormSeries: [(layer: String, channels: Int, series: [[Float]])] = []
    var epochSeries = [[Double]](repeating: [], count: RecordSchema.epochSeries.count)

    public init(file: RecordFile, config: RunConfig, data: MNIST, reproVersion: String, created: String) throws {
        self.file = file
        self.config = config
        let w = file.writer
        try w.setAttribute(RecordSchema.createdAttribute, created)
        try w.setAttribute(RecordSchema.reproVersionAttribute, reproVersion)
        let c = RecordSchema.config
        try w.setAttribute("batch_size", Int64(config.batchSize), on: c)
        try w.setAttribute("learning_rate", config.learningRate, on: c)
        try w.setAttribute("weight_decay", config.weightDecay, on: c)
        try w.setAttribute("momentum", config.momentum, on: c)
        try w.setAttribute("epochs", Int64(config.epochs), on: c)
        try w.setAttribute("dataset", config.dataset, on: c)
        try w.setAttribute("norm", config.norm, on: c)
        try w.setAttribute("name", config.name, on: c)
        try w.setAttribute("seed", Int64(bitPattern: config.seed), on: c)
        try w.setAttribute("max_steps", Int64(config.maxSteps ?? -1), on: c)
        try w.setAttribute("checkpoint_every", Int64(config.checkpointEvery ?? -1), on: c)
        try w.setAttribute("evaluation_limit", Int64(config.evaluationLimit ?? -1), on: c)
        // Portable kernels give the same bits for any thread count (tested), so a portable record leaves the
        // count out and stays byte-identical however it was run; for blas the count changes the bits.
        if config.kernels == "blas" { try w.setAttribute("threads", Int64(config.threads), on: c) }
        try w.setAttribute("kernels", config.kernels, on: c)
        try w.setAttribute("bn_momentum", config.batchNorm.momentum, on: c)
        try w.setAttribute("bn_epsilon", config.batchNorm.epsilon, on: c)
        try w.setAttribute("bn_unbiased", config.batchNorm.unbiased, on: c)
        try w.setAttribute("bn_affine", config.batchNorm.affine, on: c)
        try w.setAttribute("bn_track_running_stats", config.batchNorm.trackRunningStats, on: c)
        try w.setAttribute("dataset", config.dataset, on: RecordSchema.data)
        for (fileName, digest) in data.fingerprints { try w.setAttribute(fileName + "_sha256", digest, on: RecordSchema.data) }
        try w.setAttribute("train_samples", Int64(data.train.count), on: RecordSchema.data)
        try w.setAttribute("test_samples", Int64(data.test.count), on: RecordSchema.data)
    }

    public func runStarted(plan: RunPlan, split: (train: [Int32], validation: [Int32]), model: LeNet5<Float>) throws {
        self.plan = plan
        // Read now, after the trainer has pinned the OpenBLAS thread count.
        for (key, value) in RunEnvironment().fields(kernels: config.kernels) { try file.writer.setAttribute(key, value, on: RecordSchema.environment) }
        batchNormSeries = model.batchNorms.map { bn in (bn.name, bn.channels, [[Float]](repeating: [], count: 4)) }
        let w = file.writer
        try w.create(Int32.self, shape: [plan.epochsStarted, plan.trainCount], at: RecordSchema.epochOrder)
        try w.create(Float.self, shape: [plan.totalSteps], at: RecordSchema.stepLoss)
        try w.create(Float.self, shape: [plan.totalSteps], at: RecordSchema.stepAccuracy)
        for bn in model.batchNorms {
            for name in RecordSchema.batchNormSeries where bn.options.trackRunningStats || !name.hasPrefix("running") {
                try w.create(Float.self, shape: [plan.totalSteps, bn.channels], at: RecordSchema.stepBatchNorm(bn.name, name))
            }
        }
        try file.writer.write(split.train, shape: [split.train.count], at: RecordSchema.trainIndices)
        try file.writer.write(split.validation, shape: [split.validation.count], at: RecordSchema.validationIndices)
    }

    public func evaluated(_ phase: EvaluationPhase, train: Metrics, validation: Metrics, test: Metrics) throws {
            try file.writer.write([train.loss, validation.loss, test.loss], shape: [3], at: RecordSchema.evaluation(phase.rawValue, "loss"))
            try file.writer.write([train.accuracy, validation.accuracy, test.accuracy], shape: [3],
                                  at: RecordSchema.evaluation(phase.rawValue, "accuracy"))
            try file.writer.write([Int64(train.samples), Int64(validation.samples), Int64(test.samples)], shape: [3],
                                  at: RecordSchema.evaluation(phase.rawValue, "samples"))
    }

    public func epochStarted(_ epoch: Int, order: [Int32]) throws {
        try file.writer.writeRows(order, from: epochsWritten, at: RecordSchema.epochOrder)
        epochsWritten += 1
    }

    public func stepFinished(_ step: Int, loss: Float, correct: Int, batch: Int, model: LeNet5<Float>) throws {
        stepLoss.append(loss)
        stepAccuracy.append(Float(100 * Double(correct) / Double(batch)))
        for (i, bn) in model.batchNorms.enumerated() {
            batchNormSeries[i].series[0] += bn.lastMean
            batchNormSeries[i].series[1] += bn.lastStd
            batchNormSeries[i].series[2] += bn.runningMean?.value ?? []
            batchNormSeries[i].series[3] += bn.runningStd?.value ?? []
        }
    }

    public func epochFinished(_ epoch: Int, train: Metrics, validation: Metrics) throws {
        for (i, v) in [train.loss, train.accuracy, validation.loss, validation.accuracy].enumerated() { epochSeries[i].append(v) }
        try flushSteps()
    }

    /// Writes the buffered per-step rows and empties the buffers.
    func flushSteps() throws {
        let w = file.writer
        try w.writeRows(stepLoss, from: stepsWritten, at: RecordSchema.stepLoss)
        try w.writeRows(stepAccuracy, from: stepsWritten, at: RecordSchema.stepAccuracy)
        for (i, layer) in batchNormSeries.enumerated() {
            for (j, name) in RecordSchema.batchNormSeries.enumerated() where !layer.series[j].isEmpty {
                try w.writeRows(layer.series[j], from: stepsWritten, at: RecordSchema.stepBatchNorm(layer.layer, name))
                batchNormSeries[i].series[j].removeAll(keepingCapacity: true)
            }
        }
        stepsWritten += stepLoss.count
        stepLoss.removeAll(keepingCapacity: true)
        stepAccuracy.removeAll(keepingCapacity: true)
    }

    public func checkpoint(step: Int, epoch: Int, batchInEpoch: Int, model: LeNet5<Float>, optimizer: SGD<Float>) throws {
        let w = file.writer
        for t in model.stateDict { try w.write(t.value, shape: t.shape, at: RecordSchema.checkpointTensor(step: step, t.name)) }
        for (p, buffer) in zip(optimizer.parameters, optimizer.momentumBuffers) {
            try w.write(buffer, shape: p.shape, at: RecordSchema.checkpointMomentum(step: step, p.name))
        }
        // Enough to resume exactly: the data cursor, and the stream coordinates that regenerate the order.
        let group = RecordSchema.checkpoint(step: step)
        try w.setAttribute("step", Int64(step), on: group)
        try w.setAttribute("epoch", Int64(epoch), on: group)
        try w.setAttribute("batch_in_epoch", Int64(batchInEpoch), on: group)
        try w.setAttribute("has_momentum_buffers", !optimizer.momentumBuffers.isEmpty, on: group)
        try w.setAttribute("rng", "philox4x32-10 seed=\(config.seed) shuffle_stream=\(RandomStream.shuffle.rawValue) substream=epoch position=0", on: group)
    }

    /// Writes the per-step and per-epoch series and commits the file.
    public func finish() throws {
        guard plan != nil else { return }
        let w = file.writer
        try flushSteps()
        for (name, values) in zip(RecordSchema.epochSeries, epochSeries) {
            try w.write(values, shape: [values.count], at: RecordSchema.epochs + "/" + name)
        }
        try file.commit()
    }
}
