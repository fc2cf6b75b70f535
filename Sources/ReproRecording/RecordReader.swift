import Foundation
import ReproData
import ReproNN
import ReproStorage
import ReproTraining

/// A record that cannot be used (missing, damaged, not a record, or not what the schema allows): bad
/// input, exit 2. One line: the file, then the place in it and what is wrong.
public struct RecordError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ path: String, _ problem: String) { description = "\(path): \(problem)" }
}

/// A record parsed against the schema. Opening one checks, in order: the whole-file checksum (before
/// libhdf5 sees a byte), the root, `/config` and the other attribute parts by their codecs, then every
/// object in the file against the tree the configuration implies — no object missing, none extra, each
/// dataset with its exact type and shape (checked before anything is allocated) — and finally the stored
/// values: ranges, permutations, cross-field consistency. Anything else is refused with one line.
public final class Record {
    public let path: String
    let reader: HDF5Reader
    public let header: RecordHeader
    public let config: RunConfig
    public let plan: RunPlan
    public let layout: ModelLayout
    public let data: DataDescription
    public let environment: EnvironmentFacts
    public let policy: StoredPolicy
    /// Every dataset but the envelope's, in the order the file stores them (name order, depth first).
    public let datasets: [String]
    /// The record's per-step series (as its schema version has them).
    public var stepSeries: [StepSeries] { StepSeries.table(for: layout, schema: header.schemaVersion) }
    /// Replicas per window of the record's round-off envelope; nil: the record has none.
    public let envelopeReplicas: Int?
    let expected: [String: DatasetSpec]

    struct DatasetSpec {
        var kind: HDF5Reader.ElementKind
        var shape: [Int]
    }

    /// The datasets verify compares: all but the record-time BatchNorm check table (verify re-runs the checks).
    public var comparedDatasets: [String] { datasets.filter { !$0.hasPrefix(RecordSchema.batchNormChecks + "/") } }

    public init(path: String) throws(RecordError) {
        self.path = path
        try Self.checkBytes(path)
        do {
            let reader = try HDF5Reader(opening: path)
            func attributes(_ object: String) throws -> [(name: String, value: AttributeValue)] {
                try reader.attributes(on: object, limit: 32, maximumStringBytes: RecordSchema.maximumStringBytes)
            }
            let header = try RecordHeader(parsing: attributes("/"))
            let rootChildren = try reader.children(of: "/", expected: 10)
            for part in [RecordSchema.config, RecordSchema.data, RecordSchema.environment, RecordSchema.tolerance]
            where !rootChildren.contains(where: { "/" + $0.name == part && $0.kind == .group }) {
                throw SchemaViolation(part, found: "missing", expected: "a group")
            }
            let config = try RunConfig(parsing: attributes(RecordSchema.config))
            let data = try DataDescription(parsing: attributes(RecordSchema.data), config: config)
            let environment = try EnvironmentFacts(parsing: attributes(RecordSchema.environment), kernels: config.kernels)
            let policy = try StoredPolicy(parsing: attributes(RecordSchema.tolerance), kernels: config.kernels)
            let plan = RunPlan(config: config, trainCount: DataOrder.trainCount(of: data.trainSamples))
            let layout = LeNet5<Float>.layout(normalized: config.norm, batchNorm: config.batchNorm)

            let hasEnvelope = rootChildren.contains { "/" + $0.name == Envelope.group }
            if hasEnvelope && header.schemaVersion < 5 {
                throw SchemaViolation(Envelope.group, found: "a group in a schema \(header.schemaVersion) record", expected: "no envelope before schema 5")
            }
            var tree = ExpectedTree(config: config, plan: plan, layout: layout, data: data, envelope: hasEnvelope, schema: header.schemaVersion)
            var found = [String]()
            try Self.walk("/", reader: reader, tree: &tree, found: &found)
            if let missing = tree.firstMissing(seen: Set(found)) {
                throw SchemaViolation(missing.path, found: "missing", expected: missing.what)
            }
            (self.reader, self.header, self.config, self.data, self.environment, self.policy, self.plan, self.layout) =
                (reader, header, config, data, environment, policy, plan, layout)
            datasets = found.filter { tree.datasets[$0] != nil && !$0.hasPrefix(Envelope.group + "/") }
            envelopeReplicas = tree.envelopeReplicas
            expected = tree.datasets
            try checkValues()
        } catch let error as RecordError {
            throw error
        } catch let violation as SchemaViolation {
            throw RecordError(path, violation.description)
        } catch let error as StorageError {
            throw RecordError(path, error.problem)
        } catch {
            throw RecordError(path, "\(error)")
        }
    }

