import ReproKernels

/// 2-d convolution, stride 1, no padding, with bias; weight [out, in, k, k] as in PyTorch.
/// Computed as im2col + GEMM on channel-major activations: the column matrix has one row per (c, ki, kj)
/// and one column per output position (n, oh, ow), so Y = W·cols lands directly in channel-major [out][N][OH][OW].
public final class Conv2d<T: KernelScalar> {
    public let inChannels: Int
    public let outChannels: Int
    public let kernelSize: Int
    public let weight: NamedTensor<T>
    public let bias: NamedTensor<T>
    @usableFromInline let kernels: any Kernels
    /// im2col of the last input, kept for the weight gradient (reused between steps).
    @usableFromInline var columns: [T] = []
    @usableFromInline var inputShape = (batch: 0, height: 0, width: 0)

    public init(_ name: String, inChannels: Int, outChannels: Int, kernelSize: Int, kernels: any Kernels) {
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
        let k = kernelSize, n = x.batch, h = x.height, w = x.width
        let oh = h - k + 1, ow = w - k + 1
        precondition(oh > 0 && ow > 0, "Conv2d input \(h)×\(w) is smaller than the kernel")
        let rows = inChannels * k * k, cols = n * oh * ow
        inputShape = (n, h, w)
        if columns.count != rows * cols { columns = [T](repeating: 0, count: rows * cols) }
        x.data.withUnsafeBufferPointer { src in columns.withUnsafeMutableBufferPointer { dst in
            for c in 0..<inChannels { for ki in 0..<k { for kj in 0..<k {
                let row = dst.baseAddress! + ((c * k + ki) * k + kj) * cols
                for img in 0..<n {
                    let plane = src.baseAddress! + (c * n + img) * h * w
                    for r in 0..<oh {
                        // Rows are short (28 or 10 values): an inline loop beats a memmove call.
                        let dstRow = row + (img * oh + r) * ow, srcRow = plane + (r + ki) * w + kj
                        for q in 0..<ow { dstRow[q] = srcRow[q] }
                    }
                }
            } } }
        } }
        var y = [T](repeating: 0, count: outChannels * cols)
        for o in 0..<outChannels { let b = bias.value[o]; for j in 0..<cols { y[o * cols + j] = b } }
        weight.value.withUnsafeBufferPointer { wp in columns.withUnsafeBufferPointer { cp in y.withUnsafeMutableBufferPointer { yp in
            kernels.gemm(.none, .none, m: outChannels, n: cols, k: rows, alpha: 1, a: wp.baseAddress!, lda: rows,
                         b: cp.baseAddress!, ldb: cols, beta: 1, c: yp.baseAddress!, ldc: cols)
        } } }
        return FeatureMap(channels: outChannels, batch: n, height: oh, width: ow, data: y)
    }

    /// Fills weight.grad and bias.grad; returns ∂L/∂x unless `inputGradient` is false (the first layer's
    /// input is data, so its gradient would be wasted work).
    @inlinable
    public func backward(_ dy: FeatureMap<T>, inputGradient: Bool = true) -> FeatureMap<T>? {
        let k = kernelSize, (n, h, w) = inputShape
        let oh = h - k + 1, ow = w - k + 1
        let rows = inChannels * k * k, cols = n * oh * ow
        precondition(dy.data.count == outChannels * cols)
        dy.data.withUnsafeBufferPointer { g in
            for o in 0..<outChannels {
                bias.grad[o] = kernels.sum(UnsafeBufferPointer(rebasing: g[(o * cols)..<((o + 1) * cols)]))
            }
            columns.withUnsafeBufferPointer { cp in weight.grad.withUnsafeMutableBufferPointer { dw in
                kernels.gemm(.none, .transposed, m: outChannels, n: rows, k: cols, alpha: 1, a: g.baseAddress!, lda: cols,
                             b: cp.baseAddress!, ldb: cols, beta: 0, c: dw.baseAddress!, ldc: rows)
            } }
        }
        guard inputGradient else { return nil }
        var dcols = [T](repeating: 0, count: rows * cols)
        weight.value.withUnsafeBufferPointer { wp in dy.data.withUnsafeBufferPointer { g in dcols.withUnsafeMutableBufferPointer { d in
            kernels.gemm(.transposed, .none, m: rows, n: cols, k: outChannels, alpha: 1, a: wp.baseAddress!, lda: rows,
                         b: g.baseAddress!, ldb: cols, beta: 0, c: d.baseAddress!, ldc: cols)
        } } }
        // col2im: scatter-add in a fixed order (c, ki, kj, n, r, col), so the sums never depend on scheduling.
        var dx = [T](repeating: 0, count: inChannels * n * h * w)
        dcols.withUnsafeBufferPointer { src in dx.withUnsafeMutableBufferPointer { dst in
            for c in 0..<inChannels { for ki in 0..<k { for kj in 0..<k {
                let row = src.baseAddress! + ((c * k + ki) * k + kj) * cols
                for img in 0..<n {
                    let plane = dst.baseAddress! + (c * n + img) * h * w
                    for r in 0..<oh {
                        let out = plane + (r + ki) * w + kj, inp = row + (img * oh + r) * ow
                        for q in 0..<ow { out[q] += inp[q] }
                    }
                }
            } } }
        } }
        return FeatureMap(channels: inChannels, batch: n, height: h, width: w, data: dx)
    }
}
