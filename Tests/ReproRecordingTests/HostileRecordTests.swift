import Foundation
import Testing
import ReproNN
import ReproRecording
import ReproStorage
import ReproTestSupport

/// Records that are well-formed HDF5 with a correct checksum but state something the schema does not
/// allow, each made from the repository's golden by one edit (as with h5py, checksum restamped). Every one
/// must be refused with one line that names the file and the place; none may crash or hang.
struct HostileCase: CustomTestStringConvertible, Sendable {
    let name: String
    /// A fragment the one-line error must contain (the place in the file, usually).
    let mentions: String
    /// The golden edited: the short one (complete profile) unless said otherwise.
    var source = golden
    let edit: @Sendable (RecordEditor) throws -> Void

    init(name: String, mentions: String, source: String = golden, edit: @escaping @Sendable (RecordEditor) throws -> Void) {
        self.name = name
        self.mentions = mentions
        self.source = source
        self.edit = edit
    }

    var testDescription: String { name }
}

let golden = CommittedGoldens.mnistBN
/// The full-length BN golden (golden profile): 18,750 steps, checkpoints every 3,700, windows of 128 steps.
let fullGolden = CommittedGoldens.mnistBNFull

/// The golden's facts the cases rely on: 60,000 training samples (48,001 train, 11,999 validation), batch
/// 128, 256 steps, checkpoints every 64 steps, 1,024 samples per evaluation.
let hostileCases: [HostileCase] = [
    // /config: types, ranges, enums, missing and extra attributes.
    .init(name: "dataset svhn in the config of an MNIST record", mentions: "/data@dataset: string 'mnist', the schema expects one of the strings 'svhn'") {
        try $0.setAttribute("dataset", .string("svhn"), on: "/config")
    },
    .init(name: "unknown dataset", mentions: "/config@dataset") { try $0.setAttribute("dataset", .string("cifar10"), on: "/config") },
    .init(name: "norm = 2", mentions: "/config@norm") { try $0.setAttribute("norm", .int32(2), on: "/config") },
    .init(name: "bn_unbiased = 7", mentions: "/config@bn_unbiased") { try $0.setAttribute("bn_unbiased", .int32(7), on: "/config") },
    .init(name: "batch_size as float64 128.5", mentions: "/config@batch_size: float64 128.5") {
        try $0.setAttribute("batch_size", .float64(128.5), on: "/config")
    },
    .init(name: "batch_size 1", mentions: "/config@batch_size") { try $0.setAttribute("batch_size", .int64(1), on: "/config") },
    .init(name: "checkpoint_every 0", mentions: "/config@checkpoint_every") { try $0.setAttribute("checkpoint_every", .int64(0), on: "/config") },
    .init(name: "evaluation_limit −5", mentions: "/config@evaluation_limit") { try $0.setAttribute("evaluation_limit", .int64(-5), on: "/config") },
    .init(name: "max_steps 0", mentions: "/config@max_steps") { try $0.setAttribute("max_steps", .int64(0), on: "/config") },
    .init(name: "epochs 0", mentions: "/config@epochs") { try $0.setAttribute("epochs", .int64(0), on: "/config") },
    .init(name: "bn_momentum NaN", mentions: "/config@bn_momentum") { try $0.setAttribute("bn_momentum", .float64(.nan), on: "/config") },
    .init(name: "bn_epsilon −1", mentions: "/config@bn_epsilon") { try $0.setAttribute("bn_epsilon", .float64(-1), on: "/config") },
    .init(name: "learning_rate +∞", mentions: "/config@learning_rate") { try $0.setAttribute("learning_rate", .float64(.infinity), on: "/config") },
    .init(name: "learning_rate −0.01", mentions: "/config@learning_rate") { try $0.setAttribute("learning_rate", .float64(-0.01), on: "/config") },
    .init(name: "momentum 1", mentions: "/config@momentum") { try $0.setAttribute("momentum", .float64(1), on: "/config") },
    .init(name: "weight_decay as float32", mentions: "/config@weight_decay: float32") { try $0.setAttribute("weight_decay", .float32(1e-6), on: "/config") },
    .init(name: "kernels gpu", mentions: "/config@kernels") { try $0.setAttribute("kernels", .string("gpu"), on: "/config") },
    .init(name: "name with a path", mentions: "/config@name") { try $0.setAttribute("name", .string("../../etc/x"), on: "/config") },
    .init(name: "seed as int32", mentions: "/config@seed: int32") { try $0.setAttribute("seed", .int32(0), on: "/config") },
    .init(name: "seed as an array", mentions: "/config@seed: an array") { try $0.setAttribute("seed", .int64Array([0, 1]), on: "/config") },
    .init(name: "threads in a portable record", mentions: "/config@threads") { try $0.setAttribute("threads", .int64(2), on: "/config") },
    .init(name: "config attribute missing", mentions: "/config@seed: missing") { try $0.deleteAttribute("seed", on: "/config") },
    .init(name: "unknown profile", mentions: "/config@profile") { try $0.setAttribute("profile", .string("tiny"), on: "/config") },
    .init(name: "window_steps 0", mentions: "/config@window_steps") { try $0.setAttribute("window_steps", .int64(0), on: "/config") },
    .init(name: "unknown config attribute", mentions: "/config@dropout") { try $0.setAttribute("dropout", .float64(0.5), on: "/config") },
    // Root attributes.
    .init(name: "schema version 99", mentions: "schema version int32 99") { try $0.setAttribute("schema_version", .int32(99)) },
    .init(name: "complete = 0", mentions: "/@complete") { try $0.setAttribute("complete", .int32(0)) },
    .init(name: "another format", mentions: "/@format") { try $0.setAttribute("format", .string("my-format")) },
    .init(name: "unknown root attribute", mentions: "/@comment") { try $0.setAttribute("comment", .string("edited")) },
    // /data, /environment, /tolerance.
    .init(name: "data says svhn", mentions: "/data@dataset") { try $0.setAttribute("dataset", .string("svhn"), on: "/data") },
    .init(name: "sha256 not hex", mentions: "/data@train-images-idx3-ubyte_sha256") {
        try $0.setAttribute("train-images-idx3-ubyte_sha256", .string(String(repeating: "z", count: 64)), on: "/data")
    },
    .init(name: "train_samples 0", mentions: "/data@train_samples") { try $0.setAttribute("train_samples", .int64(0), on: "/data") },
    .init(name: "test_samples missing", mentions: "/data@test_samples") { try $0.deleteAttribute("test_samples", on: "/data") },
    .init(name: "OpenBLAS facts in a portable record", mentions: "/environment@openblas_core") {
        try $0.setAttribute("openblas_core", .string("Haswell"), on: "/environment")
    },
    .init(name: "environment value as a number", mentions: "/environment@os") { try $0.setAttribute("os", .float64(12), on: "/environment") },
    .init(name: "no /tolerance group", mentions: "/tolerance: missing") { try $0.delete("/tolerance") },
    .init(name: "tolerance mode 'loose'", mentions: "/tolerance@mode") { try $0.setAttribute("mode", .string("loose"), on: "/tolerance") },
    .init(name: "tolerance NaN", mentions: "/tolerance@absolute") { try $0.setAttribute("absolute", .float64(.nan), on: "/tolerance") },
    // Objects: types, shapes, missing and extra.
    .init(name: "float64 /steps/loss", mentions: "/steps/loss: element type float64") {
        try $0.replaceDataset("/steps/loss", with: try $0.values("/steps/loss"), as: .float64, shape: [256])
    },
    .init(name: "big-endian /steps/accuracy", mentions: "/steps/accuracy: element type float32 big-endian") {
        try $0.replaceDataset("/steps/accuracy", with: try $0.values("/steps/accuracy"), as: .float32BigEndian, shape: [256])
    },
    .init(name: "int64 train indices", mentions: "/data/split/train_indices: element type int64") {
        try $0.replaceDataset("/data/split/train_indices", with: try $0.values("/data/split/train_indices"), as: .int64, shape: [48001])
    },
    .init(name: "uint32 validation indices", mentions: "/data/split/val_indices: element type uint32") {
        try $0.replaceDataset("/data/split/val_indices", with: try $0.values("/data/split/val_indices"), as: .uint32, shape: [11999])
    },
    .init(name: "loss one step short", mentions: "/steps/loss: shape [255]") {
        try $0.replaceDataset("/steps/loss", with: Array(try $0.values("/steps/loss").prefix(255)), as: .float32, shape: [255])
    },
    .init(name: "bn3 series transposed", mentions: "/steps/bn3/batch_mean: shape [120, 256]") {
        try $0.replaceDataset("/steps/bn3/batch_mean", with: try $0.values("/steps/bn3/batch_mean"), as: .float32, shape: [120, 256])
    },
    .init(name: "no /steps/bn1", mentions: "/steps/bn1: missing") { try $0.delete("/steps/bn1") },
    .init(name: "no /evaluation", mentions: "/evaluation: missing") { try $0.delete("/evaluation") },
    .init(name: "no /checkpoints", mentions: "/checkpoints: missing") { try $0.delete("/checkpoints") },
    .init(name: "no /checks/bn", mentions: "/checks/bn: missing") { try $0.delete("/checks/bn") },
    .init(name: "one checkpoint missing", mentions: "/checkpoints/00000128: missing") { try $0.delete("/checkpoints/00000128") },
    .init(name: "3,000 extra empty checkpoint groups", mentions: "/checkpoints has 3005 members, the schema expects 5") { e in
        for i in 0..<3000 { try e.createGroup("/checkpoints/x\(i)") }
    },
    .init(name: "an extra checkpoint", mentions: "/checkpoints/00000100: a group, the schema expects no such object") { try $0.createGroup("/checkpoints/00000100") },
    .init(name: "an extra dataset", mentions: "/steps/extra: a dataset, the schema expects no such object") {
        try $0.replaceDataset("/steps/extra", with: [1, 2], as: .float32, shape: [2])
    },
    .init(name: "momentum buffers at step 0", mentions: "/checkpoints/00000000/optimizer: a group, the schema expects no such object") { try $0.createGroup("/checkpoints/00000000/optimizer") },
    .init(name: "an attribute on a dataset", mentions: "/steps/loss: 1 attribute(s)") { try $0.setDatasetAttribute("units", 1, on: "/steps/loss") },
    .init(name: "a soft link instead of a dataset", mentions: "/steps/accuracy: a soft or external link") {
        try $0.delete("/steps/accuracy")
        try $0.softLink("/steps/accuracy", pointingTo: "/steps/loss")
    },
    .init(name: "an attribute on a plain group", mentions: "/steps@note") { try $0.setAttribute("note", .string("x"), on: "/steps") },
    // Values: indices, permutations, ranges, cross-field consistency.
    .init(name: "train index out of range", mentions: "/data/split/train_indices[5]: 60000") { try $0.change("/data/split/train_indices", at: 5, to: 60000) },
    .init(name: "negative validation index", mentions: "/data/split/val_indices[0]: -1") { try $0.change("/data/split/val_indices", at: 0, to: -1) },
    .init(name: "split indices not disjoint", mentions: "a second time") { e in
        try e.change("/data/split/val_indices", at: 3, to: try e.values("/data/split/train_indices")[0])
    },
    .init(name: "epoch order with a repeated sample", mentions: "/data/epoch_order[0, 1]") { e in
        try e.change("/data/epoch_order", at: 1, to: try e.values("/data/epoch_order")[0])
    },
    .init(name: "epoch order with a validation sample", mentions: "/data/epoch_order[0, 7]") { e in
        try e.change("/data/epoch_order", at: 7, to: try e.values("/data/split/val_indices")[0])
    },
    .init(name: "NaN loss", mentions: "/steps/loss: step 3 has the loss nan") { try $0.change("/steps/loss", at: 2, to: .nan) },
    .init(name: "accuracy no batch can have", mentions: "/steps/accuracy: step 1 has the accuracy 33.3") { try $0.change("/steps/accuracy", at: 0, to: 33.3) },
    .init(name: "batch std 0", mentions: "/steps/bn2/batch_std: step 2 channel 0") { try $0.change("/steps/bn2/batch_std", at: 16, to: 0) },
    .init(name: "epoch accuracy 101%", mentions: "/epochs/val_accuracy[0]") { try $0.overwrite("/epochs/val_accuracy", with: [101]) },
    .init(name: "evaluation samples", mentions: "/evaluation/after/samples: [1024, 1000, 1024]") {
        try $0.overwrite("/evaluation/after/samples", with: [1024, 1000, 1024])
    },
    .init(name: "checkpoint cursor epoch", mentions: "/checkpoints/00000064@epoch") { try $0.setAttribute("epoch", .int64(3), on: "/checkpoints/00000064") },
    .init(name: "checkpoint without its step", mentions: "/checkpoints/00000192@step: missing") { try $0.deleteAttribute("step", on: "/checkpoints/00000192") },
    .init(name: "checkpoint rng of another seed", mentions: "/checkpoints/00000000@rng") {
        try $0.setAttribute("rng", .string("philox4x32-10 seed=7 shuffle_stream=3 substream=epoch position=0"), on: "/checkpoints/00000000")
    },
    .init(name: "checkpoint buffer not the step's", mentions: "/checkpoints/00000256/model/bn1.running_mean: values that differ") {
        try $0.change("/checkpoints/00000256/model/bn1.running_mean", at: 2, to: 0.5)
    },
    .init(name: "infinite weight", mentions: "/checkpoints/00000064/model/fc3.weight[10]: inf") {
        try $0.change("/checkpoints/00000064/model/fc3.weight", at: 10, to: .infinity)
    },
    .init(name: "check table passed = 2", mentions: "/checks/bn/passed[0]") { try $0.change("/checks/bn/passed", at: 0, to: 2) },
    .init(name: "check table rows out of step", mentions: "/checks/bn/bound: shape") { e in
        try e.replaceDataset("/checks/bn/bound", with: [1, 2], as: .float64, shape: [2])
    },
    // The golden profile: what it keeps and what it leaves out.
    .init(name: "a BN value outside the windows", mentions: "/steps/bn3/batch_mean: step 200 channel 0 is 0.5", source: fullGolden) {
        try $0.change("/steps/bn3/batch_mean", at: 199 * 120, to: 0.5)
    },
    .init(name: "a NaN inside a window", mentions: "/steps/bn1/batch_std: step 3701 channel 0 is nan", source: fullGolden) {
        try $0.change("/steps/bn1/batch_std", at: 3700 * 6, to: .nan)
    },
    .init(name: "window-end digests missing", mentions: "/state_digests/00003828: missing", source: fullGolden) {
        try $0.delete("/state_digests/00003828")
    },
    .init(name: "a full epoch order in the golden profile", mentions: "/data/epoch_order: a dataset, the schema expects no such object",
          source: fullGolden) { e in
        try e.replaceDataset("/data/epoch_order", with: [Double](repeating: 0, count: 10), as: .int32, shape: [1, 10])
    },
    .init(name: "digests of the wrong width", mentions: "/data/epoch_order_sha256: element type int32", source: fullGolden) { e in
        try e.replaceDataset("/data/epoch_order_sha256", with: [Double](repeating: 1, count: 800), as: .int32, shape: [50, 16])
    },
    // Probes (60 points per step in the BN model: 0 labels, 1 images, 2 conv1 output, 3 bn1 output, …).
    .init(name: "a probe point renamed", mentions: "/steps/probes@points: line 6 'forward/conv3/output', the schema expects 'forward/conv2/output'") {
        try $0.setAttribute("points", .string(probePointsText.replacingOccurrences(of: "forward/conv2/", with: "forward/conv3/")), on: "/steps/probes")
    },
    .init(name: "probe points in another order", mentions: "/steps/probes@points: line 1 'data/input/images'") {
        var lines = probePointsText.split(separator: "\n").map(String.init)
        lines.swapAt(0, 1)
        try $0.setAttribute("points", .string(lines.joined(separator: "\n")), on: "/steps/probes")
    },
    .init(name: "probe points missing", mentions: "/steps/probes@points: missing") { try $0.deleteAttribute("points", on: "/steps/probes") },
    .init(name: "probe checksums one point short", mentions: "/steps/probes/checksum: shape [256, 59], the schema expects shape [256, 60]") { e in
        try e.replaceDataset("/steps/probes/checksum", with: [Double](repeating: 1, count: 256 * 59), as: .int64, shape: [256, 59])
    },
    .init(name: "a checksum wider than 32 bits",
          mentions: "/steps/probes/checksum: step 3 point forward/bn1/output is 4294967296, the schema expects a checksum in 0...4294967295") {
        try $0.change("/steps/probes/checksum", at: 2 * 60 + 3, to: 4_294_967_296)
    },
    .init(name: "a negative checksum", mentions: "/steps/probes/checksum: step 1 point data/input/labels is -1") {
        try $0.change("/steps/probes/checksum", at: 0, to: -1)
    },
    .init(name: "a NaN largest magnitude",
          mentions: "/steps/probes/largest: step 3 point forward/bn1/output is nan, the schema expects a finite magnitude ≥ 0") {
        try $0.change("/steps/probes/largest", at: 2 * 60 + 3, to: .nan)
    },
    .init(name: "a negative largest magnitude", mentions: "/steps/probes/largest: step 1 point data/input/labels is -1.0") {
        try $0.change("/steps/probes/largest", at: 0, to: -1)
    },
    .init(name: "a largest magnitude no float32 value has", mentions: "/steps/probes/largest: step 3 point forward/bn1/output is 0.1,") {
        try $0.change("/steps/probes/largest", at: 2 * 60 + 3, to: 0.1)
    },
    .init(name: "forward probe checksums as float32", mentions: "/evaluation/before/probe_checksum: element type float32") { e in
        try e.replaceDataset("/evaluation/before/probe_checksum", with: [Double](repeating: 1, count: 12), as: .float32, shape: [12])
    },
    .init(name: "an infinite forward probe", mentions: "/evaluation/before/probe_largest[4]: inf") {
        try $0.change("/evaluation/before/probe_largest", at: 4, to: .infinity)
    },
    .init(name: "a probe outside the windows", mentions: "/steps/probes/checksum: step 200 point data/input/labels is 5", source: fullGolden) {
        try $0.change("/steps/probes/checksum", at: 199 * 60, to: 5)
    },
    // The round-off envelope (schema 5).
    .init(name: "envelope replicas 0", mentions: "/envelope@replicas: int32 0, the schema expects int32 in 1...1000") {
        try $0.setAttribute("replicas", .int32(0), on: "/envelope")
    },
    .init(name: "envelope replicas as int64", mentions: "/envelope@replicas: int64 16") { try $0.setAttribute("replicas", .int64(16), on: "/envelope") },
    .init(name: "envelope replicas missing", mentions: "/envelope@replicas: missing") { try $0.deleteAttribute("replicas", on: "/envelope") },
    .init(name: "an envelope as float32", mentions: "/envelope/steps/loss: element type float32, the schema expects uint8") { e in
        try e.replaceDataset("/envelope/steps/loss", with: [Double](repeating: 140, count: 256), as: .float32, shape: [256])
    },
    .init(name: "an envelope one step short", mentions: "/envelope/steps/loss: shape [255], the schema expects shape [256]") { e in
        try e.replaceDataset("/envelope/steps/loss", with: [Double](repeating: 140, count: 255), as: .uint8, shape: [255])
    },
    .init(name: "an envelope dataset missing", mentions: "/envelope/steps/bn1/batch_mean: missing") { try $0.delete("/envelope/steps/bn1/batch_mean") },
    .init(name: "an envelope for the split", mentions: "/envelope/data: a group, the schema expects no such object") { try $0.createGroup("/envelope/data") },
    // The norms (schema 6): 36 columns, the BN model's 18 parameters' gradients (in backward order) and updates.
    .init(name: "a negative norm", mentions: "/steps/probes/norm: step 3 point backward/fc3/grad:fc3.weight is -1.0, the schema expects a finite norm ≥ 0") {
        try $0.change("/steps/probes/norm", at: 2 * 36 + 8, to: -1)
    },
    .init(name: "norms one column short", mentions: "/steps/probes/norm: shape [256, 35], the schema expects shape [256, 36]") { e in
        try e.replaceDataset("/steps/probes/norm", with: [Double](repeating: 1, count: 256 * 35), as: .float64, shape: [256, 35])
    },
    .init(name: "norms missing", mentions: "/steps/probes/norm: missing") { try $0.delete("/steps/probes/norm") },
    .init(name: "norms in a schema 5 record", mentions: "/envelope/steps/probes/norm: a dataset, the schema expects no such object (schema version 5)") {
        try $0.setAttribute("schema_version", .int32(5))
    },
    .init(name: "an envelope in a schema 4 record", mentions: "/envelope: a group in a schema 4 record, the schema expects no envelope before schema 5") {
        try $0.setAttribute("schema_version", .int32(4))
    },
]