    /// Visits `group` and everything below it in name order: each member must be expected with its kind,
    /// each group's attributes must parse, each dataset must have its type, shape and no attributes.
    private static func walk(_ group: String, reader: HDF5Reader, tree: inout ExpectedTree, found: inout [String]) throws {
        let groupAttributes = try reader.attributes(
            on: group, limit: 32,
            maximumStringBytes: group == RecordSchema.batchNormChecks ? RecordSchema.maximumCheckTableBytes
                : group == RecordSchema.probes ? RecordSchema.maximumProbePointsBytes : RecordSchema.maximumStringBytes)
        try tree.checkAttributes(of: group, groupAttributes)
        let children = try reader.children(of: group, expected: tree.childCount(of: group))
        for (name, kind) in children {
            let child = (group == "/" ? "" : group) + "/" + name
            if tree.groups.contains(child) {
                guard kind == .group else { throw SchemaViolation(child, found: "\(kind)", expected: "a group") }
                found.append(child)
                try walk(child, reader: reader, tree: &tree, found: &found)
            } else if let spec = tree.datasets[child] {
                guard kind == .dataset else { throw SchemaViolation(child, found: "\(kind)", expected: "a dataset") }
                let type = try reader.elementType(of: child)
                guard type.kind == spec.kind else {
                    throw SchemaViolation(child, found: "element type \(type.description)", expected: spec.kind.rawValue)
                }
                let shape = try reader.shape(of: child)
                guard shape == spec.shape else { throw SchemaViolation(child, found: "shape \(shape)", expected: "shape \(spec.shape)") }
                let count = try reader.attributeCount(on: child)
                guard count == 0 else { throw SchemaViolation(child, found: "\(count) attribute(s)", expected: "none on a dataset") }
                found.append(child)
            } else {
                throw SchemaViolation(child, found: "\(kind)", expected: "no such object (schema version \(tree.schema))")
            }
        }
    }

    /// The schema version a file states (its root's `schema_version`), when it is an intact record that
    /// states one: read before anything else is parsed, so a record of another version can be told apart.
    public static func statedSchemaVersion(_ path: String) -> Int32? {
        guard (try? checkBytes(path)) != nil, let reader = try? HDF5Reader(opening: path),
              let attributes = try? reader.attributes(on: "/", limit: 32, maximumStringBytes: RecordSchema.maximumStringBytes),
              case .int32(let version)? = attributes.first(where: { $0.name == "schema_version" })?.value else { return nil }
        return version
    }

