import ReproNN
import ReproRecording
import ReproStorage
import ReproTraining

/// Which windows of a golden `repro verify` re-runs (`TrainingWindow`: from a stored checkpoint through a
/// later step, everything that happens in between compared bit for bit with what the golden stores).
public enum WindowSelection: Sendable, Equatable {
    /// Every window: for a golden whose windows reach from checkpoint to checkpoint, every stored value.
    case all
    /// A deterministic choice of this many (`choose`).
    case count(Int)
    /// One end-to-end re-run into a temporary record, compared dataset by dataset.
    case full

    /// `count` of the `windows`, chosen the same way every time: the first window (initialization, the
    /// evaluation before training), the first that crosses an epoch boundary inside it (a new shuffle, the
    /// per-epoch metrics and the validation evaluation), the last (the evaluation after training), then
    /// evenly spaced others.
    public static func choose(_ count: Int, of windows: [TrainingWindow], plan: RunPlan) -> [TrainingWindow] {
        guard count < windows.count else { return windows }
        var chosen = [0]
        let crossing = windows.first { w in
            (0..<max(plan.epochsStarted, 1)).contains { e in let end = plan.endOfEpoch(e); return end > w.start && end < w.end }
        } ?? windows.first { w in (0..<max(plan.epochsStarted, 1)).contains { e in plan.endOfEpoch(e) == w.end } }
        for candidate in [crossing?.index, windows.count - 1].compactMap({ $0 }) where chosen.count < count && !chosen.contains(candidate) {
            chosen.append(candidate)
        }
        var k = 1
        while chosen.count < count {
            // Evenly spaced: the window nearest to each k/(count) of the way, skipping those already chosen.
            let target = Int((Double(k) * Double(windows.count - 1) / Double(count)).rounded())
            if let free = (0..<windows.count).map({ (target + $0) % windows.count }).first(where: { !chosen.contains($0) }) { chosen.append(free) }
            k += 1
        }
        return chosen.sorted().map { windows[$0] }
    }
}

/// Every N-th window from the I-th (1-based): `--shard I/N`. The shards 1/N … N/N together verify each
/// chosen window exactly once.
public struct Shard: Sendable, Equatable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, n <= 10_000, i >= 1, i <= n else { return nil }
        index = i
        count = n
    }

    public func take(_ windows: [TrainingWindow]) -> [TrainingWindow] {
        windows.enumerated().filter { $0.offset % count == index - 1 }.map(\.element)
    }

    public var description: String { "\(index)/\(count)" }
}

/// Everything a re-run (of a window, or of a whole run that stopped early) produced, kept to compare with
/// the golden: only what the golden stores is compared.
final class CapturedRun: TrainingObserver {
    var split: DataSplit?
    var evaluations: [(phase: EvaluationPhase, sets: [Metrics])] = []
    var orders: [(epoch: Int, order: [Int32])] = []
    var steps: [StepOutcome] = []
    var states: [StateCapture] = []
    var epochs: [(epoch: Int, train: Metrics, validation: Metrics)] = []
    var forwardProbes: [Probe]?

    var wantsProbes: Bool { true }
    func forwardProbed(_ probes: [Probe]) throws { forwardProbes = probes }

    func runStarted(plan: RunPlan, split: DataSplit, layout: ModelLayout) throws { self.split = split }
    func evaluated(_ phase: EvaluationPhase, train: Metrics, validation: Metrics, test: Metrics) throws {
        evaluations.append((phase, [train, validation, test]))
    }
    func epochStarted(_ epoch: Int, order: [Int32]) throws { orders.append((epoch, order)) }
    func stepFinished(_ outcome: StepOutcome) throws { steps.append(outcome) }
    func stateCaptured(_ state: StateCapture) throws { states.append(state) }
    func epochFinished(_ epoch: Int, train: Metrics, validation: Metrics) throws { epochs.append((epoch, train, validation)) }

    /// Compares everything captured with the golden's value at the same place.
    func compare(with golden: Record, mode: ComparisonMode, factor: Double) throws(RecordError) -> [SeriesResult] {
        let locator = Locator(record: golden)
        return try pieces(of: golden).map { piece throws(RecordError) in
            let stored = try golden.values(piece.path, rows: piece.rows)
            var paired: (golden: [Double], candidate: [Double])?
            if let m = piece.magnitudes { paired = (try golden.values(m.path, rows: piece.rows), m.candidate) }
            let judge = EnvelopeJudge(hasEnvelope: golden.envelopeReplicas != nil,
                                      codes: try golden.envelopeCodes(piece.path, rows: piece.rows), factor: factor)
            return Comparison.compareValues(piece.path, stored, piece.values, kind: piece.kind, mode: mode, locator: locator,
                                            offset: piece.offset, magnitudes: paired, envelope: judge)
        }
    }

    /// One part of what the re-run produced, at its place in a golden's dataset: rows `rows` of `path`
    /// (flat index `offset` onwards).
    struct Piece {
        let path: String
        let kind: HDF5Reader.ElementKind
        let rows: Range<Int>
        let offset: Int
        let values: [Double]
        /// For a probe checksum: the same points' largest magnitudes (the candidate's) and their dataset.
        let magnitudes: (path: String, candidate: [Double])?
    }

