import Foundation
import Testing
import ReproData
import ReproTestSupport

let svhnFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/svhn").path

@Suite struct SVHNTests {
    /// What torchvision makes of the fixtures, written by make_fixtures.py with numpy: images, then labels.
    static func expected(_ split: String, count: Int) -> (images: [UInt8], labels: [UInt8]) {
        let bytes = [UInt8](FileManager.default.contents(atPath: svhnFixtures + "/expected_\(split).bin")!)
        return (Array(bytes.prefix(count * 3072)), Array(bytes.suffix(count)))
    }

    /// Every format the independent writers produce reads as exactly the pixels and labels they wrote,
    /// rearranged as torchvision does.
    @Test(arguments: ["v5", "v5-compressed", "v7.3"])
    func readsWhatSciPyAndHdf5storageWrote(format: String) throws {
        for (split, count) in [("train", 7), ("test", 3)] {
            let s = try SVHN.read(svhnFixtures + "/\(format)/\(split)_32x32.mat")
            let want = Self.expected(split, count: count)
            #expect(s.count == count && s.channels == 3 && s.height == 32 && s.width == 32)
            #expect(s.images == want.images, "\(format) \(split) images")
            #expect(s.labels == want.labels, "\(format) \(split) labels")
            #expect(s.labels.contains(0), "the 10 → 0 mapping is exercised")
        }
    }

    /// The fingerprint is of the decoded data: the same in all three formats; the loader finds DIR/SVHN/ too.
    @Test func fingerprintsDoNotDependOnTheFormat() throws {
        let prints = try ["v5", "v5-compressed", "v7.3"].map { try ImageDataset.load(.svhn, directory: svhnFixtures + "/" + $0).fingerprints.map(\.sha256) }
        #expect(prints[0] == prints[1] && prints[1] == prints[2])
        let folder = NSTemporaryDirectory() + "repro-svhn-layout-\(getpid())"
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: svhnFixtures + "/v5", toPath: folder + "/SVHN")
        #expect(try ImageDataset.load(.svhn, directory: folder).fingerprints.map(\.sha256) == prints[0])
    }

    /// The notebook's SVHN transform: pixel/255 then (x − 0.5)/0.5 on 3×32×32 as stored, no padding.
    @Test func transformIsTheNotebooks() throws {
        let data = try ImageDataset.load(.svhn, directory: svhnFixtures + "/v5")
        let (x, labels) = data.batch(data.train, indices: [Int32(4), 1])
        #expect(labels == [Int(data.train.labels[4]), Int(data.train.labels[1])] && x.channels == 3 && x.height == 32)
        for (c, i, j) in [(0, 0, 0), (1, 5, 30), (2, 31, 31)] {
            let p = data.train.images[((4 * 3 + c) * 32 + i) * 32 + j]
            #expect(x.data[((c * 2 + 0) * 32 + i) * 32 + j] == (Float(p) / 255 - 0.5) / 0.5)
        }
    }

    static func badInput(_ name: String, _ bytes: [UInt8], mentions: String) throws {
        let folder = NSTemporaryDirectory() + "repro-svhn-bad-\(getpid())-\(name.filter(\.isLetter))"
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: svhnFixtures + "/v5/test_32x32.mat", toPath: folder + "/test_32x32.mat")
        _ = FileManager.default.createFile(atPath: folder + "/train_32x32.mat", contents: Data(bytes))
        do {
            _ = try ImageDataset.load(.svhn, directory: folder)
            Issue.record("\(name): accepted")
        } catch {
            #expect(error.description.hasPrefix(folder + "/train_32x32.mat: "), "\(name): \(error.description)")
            #expect(error.description.contains(mentions), "\(name): \(error.description)")
            #expect(!error.description.contains("\n"))
        }
    }

    @Test func badFilesAreRefusedWithOneLine() throws {
        let good = MATWriter.syntheticSVHN(count: 4, seed: 1)
        let fixture = [UInt8](FileManager.default.contents(atPath: svhnFixtures + "/v5-compressed/train_32x32.mat")!)
        let v73 = [UInt8](FileManager.default.contents(atPath: svhnFixtures + "/v7.3/train_32x32.mat")!)
        // Control: the writer's good file is accepted.
        let folder = NSTemporaryDirectory() + "repro-svhn-good-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: folder + "/train_32x32.mat", contents: Data(MATWriter.svhn(good)))
        _ = FileManager.default.createFile(atPath: folder + "/test_32x32.mat", contents: Data(MATWriter.svhn(good)))
        #expect(try ImageDataset.load(.svhn, directory: folder).train.images == good.images)

        try Self.badInput("names", MATWriter.svhn(good, names: ("images", "y")), mentions: "no variable X")
        try Self.badInput("labelname", MATWriter.svhn(good, names: ("X", "labels")), mentions: "no variable y")
        try Self.badInput("dimensions", MATWriter.file([
            .init(name: "X", dimensions: [32, 32, 1, 12], values: .uint8([UInt8](repeating: 1, count: 32 * 32 * 12))),
            .init(name: "y", dimensions: [12, 1], values: .uint8([UInt8](repeating: 1, count: 12)))]), mentions: "X is 32×32×1×12")
        try Self.badInput("class", MATWriter.file([
            .init(name: "X", dimensions: [32, 32, 3, 1], values: .double([Double](repeating: 1, count: 3072))),
            .init(name: "y", dimensions: [1, 1], values: .uint8([1]))]), mentions: "X is of class double")
        try Self.badInput("label 11", MATWriter.file([
            .init(name: "X", dimensions: [32, 32, 3, 2], values: .uint8([UInt8](repeating: 1, count: 6144))),
            .init(name: "y", dimensions: [2, 1], values: .double([3, 11]))]), mentions: "label 11.0 at index 1 is outside 1...10")
        try Self.badInput("label 0", MATWriter.file([
            .init(name: "X", dimensions: [32, 32, 3, 1], values: .uint8([UInt8](repeating: 1, count: 3072))),
            .init(name: "y", dimensions: [1, 1], values: .uint8([0]))]), mentions: "label 0.0 at index 0")
        try Self.badInput("label count", MATWriter.file([
            .init(name: "X", dimensions: [32, 32, 3, 2], values: .uint8([UInt8](repeating: 1, count: 6144))),
            .init(name: "y", dimensions: [3, 1], values: .uint8([1, 2, 3]))]), mentions: "expected 2×1")
        try Self.badInput("truncated", Array(MATWriter.svhn(good).prefix(5000)), mentions: "truncated")
        try Self.badInput("truncated compressed", Array(fixture.prefix(fixture.count - 2000)), mentions: "truncated")
        var corrupt = fixture
        for i in 400..<460 { corrupt[i] ^= 0x5a }
        try Self.badInput("corrupt compressed block", corrupt, mentions: "compressed")
        try Self.badInput("not a MAT file", Array("X,y\n1,2\n".utf8) + [UInt8](repeating: 32, count: 200), mentions: "not a MAT file")
        try Self.badInput("truncated v7.3", Array(v73.prefix(3000)), mentions: "train_32x32.mat")
        try Self.badInput("short", [1, 2, 3], mentions: "too short")
    }
}