    /// Checks made on the raw bytes, before libhdf5 opens anything.
    static func checkBytes(_ path: String) throws(RecordError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw RecordError(path, "no such file") }
        guard !isDirectory.boolValue else { throw RecordError(path, "is a directory, not a record") }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw RecordError(path, "cannot read the file") }
        let head = (try? handle.read(upToCount: 600)) ?? Data()
        try? handle.close()
        if head.isEmpty { throw RecordError(path, "empty file") }
        let text = String(decoding: head.prefix(200), as: UTF8.self)
        if text.hasPrefix("version https://git-lfs.github.com/spec/") {
            throw RecordError(path, "is a Git LFS pointer, not the record itself: fetch it with 'git lfs pull'")
        }
        if !text.hasPrefix(RecordFile.checksumPrefix) {
            if head.count >= 8, head.prefix(8) == Data([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]) {
                throw RecordError(path, "an HDF5 file without repro's checksum block: not a repro record")
            }
            throw RecordError(path, "not a repro record (no repro checksum at the start of the file)")
        }
        if let problem = RecordFile.checksumProblem(path) { throw RecordError(path, problem) }
    }

    /// A dataset's values as Double (float32 and integers convert exactly), with its stored kind.
    public func values(_ dataset: String) throws(RecordError) -> (values: [Double], kind: HDF5Reader.ElementKind) {
        guard let spec = expected[dataset] else { throw RecordError(path, "\(dataset): no such dataset") }
        return (try values(dataset, rows: 0..<spec.shape[0]), spec.kind)
    }

    public func shape(of dataset: String) -> [Int] { expected[dataset]?.shape ?? [] }

    /// Rows `rows` (first-axis slices) of a dataset, as Double, without reading the rest.
    public func values(_ dataset: String, rows: Range<Int>) throws(RecordError) -> [Double] {
        guard let spec = expected[dataset] else { throw RecordError(path, "\(dataset): no such dataset") }
        do {
            switch spec.kind {
            case .float32: return try reader.read(dataset, rows: rows, as: Float.self).map(Double.init)
            case .float64: return try reader.read(dataset, rows: rows, as: Double.self)
            case .int32: return try reader.read(dataset, rows: rows, as: Int32.self).map(Double.init)
            case .int64: return try reader.read(dataset, rows: rows, as: Int64.self).map(Double.init)
            case .uint8: return try reader.read(dataset, rows: rows, as: UInt8.self).map(Double.init)
            }
        } catch let error as StorageError {
            throw RecordError(path, error.problem)
        } catch {
            throw RecordError(path, "\(error)")
        }
    }

    public func kind(of dataset: String) -> HDF5Reader.ElementKind? { expected[dataset]?.kind }

    /// The envelope codes (`Envelope`) of rows `rows` of a compared dataset; nil when the record has no
    /// envelope or the dataset carries none.
    public func envelopeCodes(_ dataset: String, rows: Range<Int>) throws(RecordError) -> [UInt8]? {
        let path = Envelope.path(of: dataset)
        guard envelopeReplicas != nil, expected[path] != nil else { return nil }
        return try values(path, rows: rows).map { UInt8($0) }
    }

    // MARK: - Values

    /// The stored values against the ranges and relations the schema documents.
    private func checkValues() throws {
        try checkSplitAndOrders()
        try checkSteps()
        try checkEpochsAndEvaluations()
        try checkCheckTable()
        try checkCheckpoints()
    }

    /// The split: train and validation indices together are a permutation of the training file; each
    /// epoch's order is a permutation of the training indices (the golden profile keeps digests only).
    private func checkSplitAndOrders() throws {
        let nTrain = plan.trainCount, n = data.trainSamples
        let train = try reader.read(RecordSchema.trainIndices, as: Int32.self)
        let validation = try reader.read(RecordSchema.validationIndices, as: Int32.self)
        var seen = [Bool](repeating: false, count: n)
        for (dataset, indices) in [(RecordSchema.trainIndices, train), (RecordSchema.validationIndices, validation)] {
            for (i, v) in indices.enumerated() {
                guard v >= 0, Int(v) < n else { throw SchemaViolation("\(dataset)[\(i)]", found: "\(v)", expected: "an index in 0..<\(n)") }
                guard !seen[Int(v)] else {
                    throw SchemaViolation("\(dataset)[\(i)]", found: "index \(v) a second time", expected: "disjoint train and validation indices")
                }
                seen[Int(v)] = true
            }
        }
        let isTrain = train.reduce(into: [Bool](repeating: false, count: n)) { $0[Int($1)] = true }
        let order = config.profile == .complete ? try reader.read(RecordSchema.epochOrder, as: Int32.self) : []
        for epoch in 0..<(config.profile == .complete ? plan.epochsStarted : 0) {
            var used = [Bool](repeating: false, count: n)
            for j in 0..<nTrain {
                let v = order[epoch * nTrain + j]
                guard v >= 0, Int(v) < n, isTrain[Int(v)], !used[Int(v)] else {
                    throw SchemaViolation("\(RecordSchema.epochOrder)[\(epoch), \(j)]", found: "\(v)",
                                          expected: "each row a permutation of /data/split/train_indices")
                }
                used[Int(v)] = true
            }
        }
    }

    /// Per-step series, each by its own rule (`StepSeries`), and the probes of the first forward pass.
    private func checkSteps() throws {
        for series in StepSeries.table(for: layout, schema: header.schemaVersion) {
            try series.check(try values(series.path).values, plan: plan, profile: config.profile, batchSize: config.batchSize)
        }
        let forwardChecksums = try reader.read(RecordSchema.forwardProbeChecksums, as: Int64.self)
        for (i, v) in forwardChecksums.enumerated() {
            if let expected = StepSeries.checksumProblem(Double(v)) {
                throw SchemaViolation("\(RecordSchema.forwardProbeChecksums)[\(i)]", found: "\(v)", expected: expected)
            }
        }
        let forwardLargest = try reader.read(RecordSchema.forwardProbeLargest, as: Double.self)
        for (i, v) in forwardLargest.enumerated() {
            if let expected = StepSeries.largestProblem(v, point: layout.forwardProbePoints[i]) {
                throw SchemaViolation("\(RecordSchema.forwardProbeLargest)[\(i)]", found: "\(v)", expected: expected)
            }
        }
    }

    private func checkEpochsAndEvaluations() throws {
        let nTrain = plan.trainCount, n = data.trainSamples
        for series in RecordSchema.EpochSeries.allCases {
            let path = RecordSchema.epochSeries(series)
            try checkMetrics(path, try reader.read(path, as: Double.self), accuracy: series == .trainAccuracy || series == .validationAccuracy)
        }
        let sizes = Trainer.evaluationSizes(config: config, train: nTrain, validation: n - nTrain, test: data.testSamples)
        for phase in EvaluationPhase.allCases {
            try checkMetrics(RecordSchema.evaluation(phase.rawValue, .loss), try reader.read(RecordSchema.evaluation(phase.rawValue, .loss), as: Double.self), accuracy: false)
            try checkMetrics(RecordSchema.evaluation(phase.rawValue, .accuracy), try reader.read(RecordSchema.evaluation(phase.rawValue, .accuracy), as: Double.self), accuracy: true)
            let samplesPath = RecordSchema.evaluation(phase.rawValue, .samples)
            let samples = try reader.read(samplesPath, as: Int64.self).map(Int.init)
            guard samples == sizes else {
                throw SchemaViolation(samplesPath, found: "\(samples)", expected: "\(sizes) (train in full batches, validation, test, within the evaluation limit)")
            }
        }
    }

    /// The BatchNorm check table: errors ≥ 0, bounds finite or −1 (an information row), verdicts 0 or 1.
    private func checkCheckTable() throws {
        let g = RecordSchema.batchNormChecks
        if let bad = try reader.read(g + "/worst_error", as: Double.self).firstIndex(where: { $0 < 0 }) {
            throw SchemaViolation("\(g)/worst_error[\(bad)]", found: "a negative error", expected: "errors ≥ 0")
        }
        if let bad = try reader.read(g + "/bound", as: Double.self).firstIndex(where: { !($0 == -1 || ($0 >= 0 && $0.isFinite)) }) {
            throw SchemaViolation("\(g)/bound[\(bad)]", found: "an invalid bound", expected: "−1 (information row) or a finite bound ≥ 0")
        }
        if let bad = try reader.read(g + "/passed", as: Int32.self).firstIndex(where: { $0 != 0 && $0 != 1 }) {
            throw SchemaViolation("\(g)/passed[\(bad)]", found: "a value other than 0 or 1", expected: "0 or 1")
        }
    }

    /// Checkpoints: finite values; the running buffers equal the per-step series at that step.
    private func checkCheckpoints() throws {
        for step in plan.checkpointSteps {
            for tensor in layout.stateDict {
                let path = RecordSchema.checkpointModel(step: step) + "/" + tensor.name
                let values = try reader.read(path, as: Float.self)
                if let bad = values.firstIndex(where: { !$0.isFinite }) {
                    throw SchemaViolation("\(path)[\(bad)]", found: "\(values[bad])", expected: "finite values")
                }
                guard step > 0, plan.isInWindow(step), let bn = layout.batchNorms.first(where: { tensor.name.hasPrefix($0.name + ".") }),
                      let series = RecordSchema.BatchNormSeries(rawValue: String(tensor.name.dropFirst(bn.name.count + 1))) else { continue }
                let row = Array(try reader.read(RecordSchema.stepBatchNorm(bn.name, series), as: Float.self)[((step - 1) * bn.channels)..<(step * bn.channels)])
                guard row.map(\.bitPattern) == values.map(\.bitPattern) else {
                    throw SchemaViolation(path, found: "values that differ from \(RecordSchema.stepBatchNorm(bn.name, series)) at step \(step)",
                                          expected: "the running buffer after the step")
                }
            }
            if step > 0 {
                for tensor in layout.parameters {
                    let path = RecordSchema.checkpointMomentum(step: step) + "/" + tensor.name
                    if let bad = try reader.read(path, as: Float.self).firstIndex(where: { !$0.isFinite }) {
                        throw SchemaViolation("\(path)[\(bad)]", found: "a non-finite value", expected: "finite values")
                    }
                }
            }
        }
    }

    private func checkMetrics(_ path: String, _ values: [Double], accuracy: Bool) throws {
        if let bad = values.firstIndex(where: { !$0.isFinite || $0 < 0 || (accuracy && $0 > 100) }) {
            throw SchemaViolation("\(path)[\(bad)]", found: "\(values[bad])", expected: accuracy ? "a percentage in [0, 100]" : "a finite loss ≥ 0")
        }
    }
}

