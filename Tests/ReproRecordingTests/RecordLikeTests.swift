import Foundation
import Testing
import ReproData
import ReproNN
import ReproRecording
import ReproStorage
import ReproTestSupport
import ReproTraining

/// `repro record --like GOLDEN`: a golden re-recorded from its own configuration is the golden.
@Suite(.serialized) struct RecordLikeTests {
    static let mnist = CommittedGoldens.folder.deletingLastPathComponent().appendingPathComponent("Data/mnist").path
    static let work = NSTemporaryDirectory() + "repro-record-like-\(getpid())"

    init() throws { try FileManager.default.createDirectory(atPath: Self.work, withIntermediateDirectories: true) }

    static func reRecord(_ golden: Record, to path: String) throws {
        let config = try Recording.configuration(like: golden)
        let data = try ImageDataset.load(config.dataset, directory: mnist)
        try Recording.record(config: config, data: data, to: path, header: golden.header, checks: try checkTable(of: golden))
    }

    /// The golden's stored check table, as the command writes the one it runs (the same rows on any machine:
    /// `repro verify` compares them, and they are exact functions of the portable kernels).
    static func checkTable(of golden: Record) throws -> [CheckRow] {
        let g = RecordSchema.batchNormChecks
        let errors = try golden.values(g + "/worst_error").values, bounds = try golden.values(g + "/bound").values
        let passed = try golden.values(g + "/passed").values
        let attributes = try HDF5Reader(opening: golden.path).attributes(on: g, limit: 4, maximumStringBytes: 1 << 17)
        guard case .string(let rows)? = attributes.first(where: { $0.name == "rows" })?.value else { throw RecordError(golden.path, "no check rows") }
        let names = rows.split(separator: "\n").map { $0.components(separatedBy: " | ") }
        return names.indices.map {
            CheckRow(caseName: names[$0][0], check: names[$0][1], worstError: errors[$0], bound: bounds[$0], passed: passed[$0] == 1)
        }
    }

    /// Re-recorded without its envelope (measuring it takes minutes: `ci/verify-goldens` re-records the
    /// whole file, envelope included, and compares the bytes), a short golden holds the same datasets with the
    /// same bits, and the same header.
    @Test(arguments: [CommittedGoldens.mnistBN, CommittedGoldens.mnist])
    func shortGoldenReRecordsIdentical(_ path: String) throws {
        let golden = try Record(path: path)
        let copy = Self.work + "/" + URL(fileURLWithPath: path).lastPathComponent
        try Self.reRecord(golden, to: copy)
        let again = try Record(path: copy)
        #expect(again.header == golden.header && again.comparedDatasets == golden.comparedDatasets)
        #expect(try Self.differing(golden, again).isEmpty, "\(path) re-recorded differs")
        // Negative control: the comparison tells two different goldens apart.
        let other = path == CommittedGoldens.mnist ? CommittedGoldens.mnistBN : CommittedGoldens.mnist
        #expect(!(try Self.differing(try Record(path: other), again)).isEmpty)
    }

    /// The datasets whose values differ in any bit (or that only one record has).
    static func differing(_ a: Record, _ b: Record) throws -> [String] {
        try Set(a.comparedDatasets).union(b.comparedDatasets).sorted().filter { path in
            guard a.kind(of: path) != nil, b.kind(of: path) != nil, a.shape(of: path) == b.shape(of: path) else { return true }
            return try a.values(path).values.map(\.bitPattern) != b.values(path).values.map(\.bitPattern)
        }
    }

