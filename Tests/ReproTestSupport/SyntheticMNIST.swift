import ReproData
import ReproNN

/// Seeded random images and labels in MNIST's shape, for tests that need data but not MNIST's content.
public enum SyntheticMNIST {
    public static func split(count: Int, seed: UInt64) -> ImageSplit {
        var rng = Philox(seed: seed, .testData)
        let images = (0..<(count * 784)).map { _ in UInt8(rng.nextBelow(256)) }
        let labels = (0..<count).map { _ in UInt8(rng.nextBelow(10)) }
        return ImageSplit(images: images, labels: labels)
    }
}
