import ReproKernels

/// A named tensor of the model's state_dict: a parameter (has a gradient) or a buffer (has none).
/// Names and shapes are PyTorch's for the notebook's model, so a record loads with load_state_dict.
public final class NamedTensor<T: KernelScalar> {
    public let name: String
    public let shape: [Int]
    public let isParameter: Bool
    public var value: [T]
    /// Gradient of the last backward pass (overwritten, not accumulated); empty for buffers.
    public var grad: [T]

    public init(name: String, shape: [Int], isParameter: Bool, value: [T]) {
        precondition(shape.reduce(1, *) == value.count, "\(name): shape \(shape) does not match \(value.count) values")
        self.name = name
        self.shape = shape
        self.isParameter = isParameter
        self.value = value
        self.grad = isParameter ? [T](repeating: 0, count: value.count) : []
    }

    public var count: Int { value.count }
}

/// Activations in channel-major layout [C][N][H][W] (fully connected layers: [features][N], H = W = 1).
/// Channel-major keeps each channel's batch contiguous, which is what BatchNorm reduces over and what a
/// convolution-as-GEMM produces; `fromSampleMajor` converts from PyTorch's NCHW at the edges.
public struct FeatureMap<T: KernelScalar> {
    public var channels: Int
    public var batch: Int
    public var height: Int
    public var width: Int
    public var data: [T]

    public init(channels: Int, batch: Int, height: Int = 1, width: Int = 1, data: [T]) {
        precondition(data.count == channels * batch * height * width)
        self.channels = channels; self.batch = batch; self.height = height; self.width = width
        self.data = data
    }

    /// Elements per channel: what BatchNorm averages over.
    public var perChannel: Int { batch * height * width }
    public var spatial: Int { height * width }

    /// From PyTorch's NCHW (or (N, C) for 1-d) order.
    public static func fromSampleMajor(_ x: [T], batch: Int, channels: Int, height: Int = 1, width: Int = 1) -> FeatureMap {
        let hw = height * width
        var out = [T](repeating: 0, count: x.count)
        for n in 0..<batch { for c in 0..<channels { for s in 0..<hw {
            out[(c * batch + n) * hw + s] = x[(n * channels + c) * hw + s]
        } } }
        return FeatureMap(channels: channels, batch: batch, height: height, width: width, data: out)
    }
}

extension Array where Element: KernelScalar {
    /// An array the caller fills completely before reading it: skips zero-filling activations that are
    /// overwritten anyway (a serial memset of up to 2.4 MB each, several per step).
    @inlinable
    init(overwrittenCount count: Int) {
        self.init(unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }
}