    /// The full-length goldens take minutes to re-record: the derived configuration, written by the record
    /// writer's own codecs, must state exactly what the golden states (/config, /data, /tolerance), and
    /// plan the same steps, checkpoints and windows.
    @Test(arguments: [CommittedGoldens.mnistBNFull, CommittedGoldens.mnistFull])
    func fullLengthGoldenConfigurationIsTheStoredOne(_ path: String) throws {
        let golden = try Record(path: path)
        let config = try Recording.configuration(like: golden)
        #expect(config == golden.config)
        let data = try ImageDataset.load(config.dataset, directory: Self.mnist)
        #expect(RunPlan(config: config, trainCount: golden.plan.trainCount) == golden.plan)
        #expect(golden.plan.windows.count == 7 && golden.config.profile == .golden)

        let target = Self.work + "/header-" + URL(fileURLWithPath: path).lastPathComponent
        let file = try RecordFile(target: target)
        defer { file.abandon() }
        _ = try RecordWriter(file: file, config: config, data: DataDescription(dataset: config.dataset, data: data), header: golden.header,
                             checks: [])
        try file.writer.close()
        let written = try HDF5Reader(opening: file.temporaryPath), stored = try HDF5Reader(opening: path)
        for group in [RecordSchema.config, RecordSchema.data, RecordSchema.tolerance, "/"] {
            let mine = try written.attributes(on: group, limit: 64, maximumStringBytes: 1024)
            let theirs = try stored.attributes(on: group, limit: 64, maximumStringBytes: 1024).filter { group != "/" || $0.name != "complete" }
            #expect(mine.map(\.name) == theirs.map(\.name), "\(group)")
            #expect(mine.map(\.value) == theirs.map(\.value), "\(group)")
        }
        // Negative control: another seed states another /config.
        var changed = config
        changed.seed += 1
        #expect(changed != golden.config)
    }

    @Test func onlyAPortableGoldensThreadCountMayChange() throws {
        let golden = try Record(path: CommittedGoldens.mnistBN)
        #expect(try Recording.configuration(like: golden, threads: 2).threads == 2)
        var blas = golden.config
        blas.kernels = .blas
        #expect(golden.config.kernels == .portable && blas != golden.config)
    }

    /// A record of another schema version is told apart before it is parsed (the CLI then refuses it with a
    /// line saying how to proceed).
    @Test func statedSchemaVersionIsReadBeforeParsing() throws {
        #expect(Record.statedSchemaVersion(CommittedGoldens.mnist) == RecordSchema.version)
        let old = Self.work + "/version3.h5"
        try? FileManager.default.removeItem(atPath: old)
        try FileManager.default.copyItem(atPath: CommittedGoldens.mnist, toPath: old)
        let editor = try RecordEditor(old)
        try editor.setAttribute("schema_version", .int32(3), on: "/")
        try editor.finish()
        #expect(Record.statedSchemaVersion(old) == 3)
        #expect(throws: RecordError.self) { try Record(path: old) }
        #expect(Record.statedSchemaVersion(Self.work + "/none.h5") == nil)
    }

    /// A schema 5 record (before the norms) is still read, without the norm series; its other series are
    /// untouched. Negative control: the same edit without the version stated is refused.
    @Test func schemaFiveRecordsAreReadWithoutNorms() throws {
        func edited(_ name: String, version: Int32?) throws -> String {
            let path = Self.work + "/" + name
            try? FileManager.default.removeItem(atPath: path)
            try FileManager.default.copyItem(atPath: CommittedGoldens.mnistBN, toPath: path)
            let editor = try RecordEditor(path)
            try editor.delete(RecordSchema.probeNorm)
            try editor.delete(Envelope.group + RecordSchema.probeNorm)
            if let version { try editor.setAttribute("schema_version", .int32(version), on: "/") }
            try editor.finish()
            return path
        }
        let v5 = try Record(path: try edited("version5.h5", version: 5)), v6 = try Record(path: CommittedGoldens.mnistBN)
        #expect(!v5.stepSeries.contains { $0.path == RecordSchema.probeNorm } && v6.stepSeries.contains { $0.path == RecordSchema.probeNorm })
        #expect(v5.stepSeries.count + 1 == v6.stepSeries.count)
        #expect(try v5.values(RecordSchema.probeLargest).values.map(\.bitPattern) == v6.values(RecordSchema.probeLargest).values.map(\.bitPattern))
        #expect(throws: RecordError.self) { try Record(path: try edited("version6-without-norms.h5", version: nil)) }
    }
}
