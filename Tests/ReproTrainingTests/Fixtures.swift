import CompressNIO
import Foundation
import NIOCore
import ReproNN

/// A tiny MNIST-shaped dataset written as IDX files, so record tests run in seconds.
struct TinyMNIST {
    let directory: String

    static func idxImages(count: Int, seed: UInt64) -> [UInt8] {
        var rng = Philox(seed: seed, .testData)
        var bytes: [UInt8] = [0, 0, 8, 3]
        for v in [count, 28, 28] { bytes += withUnsafeBytes(of: UInt32(v).bigEndian) { Array($0) } }
        bytes += (0..<(count * 784)).map { _ in UInt8(rng.nextBelow(256)) }
        return bytes
    }

    static func idxLabels(count: Int, seed: UInt64) -> [UInt8] {
        var rng = Philox(seed: seed, .testData, substream: 1)
        var bytes: [UInt8] = [0, 0, 8, 1]
        bytes += withUnsafeBytes(of: UInt32(count).bigEndian) { Array($0) }
        bytes += (0..<count).map { _ in UInt8(rng.nextBelow(10)) }
        return bytes
    }

    static func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        var buffer = ByteBuffer(bytes: bytes)
        var out = try buffer.compress(with: .gzip())
        return out.readBytes(length: out.readableBytes)!
    }

    /// `train` + `test` samples; gzip files unless `raw`.
    init(train: Int = 300, test: Int = 70, raw: Bool = false, name: String = #function) throws {
        directory = NSTemporaryDirectory() + "repro-tests-\(getpid())-\(name.filter(\.isLetter))-\(raw ? "raw" : "gz")"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let files = [("train-images-idx3-ubyte", Self.idxImages(count: train, seed: 1)),
                     ("train-labels-idx1-ubyte", Self.idxLabels(count: train, seed: 2)),
                     ("t10k-images-idx3-ubyte", Self.idxImages(count: test, seed: 3)),
                     ("t10k-labels-idx1-ubyte", Self.idxLabels(count: test, seed: 4))]
        for (name, bytes) in files {
            let path = directory + "/" + name + (raw ? "" : ".gz")
            FileManager.default.createFile(atPath: path, contents: Data(raw ? bytes : try Self.gzip(bytes)))
        }
    }

    func path(_ file: String) -> String { directory + "/" + file }
}
