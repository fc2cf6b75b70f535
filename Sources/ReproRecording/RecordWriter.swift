import ReproData
import ReproNN
import ReproStorage
import ReproTraining

/// Writes everything a run produces into one record (layout: `RecordSchema`, parts: RecordParts.swift).
/// Per-step series are buffered for one epoch and written as rows of full-size datasets created up front
/// (memory stays one epoch's worth); checkpoints are written as they happen. The order of writes is part
/// of the format's byte-for-byte reproducibility: change it and records made before no longer match.
public final class RecordWriter: TrainingObserver {
    public let file: RecordFile
    let config: RunConfig
    var plan: RunPlan?
    /// Steps already written to the file; the buffers hold the steps after it.
    var stepsWritten = 0, stepsBuffered = 0
    var epochsWritten = 0
    var layout: ModelLayout?
    /// The per-step series and, for each, the buffered rows (row-major, `width` values a step).
    var series: [StepSeries] = []
    var buffers: [[Double]] = []
    var epochSeries = [[Double]](repeating: [], count: RecordSchema.EpochSeries.allCases.count)

    public var wantsProbes: Bool { true }

    public init(file: RecordFile, config: RunConfig, data: DataDescription, header: RecordHeader,
                checks: [CheckRow]) throws {
        self.file = file
        self.config = config
        let w = file.writer
        try header.writeStart(to: w)
        try config.write(to: w)
        try data.write(to: w)
        try StoredPolicy(for: config.kernels).write(to: w)
        try CheckTable.write(checks, to: w)
    }

    public func runStarted(plan: RunPlan, split: DataSplit, layout: ModelLayout) throws {
        self.plan = plan
        self.layout = layout
        let w = file.writer
        try EnvironmentFacts(current: config.kernels).write(to: w)
        switch config.profile {
        case .complete: try w.create(Int32.self, shape: [plan.epochsStarted, plan.trainCount], at: RecordSchema.epochOrder)
        case .golden: try w.create(UInt8.self, shape: [plan.epochsStarted, 32], at: RecordSchema.epochOrderDigests)
        }
        series = StepSeries.table(for: layout)
        buffers = Array(repeating: [], count: series.count)
        for s in series { try w.create(s.kind, shape: s.shape(steps: plan.totalSteps), at: s.path) }
        try ProbePointsAttribute.write(layout, to: w)
        try w.write(split.train, shape: [split.train.count], at: RecordSchema.trainIndices)
        try w.write(split.validation, shape: [split.validation.count], at: RecordSchema.validationIndices)
    }

    public func forwardProbed(_ probes: [Probe]) throws {
        guard let layout else { preconditionFailure("probes before runStarted") }
        precondition(probes.count == layout.forwardProbePoints.count, "forward probes do not match the layout")
        try file.writer.write(probes.map { Int64($0.checksum) }, shape: [probes.count], at: RecordSchema.forwardProbeChecksums)
        try file.writer.write(probes.map(\.largest), shape: [probes.count], at: RecordSchema.forwardProbeLargest)
    }

    public func evaluated(_ phase: EvaluationPhase, train: Metrics, validation: Metrics, test: Metrics) throws {
        let w = file.writer, sets = [train, validation, test]
        try w.write(sets.map(\.loss), shape: [3], at: RecordSchema.evaluation(phase.rawValue, .loss))
        try w.write(sets.map(\.accuracy), shape: [3], at: RecordSchema.evaluation(phase.rawValue, .accuracy))
        try w.write(sets.map { Int64($0.samples) }, shape: [3], at: RecordSchema.evaluation(phase.rawValue, .samples))
    }

    public func epochStarted(_ epoch: Int, order: [Int32]) throws {
        // Each epoch's order is written once (a resumed run announces the epoch it continues in again).
        guard epoch >= epochsWritten else { return }
        epochsWritten = epoch + 1
        switch config.profile {
        case .complete: try file.writer.writeRows(order, from: epoch, at: RecordSchema.epochOrder)
        case .golden: try file.writer.writeRows(Digest.of(order), from: epoch, at: RecordSchema.epochOrderDigests)
        }
    }

    public func stepFinished(_ outcome: StepOutcome) throws {
        guard let plan else { preconditionFailure("step before runStarted") }
        for (i, s) in series.enumerated() {
            buffers[i] += s.row(of: outcome, kept: s.isKept(outcome.step, plan: plan, profile: config.profile))
        }
        stepsBuffered += 1
    }

