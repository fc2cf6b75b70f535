import Foundation
import ReproData

/// A tiny MNIST-shaped dataset written as IDX files, so record tests run in seconds.
public struct TinyMNIST {
    public let directory: String

    /// `train` + `test` samples; gzip files unless `raw`.
    public init(train: Int = 300, test: Int = 70, raw: Bool = false, name: String = #function) throws {
        directory = NSTemporaryDirectory() + "repro-tests-\(getpid())-\(name.filter(\.isLetter))-\(raw ? "raw" : "gz")"
        try? FileManager.default.removeItem(atPath: directory)
        try IDXWriter.write(train: SyntheticMNIST.split(count: train, seed: 1), test: SyntheticMNIST.split(count: test, seed: 3),
                            to: directory, gzip: !raw)
    }

    public func path(_ file: String) -> String { directory + "/" + file }
}

/// The goldens committed in `Golden/`, found from this file's place in the repository.
public enum CommittedGoldens {
    public static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Golden")
    /// The short goldens (256 steps, complete profile) and the full-length ones (golden profile).
    public static let mnistBN = folder.appendingPathComponent("mnist_bn.h5").path
    public static let mnist = folder.appendingPathComponent("mnist.h5").path
    public static let mnistBNFull = folder.appendingPathComponent("mnist_bn_full.h5").path
    public static let mnistFull = folder.appendingPathComponent("mnist_full.h5").path
}
