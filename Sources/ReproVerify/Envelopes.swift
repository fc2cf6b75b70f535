import Foundation
import ReproData
import ReproKernels
import ReproNN
import ReproRecording
import ReproTraining

/// Measures a record's round-off envelope (`Envelope`): every verification window re-run `replicas` times
/// from its start state under Monte Carlo arithmetic (`RoundingReplica`, replica r of the run's own
/// seed), each compared value's largest distance from the record's, floored at the value's quantum.
/// The replicas are deterministic and thread-independent: the same record gives the same envelope on
/// any machine with the same kernels.
public enum EnvelopeMeasurement {
    /// The replicas' seed: the run's, mixed with a constant so that it is not the run's own stream.
    public static func replicaSeed(_ runSeed: UInt64) -> UInt64 { runSeed ^ 0x5EED_0E4E_1097_E000 }

    /// What `Recording.record(amending:)` runs on the finished record's temporary file: measures its
    /// envelope (the record is read and closed again first), then adds it to the file.
    /// `live`: the runner that started replicas while the record was being made (`LiveReplicas`); the
    /// windows it did not start run here.
    public static func amending(data: ImageDataset, replicas: Int, threads: Int?, live: LiveReplicas? = nil,
                                started: @escaping (Int) -> Void = { _ in },
                                progress: @escaping (Int, Int) -> Void = { _, _ in }) -> (String) throws -> Void {
        { path in
            let (envelope, plan, layout) = try { () throws -> (Envelope, RunPlan, ModelLayout) in
                let record = try Record(path: path)
                started(record.plan.windows.count)
                let ready = live?.finish(threads: threads ?? 1) ?? [:]
                return (try measure(record, data: data, replicas: replicas, threads: threads, windows: nil, ready: ready, progress: progress),
                        record.plan, record.layout)
            }()
            try envelope.append(to: path, plan: plan, layout: layout)
        }
    }

    /// `progress(window, of)` after each window.
    /// `windows`: only these (by index; the others' values get no envelope) — for tests.
    public static func measure(_ record: Record, data: ImageDataset, replicas: Int, threads: Int? = nil, windows only: Set<Int>? = nil,
                               progress: (Int, Int) -> Void = { _, _ in }) throws -> Envelope {
        try measure(record, data: data, replicas: replicas, threads: threads, windows: only, ready: [:], progress: progress)
    }

