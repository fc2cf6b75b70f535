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
    public static func amending(data: ImageDataset, replicas: Int, threads: Int?,
                                started: @escaping (Int) -> Void = { _ in },
                                progress: @escaping (Int, Int) -> Void = { _, _ in }) -> (String) throws -> Void {
        { path in
            let (envelope, plan, layout) = try { () throws -> (Envelope, RunPlan, ModelLayout) in
                let record = try Record(path: path)
                started(record.plan.windows.count)
                return (try measure(record, data: data, replicas: replicas, threads: threads, progress: progress), record.plan, record.layout)
            }()
            try envelope.append(to: path, plan: plan, layout: layout)
        }
    }

    /// `progress(window, of)` after each window.
    /// `windows`: only these (by index; the others' values get no envelope) — for tests.
    public static func measure(_ record: Record, data: ImageDataset, replicas: Int, threads: Int? = nil, windows only: Set<Int>? = nil,
                               progress: (Int, Int) -> Void = { _, _ in }) throws -> Envelope {
        var config = record.config
        if let threads { config.threads = threads }
        let covered = Envelope.datasets(plan: record.plan, layout: record.layout)
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
            for r in 0..<replicas {
                let capture = CapturedRun()
                var trainer = Trainer(config: config, data: data)
                trainer.hooks = RoundingReplica(seed: replicaSeed(config.seed), replica: UInt32(r))
                do { try trainer.run(observers: [capture], from: start, through: window.end) }
                catch { throw ReplayError("\(record.path): replica \(r) of \(window) failed: \(error)") }
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
            try floorUpdates(in: window, distance: &distance[RecordSchema.probeLargest]!, record: record,
                             states: [start ?? replay.resumePoint(at: 0)].map(\.model) + finalStates)
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

    /// An update's largest |new − old| is a multiple of its parameter's ULP, and its replicas may all
    /// land on the golden's multiple (a bias in front of BatchNorm, whose gradient is round-off): the
    /// window's update probes get at least one ULP of the parameter's largest magnitude at the window's
    /// start or end.
    static func floorUpdates(in window: TrainingWindow, distance: inout [Double], record: Record, states: [[TensorValues]]) throws {
        let points = record.layout.probePoints, width = points.count
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
