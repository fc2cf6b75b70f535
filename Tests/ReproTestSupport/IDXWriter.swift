import Foundation
import ReproBytes
import ReproData

/// Writes MNIST-layout IDX files (optionally gzip-compressed): for subsets, synthetic test data and
/// deliberately altered copies (the verify sensitivity tests change one label this way).
public enum IDXWriter {
    public static func imageFile(_ images: [UInt8], count: Int) -> [UInt8] {
        precondition(images.count == count * 784)
        var bytes: [UInt8] = [0, 0, 8, 3]
        for v in [count, 28, 28] { bytes += withUnsafeBytes(of: UInt32(v).bigEndian) { Array($0) } }
        return bytes + images
    }

    public static func labelFile(_ labels: [UInt8]) -> [UInt8] {
        [0, 0, 8, 1] + withUnsafeBytes(of: UInt32(labels.count).bigEndian) { Array($0) } + labels
    }

    /// Writes the four files of `train` and `test` into `directory` (created if missing).
    public static func write(train: ImageSplit, test: ImageSplit, to directory: String, gzip: Bool) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let files = [(MNIST.files.trainImages, imageFile(train.images, count: train.count)),
                     (MNIST.files.trainLabels, labelFile(train.labels)),
                     (MNIST.files.testImages, imageFile(test.images, count: test.count)),
                     (MNIST.files.testLabels, labelFile(test.labels))]
        for (name, bytes) in files {
            var data = bytes
            if gzip { data = Gzip.compress(bytes) }
            let path = directory + "/" + name + (gzip ? ".gz" : "")
            guard FileManager.default.createFile(atPath: path, contents: Data(data)) else {
                throw DataError("\(path): cannot write the file")
            }
        }
    }
}
