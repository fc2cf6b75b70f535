import ReproKernels
import ReproNN

/// The notebook's split and loaders, as index lists.
public enum DataOrder {
    /// torch.utils.data.random_split with lengths [int(0.8·n + 1), rest]: a seeded permutation of 0..<n,
    /// the first part training, the rest validation.
    public static func trainValidationSplit(count n: Int, seed: UInt64) -> (train: [Int32], validation: [Int32]) {
        let trainCount = trainCount(of: n)
        var rng = Philox(seed: seed, .split)
        let permutation = rng.permutation(n)
        return (Array(permutation[..<trainCount]), Array(permutation[trainCount...]))
    }

    /// The notebook's training share of n samples, int(0.8·n + 1) (Python's int() truncates).
    public static func trainCount(of n: Int) -> Int { Int(Double(n) * 0.8 + 1) }

    /// One epoch's order of the training set: a fresh permutation per epoch from the shuffle stream
    /// (substream = epoch), mapped to dataset indices. Batches are consecutive runs of it, last partial
    /// batch dropped (drop_last=True).
    public static func epochOrder(trainIndices: [Int32], epoch: Int, seed: UInt64) -> [Int32] {
        var rng = Philox(seed: seed, .shuffle, substream: UInt32(epoch))
        return rng.permutation(trainIndices.count).map { trainIndices[Int($0)] }
    }
}

extension ImageDataset {
    /// The notebook's transform of this dataset applied to a batch, channel-major [3][N][32][32] float32:
    /// ToTensor (pixel/255), then for MNIST pad 2 zeros on every side (28→32) and repeat to 3 channels, then
    /// Normalize(0.5, 0.5): (x − 0.5)/0.5, all in float32 as torchvision computes it. SVHN is 3×32×32 as stored.
    /// Threads take whole images (each value is a table look-up or a copy: the same bits for any count).
    public func batch(_ split: ImageSplit, indices: some Collection<Int32>, threads: Int = 1) -> (x: FeatureMap<Float>, labels: [Int]) {
        let size = ImageTransform.size, order = Array(indices)
        let n = order.count, plane = size * size
        let padding = (size - split.height) / 2
        let table = ImageTransform.table
        // A padded border normalizes to (0 − 0.5)/0.5 = −1.
        var data = [Float](repeating: -1, count: 3 * n * plane)
        let labels = order.map { Int(split.labels[Int($0)]) }
        let (height, width, pixels, channels) = (split.height, split.width, split.pixels, split.channels)
        split.images.withUnsafeBufferPointer { images in data.withUnsafeMutableBufferPointer { out in table.withUnsafeBufferPointer { table in
            nonisolated(unsafe) let images = images.baseAddress!, out = out.baseAddress!, table = table.baseAddress!
            Parallel.forEach(n, threads: threads, minimumPerPart: 16) { range in
                for j in range {
                    let source = images + Int(order[j]) * pixels
                    for channel in 0..<3 {
                        let target = out + (channel * n + j) * plane + padding * size + padding
                        // A one-channel image is repeated into all three: the first channel's plane, copied.
                        if channels == 1 && channel > 0 {
                            target.update(from: out + j * plane + padding * size + padding, count: (height - 1) * size + width)
                            continue
                        }
                        let image = source + channel * height * width
                        for r in 0..<height {
                            for c in 0..<width { target[r * size + c] = table[Int(image[r * width + c])] }
                        }
                    }
                }
            }
        } } }
        return (FeatureMap(channels: 3, batch: n, height: size, width: size, data: data), labels)
    }
}

/// What every dataset's transform shares.
public enum ImageTransform {
    /// The model's input size.
    public static let size = 32
    /// Every possible pixel value, transformed once with the same float ops the per-pixel formula does.
    static let table: [Float] = (0...255).map { (Float($0) / 255 - 0.5) / 0.5 }
}