    /// Everything captured that the golden stores, as pieces of its datasets.
    func pieces(of golden: Record) -> [Piece] {
        let plan = golden.plan
        var pieces = [Piece]()
        func add(_ path: String, rows: Range<Int>, _ candidate: [Double], magnitudes: (path: String, candidate: [Double])? = nil) {
            guard let kind = golden.kind(of: path), !rows.isEmpty else { return }
            let rowElements = golden.shape(of: path).dropFirst().reduce(1, *)
            pieces.append(Piece(path: path, kind: kind, rows: rows, offset: rows.lowerBound * rowElements, values: candidate, magnitudes: magnitudes))
        }
        if let split {
            add(RecordSchema.trainIndices, rows: 0..<split.train.count, split.train.map(Double.init))
            add(RecordSchema.validationIndices, rows: 0..<split.validation.count, split.validation.map(Double.init))
        }
        for (epoch, order) in orders {
            switch golden.config.profile {
            case .complete: add(RecordSchema.epochOrder, rows: epoch..<(epoch + 1), order.map(Double.init))
            case .golden: add(RecordSchema.epochOrderDigests, rows: epoch..<(epoch + 1), Digest.of(order).map(Double.init))
            }
        }
        if let first = steps.first?.step {
            // Each step series over the runs of consecutive steps it keeps (the golden profile keeps some only in windows).
            let table = golden.stepSeries
            for series in table {
                let kept = steps.map(\.step).filter { series.isKept($0, plan: plan, profile: golden.config.profile) }
                for run in Self.contiguousRuns(kept) {
                    let values = run.flatMap { series.values(of: steps[$0 - first]) }
                    let magnitudes = series.magnitudes.flatMap { path in table.first { $0.path == path } }
                        .map { m in (m.path, run.flatMap { m.values(of: steps[$0 - first]) }) }
                    add(series.path, rows: (run.lowerBound - 1)..<run.upperBound, values, magnitudes: magnitudes)
                }
            }
        }
        for state in states {
            guard case let .tensors(model, momentum) = state.content else { continue }
            if plan.isCheckpoint(state.step) {
                for t in model { add(RecordSchema.checkpointModel(step: state.step) + "/" + t.name, rows: 0..<t.shape[0], t.values.map(Double.init)) }
                for t in momentum {
                    add(RecordSchema.checkpointMomentum(step: state.step) + "/" + t.name, rows: 0..<t.shape[0], t.values.map(Double.init))
                }
            } else if plan.windowEndsBetweenCheckpoints.contains(state.step) {
                let group = RecordSchema.stateDigest(step: state.step)
                add(group + "/model", rows: 0..<model.count, model.flatMap { Digest.of($0.values) }.map(Double.init))
                add(group + "/momentum_buffer", rows: 0..<momentum.count, momentum.flatMap { Digest.of($0.values) }.map(Double.init))
            }
        }
        for (epoch, train, validation) in epochs {
            let values = [train.loss, train.accuracy, validation.loss, validation.accuracy]
            for (series, value) in zip(RecordSchema.EpochSeries.allCases, values) {
                add(RecordSchema.epochSeries(series), rows: epoch..<(epoch + 1), [value])
            }
        }
        if let forwardProbes {
            add(RecordSchema.forwardProbeChecksums, rows: 0..<forwardProbes.count, forwardProbes.map { Double($0.checksum) },
                magnitudes: (RecordSchema.forwardProbeLargest, forwardProbes.map(\.largest)))
            add(RecordSchema.forwardProbeLargest, rows: 0..<forwardProbes.count, forwardProbes.map(\.largest))
        }
        for (phase, sets) in evaluations {
            add(RecordSchema.evaluation(phase.rawValue, .loss), rows: 0..<3, sets.map(\.loss))
            add(RecordSchema.evaluation(phase.rawValue, .accuracy), rows: 0..<3, sets.map(\.accuracy))
            add(RecordSchema.evaluation(phase.rawValue, .samples), rows: 0..<3, sets.map { Double($0.samples) })
        }
        return pieces
    }

    /// Ascending steps grouped into runs of consecutive steps, as closed ranges.
    static func contiguousRuns(_ steps: [Int]) -> [ClosedRange<Int>] {
        var runs = [ClosedRange<Int>]()
        for s in steps {
            if let last = runs.last, last.upperBound + 1 == s { runs[runs.count - 1] = last.lowerBound...s } else { runs.append(s...s) }
        }
        return runs
    }
}

/// Per-dataset results of several comparisons merged into one list, in the order first seen.
func mergedByPath(_ results: [SeriesResult]) -> [SeriesResult] {
    var order = [String](), merged = [String: SeriesResult]()
    for r in results {
        if var existing = merged[r.path] { existing.merge(r); merged[r.path] = existing } else { order.append(r.path); merged[r.path] = r }
    }
    return order.map { merged[$0]! }
}
