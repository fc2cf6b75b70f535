import ReproData
import ReproNN
import ReproTraining

/// What cannot be resumed or re-run from a record: bad input (exit 2), with the reason.
public struct ReplayError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A record's stored run, read back as the events and states the trainer produced: the start state of
/// any checkpoint (for resuming and for re-running a window) and, for `repro record --resume`, the events
/// of every step up to a checkpoint, replayed in the order the trainer sent them, so the new record is
/// written by the same calls in the same order as the uninterrupted run's (and so is byte-identical).
public struct RecordReplay {
    public let record: Record

    public init(_ record: Record) { self.record = record }

    func floats(_ path: String) throws -> [Float] { try record.values(path).values.map(Float.init) }

    /// The state stored at checkpoint `step`, with the running sums of the epoch it interrupts recomputed
    /// from the stored per-step loss and accuracy (exactly as the trainer summed them).
    public func resumePoint(at step: Int) throws -> ResumePoint {
        let plan = record.plan
        let (model, momentum) = try storedState(at: step)
        let (epoch, _) = plan.cursor(afterStep: step)
        let first = min(epoch * plan.stepsPerEpoch, step)  // an epoch that ended at `step` has no steps after it yet
        let loss = try record.values(RecordSchema.stepLoss, rows: first..<step)
        let accuracy = try record.values(RecordSchema.stepAccuracy, rows: first..<step)
        var lossSum = 0.0, correct = 0
        let b = record.config.batchSize
        for (l, a) in zip(loss, accuracy) {
            lossSum += Double(Float(l)) * Double(b)
            correct += Self.correct(accuracy: Float(a), batchSize: b)
        }
        return ResumePoint(step: step, model: model, momentumBuffers: momentum, epochLossSum: lossSum, epochCorrect: correct,
                           epochSamples: (step - first) * b)
    }

    /// The state_dict and momentum buffers stored at checkpoint `step` (no momentum buffers at step 0).
    func storedState(at step: Int) throws -> (model: [TensorValues], momentum: [TensorValues]) {
        let layout = record.layout
        guard record.plan.isCheckpoint(step) else {
            throw ReplayError("\(record.path): no checkpoint at step \(step) (checkpoints: \(record.plan.checkpointSteps.map(String.init).joined(separator: ", ")))")
        }
        let model = try layout.stateDict.map {
            TensorValues(name: $0.name, shape: $0.shape, values: try floats(RecordSchema.checkpointModel(step: step) + "/" + $0.name))
        }
        let momentum = step == 0 ? [] : try layout.parameters.map {
            TensorValues(name: $0.name, shape: $0.shape, values: try floats(RecordSchema.checkpointMomentum(step: step) + "/" + $0.name))
        }
        return (model, momentum)
    }

    /// The number of correct samples a stored accuracy stands for (the reader checked it is whole).
    static func correct(accuracy: Float, batchSize: Int) -> Int { Int((Double(accuracy) * Double(batchSize) / 100).rounded()) }