    public func epochFinished(_ epoch: Int, train: Metrics, validation: Metrics) throws {
        for (i, v) in [train.loss, train.accuracy, validation.loss, validation.accuracy].enumerated() { epochSeries[i].append(v) }
        try flushSteps()
    }

    /// Writes the buffered per-step rows and empties the buffers.
    func flushSteps() throws {
        let w = file.writer
        for (i, s) in series.enumerated() {
            try w.writeRows(buffers[i], as: s.kind, from: stepsWritten, at: s.path)
            buffers[i].removeAll(keepingCapacity: true)
        }
        stepsWritten += stepsBuffered
        stepsBuffered = 0
    }

    public func stateCaptured(_ state: StateCapture) throws {
        guard let plan, let layout else { preconditionFailure("state before runStarted") }
        let w = file.writer
        if plan.isCheckpoint(state.step) {
            guard case let .tensors(model, momentumBuffers) = state.content else { preconditionFailure("a checkpoint needs its tensors") }
            for t in model { try w.write(t.values, shape: t.shape, at: RecordSchema.checkpointModel(step: state.step) + "/" + t.name) }
            for t in momentumBuffers {
                try w.write(t.values, shape: t.shape, at: RecordSchema.checkpointMomentum(step: state.step) + "/" + t.name)
            }
            let attributes = CheckpointAttributes(step: state.step, plan: plan, seed: config.seed)
            precondition(attributes.epoch == state.epoch && attributes.batchInEpoch == state.batchInEpoch
                         && attributes.hasMomentumBuffers == !momentumBuffers.isEmpty, "checkpoint cursor disagrees with the plan")
            try attributes.write(to: w, group: RecordSchema.checkpoint(step: state.step))
            return
        }
        // The end of a window between checkpoints: the state as digests.
        let model: [[UInt8]], momentum: [[UInt8]]
        switch state.content {
        case let .tensors(m, b): (model, momentum) = (m.map { Digest.of($0.values) }, b.map { Digest.of($0.values) })
        case let .digests(m, b): (model, momentum) = (m, b)
        }
        precondition(model.count == layout.stateDict.count && momentum.count == layout.parameters.count, "digests do not match the model")
        let group = RecordSchema.stateDigest(step: state.step)
        try w.write(model.flatMap { $0 }, shape: [model.count, 32], at: group + "/model")
        try w.write(momentum.flatMap { $0 }, shape: [momentum.count, 32], at: group + "/momentum_buffer")
    }

    /// Writes the per-step and per-epoch series, marks the record complete and commits the file.
    /// `amend`: see `RecordFile.commit(amending:)` (the envelope is added that way).
    public func finish(amending amend: ((String) throws -> Void)? = nil) throws {
        guard plan != nil else { return }
        let w = file.writer
        try flushSteps()
        for (series, values) in zip(RecordSchema.EpochSeries.allCases, epochSeries) {
            try w.write(values, shape: [values.count], at: RecordSchema.epochSeries(series))
        }
        try RecordHeader.writeComplete(to: w)
        try file.commit(amending: amend)
    }
}

/// Recording a run: `repro record` and verify's re-run take this one path.
public enum Recording {
    /// Trains `config` on `data` and writes the record to `path` (a temporary file renamed into place when
    /// complete; removed on any failure). `checks` is the BatchNorm check table to store.
    public static func record(config: RunConfig, data: ImageDataset, to path: String, header: RecordHeader = .init(created: "", reproVersion: ""),
                              checks: [CheckRow], observers: [TrainingObserver] = [], hooks: any TrainingHooks = NoFault(),
                              temporaryFileCreated: (String) -> Void = { _ in }, amending amend: ((String) throws -> Void)? = nil) throws {
        try writing(config: config, data: data, to: path, header: header, checks: checks, temporaryFileCreated: temporaryFileCreated,
                    amending: amend) { writer in
            var trainer = Trainer(config: config, data: data)
            trainer.hooks = hooks
            try trainer.run(observers: observers + [writer])
        }
    }