/// The BN model's probe points, as the golden stores them.
let probePointsText = LeNet5<Float>.layout(normalized: true, batchNorm: .notebook).probePoints.map(\.key).joined(separator: "\n")

@Suite(.serialized) struct HostileRecordTests {
    static let folder: String = {
        let f = NSTemporaryDirectory() + "repro-hostile-\(getpid())"
        try? FileManager.default.createDirectory(atPath: f, withIntermediateDirectories: true)
        return f
    }()

    static func copyOfGolden(_ name: String, from source: String = golden) throws -> String {
        let path = folder + "/" + name.filter { $0.isLetter || $0.isNumber } + ".h5"
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: source, toPath: path)
        return path
    }

    @Test func atLeastFortyCases() { #expect(hostileCases.count >= 40) }

    /// Negative control: the goldens themselves, and a copy opened, closed and restamped by the same editor,
    /// parse; so each refusal below comes from its one edit.
    @Test func untouchedGoldenAndAnEmptyEditAreAccepted() throws {
        #expect(try Record(path: fullGolden).config.profile == .golden)
        let record = try Record(path: golden)
        #expect(record.config.batchSize == 128 && record.plan.totalSteps == 256 && record.plan.checkpointSteps == [0, 64, 128, 192, 256])
        let path = try Self.copyOfGolden("emptyedit")
        try RecordEditor(path).finish()
        #expect(RecordFile.checksumProblem(path) == nil)
        _ = try Record(path: path)
    }

    @Test(.timeLimit(.minutes(1)), arguments: hostileCases)
    func refusedWithOneLine(_ hostile: HostileCase) throws {
        let path = try Self.copyOfGolden(hostile.name, from: hostile.source)
        let editor = try RecordEditor(path)
        try hostile.edit(editor)
        try editor.finish()
        #expect(RecordFile.checksumProblem(path) == nil, "the edit must leave a checksummed file")
        do {
            _ = try Record(path: path)
            Issue.record("\(hostile.name): accepted")
        } catch {
            #expect(error.description.hasPrefix(path + ": "), "\(error.description)")
            #expect(error.description.contains(hostile.mentions), "\(hostile.name): \(error.description)")
            #expect(!error.description.contains("\n"), "more than one line: \(error.description)")
        }
        try? FileManager.default.removeItem(atPath: path)
    }
}