/// The objects a record with this configuration holds: every group (with the codec of its attributes)
/// and every dataset with its element type and shape.
struct ExpectedTree {
    var groups: Set<String> = ["/"]
    var datasets: [String: Record.DatasetSpec] = [:]
    /// Expected member count of each group (the reader refuses a larger group before listing it).
    var children: [String: Int] = [:]
    let config: RunConfig
    let plan: RunPlan
    let layout: ModelLayout

    /// Set by `checkAttributes` when the record has an envelope.
    var envelopeReplicas: Int?

    /// The schema version the record states.
    let schema: Int32

    init(config: RunConfig, plan: RunPlan, layout: ModelLayout, data: DataDescription, envelope: Bool = false,
         schema: Int32 = RecordSchema.version) {
        self.schema = schema
        self.config = config
        self.plan = plan
        self.layout = layout
        let s = plan.totalSteps, e = plan.epochsStarted
        for group in [RecordSchema.config, RecordSchema.data, RecordSchema.environment, RecordSchema.tolerance, RecordSchema.split,
                      RecordSchema.steps, RecordSchema.epochs, RecordSchema.evaluation, RecordSchema.checks, RecordSchema.batchNormChecks,
                      RecordSchema.checkpoints] + EvaluationPhase.allCases.map({ RecordSchema.evaluation + "/" + $0.rawValue }) {
            add(group: group)
        }
        add(RecordSchema.trainIndices, .int32, [plan.trainCount])
        add(RecordSchema.validationIndices, .int32, [data.trainSamples - plan.trainCount])
        switch config.profile {
        case .complete: add(RecordSchema.epochOrder, .int32, [e, plan.trainCount])
        case .golden: add(RecordSchema.epochOrderDigests, .uint8, [e, 32])
        }
        let digestSteps = plan.windowEndsBetweenCheckpoints
        if !digestSteps.isEmpty { add(group: RecordSchema.stateDigests) }
        for step in digestSteps {
            add(group: RecordSchema.stateDigest(step: step))
            add(RecordSchema.stateDigest(step: step) + "/model", .uint8, [layout.stateDict.count, 32])
            add(RecordSchema.stateDigest(step: step) + "/momentum_buffer", .uint8, [layout.parameters.count, 32])
        }
        for series in StepSeries.table(for: layout, schema: schema) {
            let group = Self.parent(series.path)
            if !groups.contains(group) { add(group: group) }
            add(series.path, series.kind, series.shape(steps: s))
        }
        add(RecordSchema.forwardProbeChecksums, .int64, [layout.forwardProbePoints.count])
        add(RecordSchema.forwardProbeLargest, .float64, [layout.forwardProbePoints.count])
        for series in RecordSchema.EpochSeries.allCases { add(RecordSchema.epochSeries(series), .float64, [e]) }
        for phase in EvaluationPhase.allCases {
            add(RecordSchema.evaluation(phase.rawValue, .loss), .float64, [3])
            add(RecordSchema.evaluation(phase.rawValue, .accuracy), .float64, [3])
            add(RecordSchema.evaluation(phase.rawValue, .samples), .int64, [3])
        }
        for step in plan.checkpointSteps {
            add(group: RecordSchema.checkpoint(step: step))
            add(group: RecordSchema.checkpointModel(step: step))
            for t in layout.stateDict { add(RecordSchema.checkpointModel(step: step) + "/" + t.name, .float32, t.shape) }
            guard step > 0 else { continue }
            add(group: RecordSchema.checkpoint(step: step) + "/optimizer")
            add(group: RecordSchema.checkpointMomentum(step: step))
            for t in layout.parameters { add(RecordSchema.checkpointMomentum(step: step) + "/" + t.name, .float32, t.shape) }
        }
        if envelope {
            for (path, shape) in Envelope.datasets(plan: plan, layout: layout, schema: schema) {
                let stored = Envelope.path(of: path)
                addGroups(Self.parent(stored))
                add(stored, .uint8, shape)
            }
        }
    }