    /// `ready`: windows' replicas already run (by window index, in replica order: `LiveReplicas`).
    static func measure(_ record: Record, data: ImageDataset, replicas: Int, threads: Int?, windows only: Set<Int>?,
                        ready: [Int: [Result<CapturedRun, ReplayError>]], progress: (Int, Int) -> Void) throws -> Envelope {
        var config = record.config
        if let threads { config.threads = threads }
        let covered = Envelope.datasets(plan: record.plan, layout: record.layout, schema: record.header.schemaVersion)
        // The largest distance of any replica per element; −1 where no window reaches.
        var distance = [String: [Double]]()
        for (path, shape) in covered { distance[path] = [Double](repeating: -1, count: shape.reduce(1, *)) }
        let replay = RecordReplay(record)
        let windows = record.plan.windows
        for window in windows where only?.contains(window.index) ?? true {
            let start = window.start == 0 ? nil : try replay.resumePoint(at: window.start)
            var finalStates = [[TensorValues]]()
            // The record's values of the window, read (and decompressed) once for all its replicas.
            var stored = [String: [Double]]()
            let handle = { (capture: CapturedRun) throws in
                for state in capture.states where state.step == window.end {
                    if case let .tensors(model, _) = state.content { finalStates.append(model) }
                }
                for piece in capture.pieces(of: record) where distance[piece.path] != nil {
                    let key = "\(piece.path)#\(piece.rows)"
                    if stored[key] == nil { stored[key] = try record.values(piece.path, rows: piece.rows) }
                    let golden = stored[key]!
                    distance[piece.path]!.withUnsafeMutableBufferPointer { d in
                        for i in golden.indices {
                            let delta = abs(piece.values[i] - golden[i])
                            d[piece.offset + i] = max(d[piece.offset + i], delta.isNaN ? .infinity : delta)
                        }
                    }
                }
            }
            if let done = ready[window.index], done.count == replicas {
                for result in done { try handle(result.mapError { ReplayError("\(record.path): \($0)") }.get()) }
            } else {
                try forEachReplica(config: config, data: data, from: start, through: window.end, replicas: replicas,
                                   record: record, window: window, handle)
            }
            let states = try [start ?? replay.resumePoint(at: 0)].map(\.model) + finalStates
            try floorUpdates(in: window, distance: &distance[RecordSchema.probeLargest]!, points: record.layout.probePoints, record: record,
                             states: states)
            if distance[RecordSchema.probeNorm] != nil {
                try floorUpdates(in: window, distance: &distance[RecordSchema.probeNorm]!, points: record.layout.normPoints, record: record,
                                 states: states)
            }
            progress(window.index + 1, windows.count)
        }
        var codes = [String: [UInt8]]()
        for (path, _) in covered {
            var d = distance[path]!
            guard d.contains(where: { $0 >= 0 }) else { codes[path] = [UInt8](repeating: 0, count: d.count); continue }
            // A checkpoint tensor's envelope is the largest distance of any of its elements: with K samples
            // each, per-element maxima leave the largest |Δ| ÷ envelope of a 48,000-element tensor
            // heavy-tailed (docs/verifying.md); the step series, which end at the same step, localize.
            if path.hasPrefix(RecordSchema.checkpoints + "/") { d = [Double](repeating: d.max()!, count: d.count) }
            let values = try record.values(path).values
            let quantum = Self.quantum(of: path, record: record)
            codes[path] = d.indices.map { i in d[i] < 0 ? 0 : Envelope.code(covering: max(d[i], quantum(values[i], i))) }
        }
        return Envelope(replicas: replicas, codes: codes)
    }

    /// Runs a window's replicas and hands their captures to `body` in replica order. Portable kernels give the
    /// same bits for any thread count, so their replicas run side by side, one thread each (a replica's
    /// step is too small to keep two threads busy: a short golden's envelope measured 1.4× sooner on 2 cores
    /// than with one replica on 2 threads); blas replicas run one after another with the record's threads,
    /// which their bits depend on.
    static func forEachReplica(config: RunConfig, data: ImageDataset, from start: ResumePoint?, through end: Int, replicas: Int,
                               record: Record, window: TrainingWindow, _ body: (CapturedRun) throws -> Void) throws {
        let sideBySide = config.kernels == .portable ? max(1, min(config.threads, replicas)) : 1
        var oneThread = config
        if sideBySide > 1 { oneThread.threads = 1 }
        let (replicaConfig, pool) = (oneThread, ReplicaPool())
        for r in 0..<replicas {
            pool.submit(key: r) { replica(r, config: replicaConfig, data: data, from: start, window: window) }
        }
        let results = pool.finish(addingWorkers: sideBySide)
        for r in 0..<replicas { try body(results[r]!.mapError { ReplayError("\(record.path): \($0)") }.get()) }
    }

    /// Replica `r` of a window from its start state (nil: the run's initialization).
    @Sendable
    static func replica(_ r: Int, config: RunConfig, data: ImageDataset, from start: ResumePoint?, window: TrainingWindow)
        -> Result<CapturedRun, ReplayError> {
        let capture = CapturedRun()
        var trainer = Trainer(config: config, data: data)
        trainer.hooks = RoundingReplica(seed: replicaSeed(config.seed), replica: UInt32(r))
        do { try trainer.run(observers: [capture], from: start, through: window.end) }
        catch { return .failure(ReplayError("replica \(r) of \(window) failed: \(error)")) }
        return .success(capture)
    }

