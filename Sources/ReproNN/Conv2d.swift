import ReproKernels

/// 2-d convolution, stride 1, no padding, with bias; weight [out, in, k, k] as in PyTorch.
/// Computed by the kernels' convolution (`Kernels.convolutionForward`): im2col + GEMM on channel-major
/// activations, whose column matrix has one row per (c, ki, kj) and one column per output position
/// (n, oh, ow), so Y = W·cols lands directly in channel-major [out][N][OH][OW].
public final class Conv2d<T: KernelScalar> {
    /// The layer's name in the model ("conv1"): its parameters' prefix and its place in the trace.
    public let name: String
    public let inChannels: Int
    public let outChannels: Int
    public let kernelSize: Int
    public let weight: NamedTensor<T>
    public let bias: NamedTensor<T>
    @usableFromInline let kernels: any Kernels
    /// The kernels' workspace from forward to weight gradient (the whole-batch column matrix, or nothing).
    @usableFromInline var columns: [T] = []
    /// The last input, for the weight gradient (shared with the caller's array, not copied).
    @usableFromInline var input: FeatureMap<T>?

    public init(_ name: String, inChannels: Int, outChannels: Int, kernelSize: Int, kernels: any Kernels) {
        self.name = name
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelSize = kernelSize
        self.kernels = kernels
        let fan = inChannels * kernelSize * kernelSize
        weight = NamedTensor(name: "\(name).weight", shape: [outChannels, inChannels, kernelSize, kernelSize],
                             isParameter: true, value: [T](repeating: 0, count: outChannels * fan))
        bias = NamedTensor(name: "\(name).bias", shape: [outChannels], isParameter: true,
                           value: [T](repeating: 0, count: outChannels))
    }

    public var parameters: [NamedTensor<T>] { [weight, bias] }

    @inlinable
    public func forward(_ x: FeatureMap<T>) -> FeatureMap<T> {
        precondition(x.channels == inChannels, "Conv2d expects \(inChannels) channels, got \(x.channels)")
        precondition(x.height >= kernelSize && x.width >= kernelSize, "Conv2d input \(x.height)×\(x.width) is smaller than the kernel")
        let s = shape(x)
        input = x
        var y = [T](overwrittenCount: outChannels * s.columns)  // the kernels write every output
        x.data.withUnsafeBufferPointer { xp in weight.value.withUnsafeBufferPointer { wp in bias.value.withUnsafeBufferPointer { bp in
            y.withUnsafeMutableBufferPointer { yp in
                kernels.convolutionForward(s, input: xp.baseAddress!, weight: wp.baseAddress!, bias: bp.baseAddress!,
                                           output: yp.baseAddress!, columns: &columns)
            }
        } } }
        return FeatureMap(channels: outChannels, batch: x.batch, height: s.outHeight, width: s.outWidth, data: y)
    }

    @inlinable
    func shape(_ x: FeatureMap<T>) -> ConvolutionShape {
        ConvolutionShape(inChannels: inChannels, batch: x.batch, height: x.height, width: x.width, kernelSize: kernelSize,
                         outChannels: outChannels)
    }

    /// Fills weight.grad and bias.grad; returns ∂L/∂x unless `inputGradient` is false (the first layer's
    /// input is data, so its gradient would be wasted work).
    @inlinable
    public func backward(_ dy: FeatureMap<T>, inputGradient: Bool = true) -> FeatureMap<T>? {
        parameterGradients(dy)
        return inputGradient ? self.inputGradient(dy) : nil
    }

    /// Fills weight.grad and bias.grad from ∂L/∂y.
    @inlinable
    public func parameterGradients(_ dy: FeatureMap<T>) {
        guard let x = input else { preconditionFailure("Conv2d.backward before forward") }
        let s = shape(x), cols = s.columns
        precondition(dy.data.count == outChannels * cols)
        dy.data.withUnsafeBufferPointer { g in
            // Each channel's sum whole on one thread (the same bits for any count); conv1's are 100,352 terms.
            bias.grad.withUnsafeMutableBufferPointer { db in
                nonisolated(unsafe) let db = db, g = g
                let kernels = kernels
                Parallel.forEach(outChannels, threads: kernels.threads, minimumPerPart: max(1, 16_384 / max(1, cols))) { channels in
                    for o in channels { db[o] = kernels.sum(UnsafeBufferPointer(rebasing: g[(o * cols)..<((o + 1) * cols)])) }
                }
            }
            x.data.withUnsafeBufferPointer { xp in weight.grad.withUnsafeMutableBufferPointer { dw in
                kernels.convolutionWeightGradient(s, input: xp.baseAddress!, outputGradient: g.baseAddress!,
                                                  weightGradient: dw.baseAddress!, columns: &columns)
            } }
        }
    }

    /// ∂L/∂x from ∂L/∂y.
    @inlinable
    public func inputGradient(_ dy: FeatureMap<T>) -> FeatureMap<T> {
        guard let x = input else { preconditionFailure("Conv2d.backward before forward") }
        let s = shape(x), n = x.batch, h = x.height, w = x.width
        precondition(dy.data.count == outChannels * s.columns)
        var dx = [T](overwrittenCount: inChannels * n * h * w)  // the kernels zero it before summing into it
        weight.value.withUnsafeBufferPointer { wp in dy.data.withUnsafeBufferPointer { g in dx.withUnsafeMutableBufferPointer { d in
            kernels.convolutionInputGradient(s, weight: wp.baseAddress!, outputGradient: g.baseAddress!, inputGradient: d.baseAddress!)
        } } }
        return FeatureMap(channels: inChannels, batch: n, height: h, width: w, data: dx)
    }
}