    /// Sends `observers` every event of steps 1 … `step` of a run with `config` — which may continue the
    /// stored run further (more epochs or steps) but must otherwise be the stored configuration — as the
    /// trainer sent them, read from the record. Refuses anything the record does not hold.
    public func replay(config: RunConfig, data: ImageDataset, through step: Int, into observers: [TrainingObserver]) throws {
        let source = record.plan
        let (train, validation) = DataOrder.trainValidationSplit(count: data.train.count, seed: config.seed)
        let plan = RunPlan(config: config, trainCount: train.count)
        let storedSplit = try record.values(RecordSchema.trainIndices).values.map { Int32($0) }
        guard storedSplit == train else { throw ReplayError("\(record.path): the stored split is not this data's split") }
        try observers.forEach { try $0.runStarted(plan: plan, split: DataSplit(train: train, validation: validation), layout: record.layout) }
        func metrics(_ phase: String) throws -> [Metrics] {
            let l = try record.values(RecordSchema.evaluation(phase, .loss)).values
            let a = try record.values(RecordSchema.evaluation(phase, .accuracy)).values
            let n = try record.values(RecordSchema.evaluation(phase, .samples)).values
            return (0..<3).map { Metrics(loss: l[$0], accuracy: a[$0], samples: Int(n[$0])) }
        }
        let before = try metrics(EvaluationPhase.before.rawValue)
        let forward = zip(try record.values(RecordSchema.forwardProbeChecksums).values, try record.values(RecordSchema.forwardProbeLargest).values)
        try observers.forEach { try $0.forwardProbed(forward.map { Probe(checksum: UInt32($0), largest: $1) }) }
        try observers.forEach { try $0.evaluated(.before, train: before[0], validation: before[1], test: before[2]) }
        try observers.forEach { try $0.stateCaptured(try state(at: 0, plan: plan)) }

        let layout = record.layout
        let stepSeries = record.stepSeries
        let stored = try stepSeries.map { try record.values($0.path).values }
        let epochSeries = try RecordSchema.EpochSeries.allCases.map { try record.values(RecordSchema.epochSeries($0)).values }
        let validated = Trainer.evaluationSizes(config: config, train: train.count, validation: validation.count, test: data.test.count)[1]
        for s in stride(from: 1, through: step, by: 1) {
            let epoch = (s - 1) / plan.stepsPerEpoch
            if s - 1 == epoch * plan.stepsPerEpoch {
                let order = DataOrder.epochOrder(trainIndices: train, epoch: epoch, seed: config.seed)
                try checkStoredOrder(order, epoch: epoch)
                try observers.forEach { try $0.epochStarted(epoch, order: order) }
            }
            let b = config.batchSize
            var replayed = ReplayedStep(layout: layout)
            for (series, values) in zip(stepSeries, stored) {
                series.restore(values[((s - 1) * series.width)..<(s * series.width)], into: &replayed)
            }
            let outcome = replayed.outcome(step: s, layout: layout, batchSize: b, withProbes: source.isKept(s, profile: record.config.profile))
            try observers.forEach { try $0.stepFinished(outcome) }
            if plan.capturesState(s) { try observers.forEach { try $0.stateCaptured(try state(at: s, plan: plan)) } }
            if s == plan.endOfEpoch(epoch) {
                guard source.endOfEpoch(epoch) == s else {
                    throw ReplayError("\(record.path): epoch \(epoch) ends at step \(source.endOfEpoch(epoch)) in the record, at step \(s) in the continued run")
                }
                let m = epochSeries.map { $0[epoch] }
                try observers.forEach {
                    try $0.epochFinished(epoch, train: Metrics(loss: m[0], accuracy: m[1], samples: (s - epoch * plan.stepsPerEpoch) * b),
                                         validation: Metrics(loss: m[2], accuracy: m[3], samples: validated))
                }
            }
        }
    }

    func checkStoredOrder(_ order: [Int32], epoch: Int) throws {
        switch record.config.profile {
        case .complete:
            let n = record.plan.trainCount
            let row = try record.values(RecordSchema.epochOrder).values[(epoch * n)..<((epoch + 1) * n)].map { Int32($0) }
            guard row == order else { throw ReplayError("\(record.path): epoch \(epoch)'s stored order is not the seed's") }
        case .golden:
            let digests = try record.values(RecordSchema.epochOrderDigests).values
            guard digests[(epoch * 32)..<((epoch + 1) * 32)].map({ UInt8($0) }) == Digest.of(order) else {
                throw ReplayError("\(record.path): epoch \(epoch)'s stored order digest is not the seed's")
            }
        }
    }

    /// The stored state at `step` as the trainer sent it: tensors at a stored checkpoint, digests at a window
    /// end the record kept only as digests.
    func state(at step: Int, plan: RunPlan) throws -> StateCapture {
        let (epoch, batchInEpoch) = plan.cursor(afterStep: step)
        if record.plan.isCheckpoint(step) {
            let (model, momentum) = try storedState(at: step)
            return StateCapture(step: step, epoch: epoch, batchInEpoch: batchInEpoch, content: .tensors(model: model, momentumBuffers: momentum))
        }
        guard record.plan.capturesState(step) else { throw ReplayError("\(record.path): holds no state at step \(step)") }
        let group = RecordSchema.stateDigest(step: step)
        func rows(_ path: String) throws -> [[UInt8]] {
            let bytes = try record.values(path).values.map { UInt8($0) }
            return stride(from: 0, to: bytes.count, by: 32).map { Array(bytes[$0..<($0 + 32)]) }
        }
        return StateCapture(step: step, epoch: epoch, batchInEpoch: batchInEpoch,
                            content: .digests(model: try rows(group + "/model"), momentumBuffers: try rows(group + "/momentum_buffer")))
    }
}