    /// An update's largest |new − old| is a multiple of its parameter's ULP, and its replicas may all
    /// land on the golden's multiple (a bias in front of BatchNorm, whose gradient is round-off): the
    /// window's update probes (their largest magnitudes, and their norms: `points` are the dataset's
    /// columns) get at least one ULP of the parameter's largest magnitude at the window's start or end.
    static func floorUpdates(in window: TrainingWindow, distance: inout [Double], points: [TracePoint], record: Record,
                             states: [[TensorValues]]) throws {
        let width = points.count
        var quantum = [String: Double]()
        for state in states {
            for t in state {
                let largest = t.values.reduce(Float(0)) { max($0, abs($1)) }
                quantum[t.name] = max(quantum[t.name] ?? 0, Double(largest.ulp))
            }
        }
        for step in (window.start + 1)..<(window.end + 1) where record.plan.isKept(step, profile: record.config.profile) {
            for (j, point) in points.enumerated() {
                guard case .update(let name) = point.quantity, let q = quantum[name] else { continue }
                let i = (step - 1) * width + j
                if distance[i] >= 0 { distance[i] = max(distance[i], q) }
            }
        }
    }

    /// The smallest difference a value of the dataset can show: one sample of an accuracy (in percent of
    /// the samples behind it), else one float32 ULP of the value (the records' tensors and losses are
    /// float32; an update's largest |Δ| is a difference of float32 values).
    static func quantum(of path: String, record: Record) -> (Double, Int) -> Double {
        let plan = record.plan, config = record.config
        let sizes = Trainer.evaluationSizes(config: config, train: plan.trainCount, validation: record.data.trainSamples - plan.trainCount,
                                            test: record.data.testSamples)
        let samples: ((Int) -> Int)?
        switch path {
        case RecordSchema.stepAccuracy: samples = { _ in config.batchSize }
        case RecordSchema.epochSeries(.trainAccuracy): samples = { _ in plan.stepsPerEpoch * config.batchSize }
        case RecordSchema.epochSeries(.validationAccuracy): samples = { _ in sizes[1] }
        case _ where path.hasPrefix(RecordSchema.evaluation + "/") && path.hasSuffix("/accuracy"): samples = { sizes[$0] }
        default: samples = nil
        }
        if let samples { return { _, i in 100 / Double(max(samples(i), 1)) } }
        return { v, _ in Double(Float(v).ulp) }
    }
}

/// Runs a portable record's envelope replicas while the record is being made: each window's replicas are
/// queued as soon as the recording run passes the window's start state (window 0 at once), and run on
/// the cores the recording run leaves idle (`workers`: a one-thread run on two cores leaves one). At the
/// end (`finish`) the rest run on every core. A replica's bits do not depend on when or on which thread
/// it runs, nor on whether its start state came from the live run or from the record (the same values):
/// the envelope is the same as measuring after the run, only sooner.
public final class LiveReplicas: TrainingObserver, @unchecked Sendable {
    let config: RunConfig
    let data: ImageDataset
    let replicas: Int
    let plan: RunPlan
    let pool = ReplicaPool()
    /// The running sums of the epoch in progress (a `ResumePoint`'s, as `RecordReplay` rebuilds them).
    var epochLossSum = 0.0, epochCorrect = 0, epochSamples = 0
    /// The windows whose replicas were queued.
    var queued = [Int]()

    /// `workers`: replicas that may run beside the recording run (0 queues them for `finish`).
    public init(config: RunConfig, data: ImageDataset, replicas: Int, trainCount: Int, workers: Int) {
        var replicaConfig = config
        replicaConfig.threads = 1
        self.config = replicaConfig
        self.data = data
        self.replicas = replicas
        self.plan = RunPlan(config: config, trainCount: trainCount)
        pool.addWorkers(workers)
    }