    /// Adds `group` and every missing group above it.
    private mutating func addGroups(_ group: String) {
        guard group != "/", !groups.contains(group) else { return }
        addGroups(Self.parent(group))
        add(group: group)
    }

    private static func parent(_ path: String) -> String {
        let p = path[..<path.lastIndex(of: "/")!]
        return p.isEmpty ? "/" : String(p)
    }

    private mutating func add(group: String) {
        groups.insert(group)
        children[Self.parent(group), default: 0] += 1
    }

    private mutating func add(_ path: String, _ kind: HDF5Reader.ElementKind, _ shape: [Int]) {
        datasets[path] = Record.DatasetSpec(kind: kind, shape: shape)
        children[Self.parent(path), default: 0] += 1
    }

    func childCount(of group: String) -> Int { children[group] ?? 0 }

    /// Parses the attributes a group must carry (the record parts were parsed already; the check table's
    /// row count sizes its datasets here) and refuses attributes on any other group.
    mutating func checkAttributes(of group: String, _ attributes: [(name: String, value: AttributeValue)]) throws {
        switch group {
        case "/", RecordSchema.config, RecordSchema.data, RecordSchema.environment, RecordSchema.tolerance:
            return  // parsed by their codecs before the walk
        case RecordSchema.probes:
            try ProbePointsAttribute.check(attributes, layout: layout)
        case Envelope.group:
            envelopeReplicas = try Envelope.replicas(parsing: attributes)
        case RecordSchema.batchNormChecks:
            let rows = try CheckTable.rowCount(parsing: attributes)
            for (name, kind) in CheckTable.datasets.sorted(by: { $0.key < $1.key }) { add(group + "/" + name, kind, [rows]) }
        case _ where group.hasPrefix(RecordSchema.checkpoints + "/") && Self.parent(group) == RecordSchema.checkpoints:
            let step = Int(group.dropFirst(RecordSchema.checkpoints.count + 1))!
            try CheckpointAttributes.check(attributes, group: group, expected: CheckpointAttributes(step: step, plan: plan, seed: config.seed))
        default:
            if let first = attributes.first {
                throw SchemaViolation("\(group)@\(first.name)", found: "an attribute (\(first.value))", expected: "no attributes on this group")
            }
        }
    }

    /// The first expected object (in sorted path order) the walk did not find, with what it should be.
    func firstMissing(seen: Set<String>) -> (path: String, what: String)? {
        let missingGroups = groups.subtracting(seen).subtracting(["/"])
        let missingDatasets = Set(datasets.keys).subtracting(seen)
        guard let path = missingGroups.union(missingDatasets).min() else { return nil }
        if let spec = datasets[path] { return (path, "a \(spec.kind.rawValue) dataset of shape \(spec.shape)") }
        return (path, "a group")
    }
}
