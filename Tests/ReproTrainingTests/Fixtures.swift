import Foundation
import ReproData
import ReproTestSupport

/// A tiny MNIST-shaped dataset written as IDX files, so record tests run in seconds.
struct TinyMNIST {
    let directory: String

    /// `train` + `test` samples; gzip files unless `raw`.
    init(train: Int = 300, test: Int = 70, raw: Bool = false, name: String = #function) throws {
        directory = NSTemporaryDirectory() + "repro-tests-\(getpid())-\(name.filter(\.isLetter))-\(raw ? "raw" : "gz")"
        try? FileManager.default.removeItem(atPath: directory)
        try IDXWriter.write(train: SyntheticMNIST.split(count: train, seed: 1), test: SyntheticMNIST.split(count: test, seed: 3),
                            to: directory, gzip: !raw)
    }

    func path(_ file: String) -> String { directory + "/" + file }
}