    public var wantsProbes: Bool { false }
    public func runStarted(plan: RunPlan, split: DataSplit, layout: ModelLayout) throws { queue(at: 0, from: nil) }
    public func runResumed(plan: RunPlan, after step: Int) throws {}
    public func forwardProbed(_ probes: [Probe]) throws {}
    public func evaluated(_ phase: EvaluationPhase, train: Metrics, validation: Metrics, test: Metrics) throws {}
    public func epochStarted(_ epoch: Int, order: [Int32]) throws {}
    public func epochFinished(_ epoch: Int, train: Metrics, validation: Metrics) throws {}

    public func stepFinished(_ outcome: StepOutcome) throws {
        if plan.cursor(afterStep: outcome.step - 1).batchInEpoch == 0 { (epochLossSum, epochCorrect, epochSamples) = (0, 0, 0) }
        epochLossSum += Double(outcome.loss) * Double(outcome.batchSize)
        epochCorrect += outcome.correct
        epochSamples += outcome.batchSize
    }

    public func stateCaptured(_ state: StateCapture) throws {
        guard state.step > 0, case let .tensors(model, momentum) = state.content else { return }
        let atEpochEnd = plan.cursor(afterStep: state.step).batchInEpoch == 0
        queue(at: state.step, from: ResumePoint(step: state.step, model: model, momentumBuffers: momentum,
                                                epochLossSum: atEpochEnd ? 0 : epochLossSum, epochCorrect: atEpochEnd ? 0 : epochCorrect,
                                                epochSamples: atEpochEnd ? 0 : epochSamples))
    }

    func queue(at step: Int, from start: ResumePoint?) {
        guard let window = plan.windows.first(where: { $0.start == step && $0.end > step }), !queued.contains(window.index) else { return }
        queued.append(window.index)
        let (config, data) = (config, data)
        for r in 0..<replicas {
            pool.submit(key: window.index * replicas + r) { EnvelopeMeasurement.replica(r, config: config, data: data, from: start, window: window) }
        }
    }

    /// Runs what is left on `threads` threads in all and returns every queued window's replicas, in order.
    func finish(threads: Int) -> [Int: [Result<CapturedRun, ReplayError>]] {
        let results = pool.finish(addingWorkers: max(1, threads - pool.workerCount))
        var out = [Int: [Result<CapturedRun, ReplayError>]]()
        for w in queued { out[w] = (0..<replicas).map { results[w * replicas + $0]! } }
        return out
    }
}

/// A queue of replica runs and the threads that take them, first in, first out.
final class ReplicaPool: @unchecked Sendable {
    typealias Job = @Sendable () -> Result<CapturedRun, ReplayError>
    private let condition = NSCondition()
    private var jobs = [(key: Int, job: Job)]()
    private var results = [Int: Result<CapturedRun, ReplayError>]()
    private var workers = 0
    private var closed = false

    var workerCount: Int { condition.lock(); defer { condition.unlock() }; return workers }

    func submit(key: Int, _ job: @escaping Job) {
        condition.lock()
        jobs.append((key, job))
        condition.signal()
        condition.unlock()
    }

    func addWorkers(_ count: Int) {
        guard count > 0 else { return }
        condition.lock()
        workers += count
        condition.unlock()
        for _ in 0..<count { Thread.detachNewThread { self.work() } }
    }

    private func work() {
        condition.lock()
        while true {
            if !jobs.isEmpty {
                let (key, job) = jobs.removeFirst()
                condition.unlock()
                let result = job()
                condition.lock()
                results[key] = result
            } else if closed {
                workers -= 1
                condition.broadcast()
                condition.unlock()
                return
            } else {
                condition.wait()
            }
        }
    }

    /// Takes no more jobs, adds `count` workers, and returns every job's result once all have run.
    func finish(addingWorkers count: Int) -> [Int: Result<CapturedRun, ReplayError>] {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
        addWorkers(count)
        condition.lock()
        while workers > 0 { condition.wait() }
        defer { condition.unlock() }
        return results
    }
}
