import ReproKernels

/// ReLU: y = max(x, 0), NaN passing through; the gradient is 0 where y ≤ 0 (exactly 0 included) and passes
/// elsewhere, NaN included (PyTorch's threshold_backward).
/// Both directions work in place: activations of this size are not worth a copy.
public final class ReLU<T: KernelScalar> {
    @usableFromInline var output: [T] = []
    public init() {}

    @inlinable
    public func forward(_ x: inout FeatureMap<T>) {
        x.data.withUnsafeMutableBufferPointer { p in
            // Swift.max(v, 0) is `0 >= v ? 0 : v`: NaN stays NaN, as in torch.relu.
            for i in 0..<p.count { p[i] = Swift.max(p[i], T.zero) }
        }
        output = x.data
    }

    @inlinable
    public func backward(_ dy: inout FeatureMap<T>) {
        dy.data.withUnsafeMutableBufferPointer { d in output.withUnsafeBufferPointer { o in
            // `o <= 0 ? 0 : d` as PyTorch's threshold_backward: a NaN output passes its gradient through.
            // Written as a select on values (no SIMDMask API, which compiles to a per-lane loop), so it vectorizes.
            for i in 0..<d.count { d[i] = o[i] <= T.zero ? T.zero : d[i] }
        } }
    }
}

/// Max-pool 2×2, stride 2, floor mode (PyTorch's max_pool2d(kernel_size=2)). Window order is
/// (0,0), (0,1), (1,0), (1,1); an element replaces the running maximum when it is larger or NaN, as in
/// PyTorch's CPU kernel, so on ties the gradient goes to the FIRST maximum in that order.
/// Threads take whole planes (c, n); the choices are selects, not branches (a branch on random data is
/// mispredicted half the time: 1.8 ms for pool1 with branches).
public final class MaxPool2x2<T: KernelScalar> {
    @usableFromInline var argmax: [UInt8] = []
    @usableFromInline var inputShape = (channels: 0, batch: 0, height: 0, width: 0)
    @usableFromInline let threads: Int
    public init(threads: Int = 1) { self.threads = max(1, threads) }

    @inlinable
    public func forward(_ x: FeatureMap<T>) -> FeatureMap<T> {
        let h = x.height, w = x.width, oh = h / 2, ow = w / 2
        let planes = x.channels * x.batch
        inputShape = (x.channels, x.batch, h, w)
        var y = [T](repeating: 0, count: planes * oh * ow)
        if argmax.count != y.count { argmax = [UInt8](repeating: 0, count: y.count) }
        x.data.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in argmax.withUnsafeMutableBufferPointer { ap in
            // Parts write disjoint planes of y and argmax.
            nonisolated(unsafe) let xs = xp.baseAddress!, ys = yp.baseAddress!, As = ap.baseAddress!
            Parallel.forEach(planes, threads: threads, minimumPerPart: 16) { range in
                for p in range {
                    let src = xs + p * h * w
                    for r in 0..<oh { for q in 0..<ow {
                        let top = src + 2 * r * w + 2 * q
                        var best = top[0], at: UInt8 = 0
                        let v1 = top[1], v2 = top[w], v3 = top[w + 1]
                        let take1 = v1 > best || v1 != v1
                        best = take1 ? v1 : best; at = take1 ? 1 : at
                        let take2 = v2 > best || v2 != v2
                        best = take2 ? v2 : best; at = take2 ? 2 : at
                        let take3 = v3 > best || v3 != v3
                        best = take3 ? v3 : best; at = take3 ? 3 : at
                        let o = (p * oh + r) * ow + q
                        ys[o] = best
                        As[o] = at
                    } }
                }
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
            nonisolated(unsafe) let gs = g.baseAddress!, As = ap.baseAddress!, ds = dp.baseAddress!
            Parallel.forEach(c * n, threads: threads, minimumPerPart: 16) { range in
                for p in range { for r in 0..<oh { for q in 0..<ow {
                    let o = (p * oh + r) * ow + q
                    let a = Int(As[o])
                    ds[p * h * w + (2 * r + a / 2) * w + 2 * q + a % 2] = gs[o]
                } } }
            }
        } } }
        return FeatureMap(channels: c, batch: n, height: h, width: w, data: dx)
    }
}