    /// Writes a record to `path` through a temporary file: checks it can fit, runs `body` with the writer,
    /// finishes and commits it; on any failure removes the temporary file and names the target.
    static func writing(config: RunConfig, data: ImageDataset, to path: String, header: RecordHeader, checks: [CheckRow],
                        temporaryFileCreated: (String) -> Void, amending amend: ((String) throws -> Void)? = nil,
                        _ body: (RecordWriter) throws -> Void) throws {
        let description = DataDescription(dataset: config.dataset, data: data)
        let file = try RecordFile(target: path)
        temporaryFileCreated(file.temporaryPath)
        do {
            try checkRoom(for: config, data: description, file: file, envelope: amend != nil)
            let writer = try RecordWriter(file: file, config: config, data: description, header: header, checks: checks)
            try body(writer)
            try writer.finish(amending: amend)
        } catch {
            throw file.abandon(after: error)
        }
    }

    /// Refuses a run whose record cannot fit before training it: libhdf5 buffers what it writes, so a
    /// full disk would otherwise show only when the finished run is closed. The bound is the record's
    /// uncompressed size (every dataset the schema expects, plus room for metadata); compression only
    /// makes the file smaller.
    static func checkRoom(for config: RunConfig, data: DataDescription, file: RecordFile, envelope: Bool) throws {
        let plan = RunPlan(config: config, trainCount: DataOrder.trainCount(of: data.trainSamples))
        let layout = LeNet5<Float>.layout(normalized: config.norm, batchNorm: config.batchNorm)
        let tree = ExpectedTree(config: config, plan: plan, layout: layout, data: data, envelope: envelope)
        let bytes = tree.datasets.values.reduce(1 << 20) { total, spec in
            let size = [.float64, .int64].contains(spec.kind) ? 8 : spec.kind == .uint8 ? 1 : 4
            return total + spec.shape.reduce(size, *) + 4096
        }
        try file.checkRoom(bytes: bytes)
    }

    /// The configuration that re-records `golden` (`repro record --like`): the golden's own — profile, windows,
    /// checkpoints, evaluation limit, kernels, seed, sizes, data set — with only the thread count of a
    /// portable run open to change (no bit and no byte of a portable record depends on it).
    public static func configuration(like golden: Record, threads: Int? = nil) throws -> RunConfig {
        var config = golden.config
        if let threads, threads != config.threads {
            guard config.kernels == .portable else {
                throw ReplayError("\(golden.path): a blas golden's bits depend on its thread count (\(config.threads)): it is re-recorded with it")
            }
            config.threads = threads
        }
        return config
    }

    /// Continues `source` from its checkpoint at `step` (default: its last checkpoint within the run) with
    /// `config` — the source's configuration, or the same run made longer (more epochs or steps; another
    /// thread count) — and writes the whole run to `path`: the steps up to the checkpoint replayed from the
    /// source, the rest trained. With the source's configuration the file is byte-identical to the source.
    public static func resume(_ source: Record, config: RunConfig, from step: Int?, data: ImageDataset, to path: String,
                              header: RecordHeader, checks: [CheckRow], observers: [TrainingObserver] = [],
                              temporaryFileCreated: (String) -> Void = { _ in }, amending amend: ((String) throws -> Void)? = nil) throws {
        var comparable = source.config
        (comparable.epochs, comparable.maxSteps, comparable.threads) = (config.epochs, config.maxSteps, config.threads)
        let changed = comparable.differences(from: config)
        guard changed.isEmpty else {
            throw ReplayError("\(source.path): a resumed run may change only --epochs, --max-steps and --threads, not \(changed.joined(separator: "; "))")
        }
        for (mine, recorded) in zip(data.fingerprints, source.data.fingerprints) where mine.sha256 != recorded.sha256 {
            throw ReplayError("\(mine.file): not the data \(source.path) was recorded on (sha256 differs); pass --data-dir")
        }
        let plan = RunPlan(config: config, trainCount: source.plan.trainCount)
        let start = step ?? source.plan.checkpointSteps.last { $0 <= plan.totalSteps } ?? 0
        guard source.plan.isCheckpoint(start), start <= plan.totalSteps else {
            throw ReplayError("\(source.path): no checkpoint at step \(start) to resume from within the run's \(plan.totalSteps) steps "
                              + "(checkpoints: \(source.plan.checkpointSteps.map(String.init).joined(separator: ", ")))")
        }
        let replay = RecordReplay(source)
        let point = try replay.resumePoint(at: start)
        try writing(config: config, data: data, to: path, header: header, checks: checks, temporaryFileCreated: temporaryFileCreated,
                    amending: amend) { writer in
            try replay.replay(config: config, data: data, through: start, into: [writer])
            try Trainer(config: config, data: data).run(observers: observers + [writer], from: point)
        }
    }
}
