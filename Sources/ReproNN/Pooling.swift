import ReproKernels

/// ReLU: y = max(x, 0); the gradient at exactly 0 is 0 (PyTorch's threshold_backward).
public final class ReLU<T: KernelScalar> {
    @usableFromInline var output: [T] = []
    public init() {}

    @inlinable
    public func forward(_ x: FeatureMap<T>) -> FeatureMap<T> {
        var y = x
        y.data.withUnsafeMutableBufferPointer { p in
            for i in p.indices where !(p[i] > T.zero) && !p[i].isNaN { p[i] = T.zero }
        }
        output = y.data
        return y
    }

    @inlinable
    public func backward(_ dy: FeatureMap<T>) -> FeatureMap<T> {
        var dx = dy
        dx.data.withUnsafeMutableBufferPointer { d in output.withUnsafeBufferPointer { o in
            for i in d.indices where !(o[i] > T.zero) { d[i] = T.zero }
        } }
        return dx
    }
}

/// Max-pool 2×2, stride 2, floor mode (PyTorch's max_pool2d(kernel_size=2)). Window order is
/// (0,0), (0,1), (1,0), (1,1); on ties the gradient goes to the FIRST maximum in that order, and a NaN
/// wins its window, as in PyTorch's CPU kernel.
public final class MaxPool2x2<T: KernelScalar> {
    @usableFromInline var argmax: [UInt8] = []
    @usableFromInline var inputShape = (channels: 0, batch: 0, height: 0, width: 0)
    public init() {}

    @inlinable
    public func forward(_ x: FeatureMap<T>) -> FeatureMap<T> {
        let h = x.height, w = x.width, oh = h / 2, ow = w / 2
        let planes = x.channels * x.batch
        inputShape = (x.channels, x.batch, h, w)
        var y = [T](repeating: 0, count: planes * oh * ow)
        if argmax.count != y.count { argmax = [UInt8](repeating: 0, count: y.count) }
        x.data.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in argmax.withUnsafeMutableBufferPointer { ap in
            for p in 0..<planes {
                let src = xp.baseAddress! + p * h * w
                for r in 0..<oh { for q in 0..<ow {
                    let top = src + 2 * r * w + 2 * q
                    var best = top[0], at: UInt8 = 0
                    let rest = (top[1], top[w], top[w + 1])
                    if rest.0 > best || rest.0.isNaN && !best.isNaN { best = rest.0; at = 1 }
                    if rest.1 > best || rest.1.isNaN && !best.isNaN { best = rest.1; at = 2 }
                    if rest.2 > best || rest.2.isNaN && !best.isNaN { best = rest.2; at = 3 }
                    let o = (p * oh + r) * ow + q
                    yp[o] = best
                    ap[o] = at
                } }
            }
        } } }
        return FeatureMap(channels: x.channels, batch: x.batch, height: oh, width: ow, data: y)
    }

    @inlinable
    public func backward(_ dy: FeatureMap<T>) -> FeatureMap<T> {
        let (c, n, h, w) = inputShape
        let oh = h / 2, ow = w / 2
        var dx = [T](repeating: 0, count: c * n * h * w)
        dy.data.withUnsafeBufferPointer { g in argmax.withUnsafeBufferPointer { ap in dx.withUnsafeMutableBufferPointer { dp in
            for p in 0..<(c * n) { for r in 0..<oh { for q in 0..<ow {
                let o = (p * oh + r) * ow + q
                let a = Int(ap[o])
                dp[p * h * w + (2 * r + a / 2) * w + 2 * q + a % 2] = g[o]
            } } }
        } } }
        return FeatureMap(channels: c, batch: n, height: h, width: w, data: dx)
    }
}
