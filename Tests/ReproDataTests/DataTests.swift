import Foundation
import Testing
import ReproData
import ReproTestSupport
import ReproNN

@Suite struct DataTests {
    @Test func gzipAndRawLoadTheSameBytes() throws {
        let gz = try MNIST.load(directory: TinyMNIST(raw: false).directory)
        let raw = try MNIST.load(directory: TinyMNIST(raw: true).directory)
        #expect(gz.train.images == raw.train.images && gz.test.labels == raw.test.labels)
        #expect(gz.fingerprints.map(\.sha256) == raw.fingerprints.map(\.sha256))
        #expect(gz.train.count == 300 && gz.test.count == 70)
    }

    @Test func torchvisionLayoutIsFound() throws {
        let tiny = try TinyMNIST()
        let nested = tiny.directory + "-tv"
        try? FileManager.default.removeItem(atPath: nested)
        try FileManager.default.createDirectory(atPath: nested + "/MNIST", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: tiny.directory, toPath: nested + "/MNIST/raw")
        #expect(try MNIST.load(directory: nested).train.count == 300)
    }

    /// Each kind of damage is refused with a message naming the file.
    @Test func damagedFilesAreRefusedByName() throws {
        func expectError(_ mutate: (TinyMNIST) throws -> Void, mentions: String, file: String) throws {
            let tiny = try TinyMNIST(raw: true, name: mentions)
            try mutate(tiny)
            do {
                _ = try MNIST.load(directory: tiny.directory)
                Issue.record("expected an error mentioning \(mentions)")
            } catch {
                #expect(error.description.contains(file), "\(error.description)")
                #expect(error.description.contains(mentions), "\(error.description)")
            }
        }
        let images = "train-images-idx3-ubyte", labels = "train-labels-idx1-ubyte"
        try expectError({ t in try FileManager.default.removeItem(atPath: t.path(labels)) }, mentions: "no train-labels", file: labels)
        try expectError({ t in
            let d = FileManager.default.contents(atPath: t.path(images))!
            _ = FileManager.default.createFile(atPath: t.path(images), contents: d.prefix(d.count - 100))
        }, mentions: "truncated", file: images)
        try expectError({ t in
            var d = [UInt8](FileManager.default.contents(atPath: t.path(images))!)
            d[3] = 1
            _ = FileManager.default.createFile(atPath: t.path(images), contents: Data(d))
        }, mentions: "magic", file: images)
        try expectError({ t in
            var d = [UInt8](FileManager.default.contents(atPath: t.path(labels))!)
            d[20] = 11
            _ = FileManager.default.createFile(atPath: t.path(labels), contents: Data(d))
        }, mentions: "outside 0...9", file: labels)
        try expectError({ t in
            _ = FileManager.default.createFile(atPath: t.path(images), contents: Data(IDXWriter.imageFile(SyntheticMNIST.split(count: 299, seed: 1).images, count: 299)))
        }, mentions: "299 images", file: labels)
    }

    @Test func damagedGzipIsRefused() throws {
        let tiny = try TinyMNIST(raw: false)
        let path = tiny.path("t10k-images-idx3-ubyte.gz")
        var d = [UInt8](FileManager.default.contents(atPath: path)!)
        for i in 30..<60 { d[i] ^= 0x5a }
        _ = FileManager.default.createFile(atPath: path, contents: Data(d))
        #expect(throws: DataError.self) { try MNIST.load(directory: tiny.directory) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(d.prefix(d.count / 2)))
        #expect(throws: DataError.self) { try MNIST.load(directory: tiny.directory) }
    }

    @Test func transformIsTheNotebooks() throws {
        let data = try MNIST.load(directory: TinyMNIST().directory)
        let (x, labels) = data.batch(data.train, indices: [Int32(5), 2])
        #expect(labels == [Int(data.train.labels[5]), Int(data.train.labels[2])])
        #expect(x.channels == 3 && x.batch == 2 && x.height == 32)
        // Padding is −1, pixel (r, c) lands at (r + 2, c + 2) in all three channels, value (p/255 − 0.5)/0.5.
        let p = data.train.images[5 * 784 + 3 * 28 + 7]
        for channel in 0..<3 {
            #expect(x.data[(channel * 2 + 0) * 1024 + 0] == -1)
            #expect(x.data[(channel * 2 + 0) * 1024 + 5 * 32 + 9] == (Float(p) / 255 - 0.5) / 0.5)
        }
    }

    @Test func splitAndEpochOrdersAreTheNotebooks() {
        let split = DataOrder.trainValidationSplit(count: 60000, seed: 0)
        #expect(split.train.count == 48001 && split.validation.count == 11999)
        #expect(Set(split.train + split.validation).count == 60000)
        let e0 = DataOrder.epochOrder(trainIndices: split.train, epoch: 0, seed: 0)
        let e1 = DataOrder.epochOrder(trainIndices: split.train, epoch: 1, seed: 0)
        #expect(Set(e0) == Set(split.train) && e0 != e1)
        #expect(DataOrder.trainValidationSplit(count: 60000, seed: 1).train != split.train)
    }
}
