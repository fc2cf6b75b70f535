import Foundation
import ReproBytes

/// Bad or missing input data: always names the file and what is wrong with it.
public struct DataError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One split of an image dataset as uint8 images (N × C × H × W, each channel row-major) and labels 0…9,
/// kept in memory as stored; the dataset's transform is applied per batch (`ImageDataset.batch`).
public struct ImageSplit: Sendable {
    public let images: [UInt8]
    public let labels: [UInt8]
    public let channels: Int, height: Int, width: Int

    /// MNIST's shape (1 × 28 × 28) unless said otherwise.
    public init(images: [UInt8], labels: [UInt8], channels: Int = 1, height: Int = 28, width: Int = 28) {
        precondition(images.count == labels.count * channels * height * width, "ImageSplit: image bytes do not match the label count")
        self.images = images
        self.labels = labels
        self.channels = channels
        self.height = height
        self.width = width
    }
    public var count: Int { labels.count }
    /// Bytes per image.
    public var pixels: Int { channels * height * width }
}

/// A dataset as the trainer sees it: which one, its training and test splits, and the fingerprint of each
/// file it came from. The trainer knows nothing else about it (`batch` applies the dataset's transform).
public struct ImageDataset: Sendable {
    public let name: DatasetName
    public let train: ImageSplit
    public let test: ImageSplit
    /// (file name, hex SHA-256 of its content), in `name.files` order.
    public let fingerprints: [(file: String, sha256: String)]

    public init(name: DatasetName, train: ImageSplit, test: ImageSplit, fingerprints: [(file: String, sha256: String)]) {
        self.name = name
        self.train = train
        self.test = test
        self.fingerprints = fingerprints
    }

    /// Loads `name` from `directory` (see `MNIST.load` and `SVHN.load` for the accepted layouts).
    public static func load(_ name: DatasetName, directory: String) throws(DataError) -> ImageDataset {
        switch name {
        case .mnist: return try MNIST.load(directory: directory)
        case .svhn: return try SVHN.load(directory: directory)
        }
    }
}

/// The datasets repro trains on.
public enum DatasetName: String, CaseIterable, Sendable {
    case mnist, svhn

    /// The files a dataset is loaded from, in load order (their SHA-256 go into every record).
    public var files: [String] {
        switch self {
        case .mnist: return [MNIST.files.trainImages, MNIST.files.trainLabels, MNIST.files.testImages, MNIST.files.testLabels]
        case .svhn: return [SVHN.files.train, SVHN.files.test]
        }
    }

    /// Where `repro record` looks by default.
    public var defaultDirectory: String { self == .mnist ? "Data/mnist" : "Data/svhn" }
}

/// The four IDX files of MNIST, validated, with the SHA-256 of each file's decompressed bytes.
public enum MNIST {
    public static let files = (trainImages: "train-images-idx3-ubyte", trainLabels: "train-labels-idx1-ubyte",
                        testImages: "t10k-images-idx3-ubyte", testLabels: "t10k-labels-idx1-ubyte")

    /// Loads from `directory`, accepting raw or gzip files either directly there or in torchvision's
    /// layout (`directory/MNIST/raw/`). Raw files win over .gz when both exist.
    public static func load(directory: String) throws(DataError) -> ImageDataset {
        var fingerprints = [(String, String)]()
        func load(_ base: String) throws(DataError) -> [UInt8] {
            let bytes = try readIDX(base: base, directory: directory)
            fingerprints.append((base, SHA256.hex(bytes)))
            return bytes
        }
        let train = try split(images: load(files.trainImages), labels: load(files.trainLabels),
                              imageFile: files.trainImages, labelFile: files.trainLabels)
        let test = try split(images: load(files.testImages), labels: load(files.testLabels),
                             imageFile: files.testImages, labelFile: files.testLabels)
        return ImageDataset(name: .mnist, train: train, test: test, fingerprints: fingerprints)
    }

    /// Finds and reads one file, decompressing gzip; returns the raw IDX bytes.
    static func readIDX(base: String, directory: String) throws(DataError) -> [UInt8] {
        let folders = [directory, directory + "/MNIST/raw"]
        let candidates = folders.flatMap { [$0 + "/" + base, $0 + "/" + base + ".gz"] }
        guard let path = candidates.first(where: { FileManager.default.isReadableFile(atPath: $0) }) else {
            var isDirectory: ObjCBool = false
            if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) || !isDirectory.boolValue {
                throw DataError("\(directory): data directory does not exist")
            }
            throw DataError("\(directory): no \(base) or \(base).gz here or in MNIST/raw/")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError("\(path): cannot read the file") }
        let bytes = [UInt8](data)
        guard path.hasSuffix(".gz") else { return bytes }
        return try gunzip(bytes, path: path)
    }

    static func gunzip(_ compressed: [UInt8], path: String) throws(DataError) -> [UInt8] {
        guard compressed.count >= 18, compressed[0] == 0x1f, compressed[1] == 0x8b else {
            throw DataError("\(path): not a gzip file (bad magic bytes)")
        }
        // ISIZE, the last four bytes: the uncompressed size mod 2^32. MNIST files are far below 4 GiB, and
        // the cap keeps a damaged trailer from asking for an absurd allocation.
        let n = compressed.count
        let size = Int(compressed[n - 4]) | Int(compressed[n - 3]) << 8 | Int(compressed[n - 2]) << 16 | Int(compressed[n - 1]) << 24
        guard size > 0, size <= 256 << 20 else { throw DataError("\(path): gzip trailer gives an implausible size (\(size) bytes)") }
        do { return try Gzip.decompress(compressed, expectedSize: size) }
        catch { throw DataError("\(path): \(error.description)") }
    }

    static func bigEndian32(_ b: [UInt8], _ offset: Int) -> Int {
        Int(b[offset]) << 24 | Int(b[offset + 1]) << 16 | Int(b[offset + 2]) << 8 | Int(b[offset + 3])
    }

    static let rows = 28, columns = 28

    static func split(images: [UInt8], labels: [UInt8], imageFile: String, labelFile: String) throws(DataError) -> ImageSplit {
        guard images.count >= 16, bigEndian32(images, 0) == 2051 else {
            throw DataError("\(imageFile): not an IDX image file (magic number is not 2051)")
        }
        let count = bigEndian32(images, 4), rows = bigEndian32(images, 8), columns = bigEndian32(images, 12)
        guard rows == Self.rows, columns == Self.columns else {
            throw DataError("\(imageFile): images are \(rows)×\(columns), expected 28×28")
        }
        guard images.count == 16 + count * rows * columns else {
            throw DataError("\(imageFile): \(images.count) bytes, but the header promises \(count) images (\(16 + count * rows * columns) bytes): truncated or padded")
        }
        guard labels.count >= 8, bigEndian32(labels, 0) == 2049 else {
            throw DataError("\(labelFile): not an IDX label file (magic number is not 2049)")
        }
        let labelCount = bigEndian32(labels, 4)
        guard labels.count == 8 + labelCount else {
            throw DataError("\(labelFile): \(labels.count) bytes, but the header promises \(labelCount) labels: truncated or padded")
        }
        guard labelCount == count else { throw DataError("\(labelFile): \(labelCount) labels for \(count) images in \(imageFile)") }
        let labelValues = Array(labels[8...])
        if let bad = labelValues.firstIndex(where: { $0 > 9 }) {
            throw DataError("\(labelFile): label \(labelValues[bad]) at index \(bad) is outside 0...9")
        }
        return ImageSplit(images: Array(images[16...]), labels: labelValues, channels: 1, height: rows, width: columns)
    }
}
