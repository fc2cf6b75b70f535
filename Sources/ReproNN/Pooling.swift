import ReproKernels

/// ReLU: y = max(x, 0), NaN passing through; the gradient is 0 where y ≤ 0 (exactly 0 included) and passes
/// elsewhere, NaN included (PyTorch's threshold_backward).
/// Both directions work in place: activations of this size are not worth a copy.
public final class ReLU<T: KernelScalar> {
    @usableFromInline var output: [T] = []
    /// The layer's name in the model ("relu1"): its place in the trace.
    public let name: String
    public init(_ name: String = "relu") { self.name = name }

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
    /// The layer's name in the model ("pool1"): its place in the trace.
    public let name: String
    public init(_ name: String = "pool", threads: Int = 1) {
        self.name = name
        self.threads = max(1, threads)
    }

    @inlinable
    public func forward(_ x: FeatureMap<T>) -> FeatureMap<T> { forward(x, activation: nil) }

    /// The pool of a BatchNorm layer's unstored output: each value y = max(x̂·γ + β, 0) formed as it is loaded
    /// (`affineReLU`), the same bits as pooling the stored output.
    @inlinable
    public func forward(_ a: NormalizedOutput<T>) -> FeatureMap<T> {
        forward(a.normalized, activation: (a.gamma, a.beta, a.affine))
    }

    @inlinable
    func forward(_ x: FeatureMap<T>, activation: (gamma: [T], beta: [T], affine: Bool)?) -> FeatureMap<T> {
        let h = x.height, w = x.width, oh = h / 2, ow = w / 2
        let planes = x.channels * x.batch, total = x.data.count, batch = x.batch
        // Plain values, not an optional struct per plane: that kept generic metadata look-ups in the loop.
        let activated = activation != nil, affine = activation?.affine ?? false
        let gammas = activation?.gamma ?? [], betas = activation?.beta ?? []
        inputShape = (x.channels, x.batch, h, w)
        var y = [T](overwrittenCount: planes * oh * ow)
        if argmax.count != y.count { argmax = [UInt8](repeating: 0, count: y.count) }
        x.data.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in argmax.withUnsafeMutableBufferPointer { ap in
            // Parts write disjoint planes of y and argmax.
            nonisolated(unsafe) let xs = xp.baseAddress!, ys = yp.baseAddress!, As = ap.baseAddress!
            Parallel.forEach(planes, threads: threads, minimumPerPart: 16) { range in
                for p in range {
                    let src = xs + p * h * w
                    // Plane p is image p mod N of channel p / N.
                    let act = activated ? Activation(gamma: gammas[p / batch], beta: betas[p / batch], affine: affine, on: true)
                                        : Activation(gamma: 1, beta: 0, affine: false, on: false)
                    for r in 0..<oh {
                        let top = src + 2 * r * w, out = ys + (p * oh + r) * ow, outArg = As + (p * oh + r) * ow
                        // Eight outputs at a time; a last block overlapping the previous one recomputes the same
                        // values, so every width ≥ 8 is covered without a scalar tail.
                        if ow >= 8 {
                            var q = 0
                            while true {
                                Self.pool8(top + 2 * q, rowLength: w, activation: act, into: out + q, argmax: outArg + q)
                                if q == ow - 8 { break }
                                q = Swift.min(q + 8, ow - 8)
                            }
                        } else if ow >= 4 && T.self == Float.self && (p * h + 2 * r + 1) * w + 16 <= total
                                    && (r + 1 < oh || p + 1 < range.upperBound) {
                            // Short rows (pool2: 5 outputs): eight lanes computed and stored; the lanes past the
                            // row read the next row (or plane) and land on the next row's outputs (of this plane
                            // or of the part's next plane), which that row overwrites next. The part's last row
                            // takes the window-by-window path below (the same comparisons): extracting lanes
                            // from the vectors here made the compiler keep them on the stack on every row.
                            let (values, indices) = maxPool8Lanes(UnsafeRawPointer(top).assumingMemoryBound(to: Float.self), rowLength: w,
                                                                  activation: act.floatLanes)
                            UnsafeMutableRawPointer(out).storeBytes(of: values, as: SIMD8<Float>.self)
                            UnsafeMutableRawPointer(outArg).storeBytes(of: indices, as: SIMD8<UInt8>.self)
                        } else {
                            for q in 0..<ow { Self.pool1(top + 2 * q, rowLength: w, activation: act, into: out + q, argmax: outArg + q) }
                        }
                    }
                }
            }
        } } }
        return FeatureMap(channels: x.channels, batch: x.batch, height: oh, width: ow, data: y)
    }

    /// A plane's pending BatchNorm output (`NormalizedOutput`): its channel's γ and β (`on`), or none.
    @usableFromInline
    struct Activation {
        @usableFromInline let gamma: T, beta: T
        @usableFromInline let affine: Bool, on: Bool
        @inlinable init(gamma: T, beta: T, affine: Bool, on: Bool) { self.gamma = gamma; self.beta = beta; self.affine = affine; self.on = on }
        @inlinable @inline(__always) func callAsFunction(_ h: T) -> T { on ? affineReLU(h, gamma: gamma, beta: beta, affine: affine) : h }
        /// For the Float lanes (only called when T is Float).
        @inlinable @inline(__always) var floatLanes: FloatActivation {
            FloatActivation(gamma: SIMD16(repeating: unsafeBitCast(gamma, to: Float.self)), beta: SIMD16(repeating: unsafeBitCast(beta, to: Float.self)),
                            affine: affine, on: on)
        }
    }

    /// One window; `v > best || v != v` is "larger or NaN".
    @inlinable @inline(__always)
    static func pool1(_ top: UnsafePointer<T>, rowLength w: Int, activation: Activation,
                      into out: UnsafeMutablePointer<T>, argmax: UnsafeMutablePointer<UInt8>) {
        var best = activation(top[0]), at: UInt8 = 0
        let v1 = activation(top[1]), v2 = activation(top[w]), v3 = activation(top[w + 1])
        let take1 = v1 > best || v1 != v1
        best = take1 ? v1 : best; at = take1 ? 1 : at
        let take2 = v2 > best || v2 != v2
        best = take2 ? v2 : best; at = take2 ? 2 : at
        let take3 = v3 > best || v3 != v3
        best = take3 ? v3 : best; at = take3 ? 3 : at
        out.pointee = best
        argmax.pointee = at
    }

    /// Eight neighbouring windows: SIMD lanes for Float (SIMD comparisons are single instructions only on
    /// concrete types; in generic code they are per-lane loops), one window at a time otherwise.
    @inlinable @inline(__always)
    static func pool8(_ top: UnsafePointer<T>, rowLength w: Int, activation: Activation,
                      into out: UnsafeMutablePointer<T>, argmax: UnsafeMutablePointer<UInt8>) {
        if T.self == Float.self {
            let (values, indices) = maxPool8Lanes(UnsafeRawPointer(top).assumingMemoryBound(to: Float.self), rowLength: w,
                                                  activation: activation.floatLanes)
            UnsafeMutableRawPointer(out).storeBytes(of: values, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(argmax).storeBytes(of: indices, as: SIMD8<UInt8>.self)
        } else {
            for q in 0..<8 { pool1(top + 2 * q, rowLength: w, activation: activation, into: out + q, argmax: argmax + q) }
        }
    }

    /// ∂L/∂input: each window's gradient at the position it chose, 0 elsewhere (`PooledGradient.dense`).
    @inlinable
    public func backward(_ dy: FeatureMap<T>) -> FeatureMap<T> { backwardLeftPooled(dy).dense(threads: threads) }

    /// The backward left undone: ∂L/∂output with the last forward's window choices (`PooledGradient`), for a
    /// BatchNorm layer that spreads it while it reads it (`BatchNorm.backward(_: PooledGradient)`).
    @inlinable
    public func backwardLeftPooled(_ dy: FeatureMap<T>) -> PooledGradient<T> {
        let (c, n, h, w) = inputShape
        precondition(dy.channels == c && dy.batch == n && dy.height == h / 2 && dy.width == w / 2, "\(name).backward does not match the last forward")
        return PooledGradient(gradient: dy, argmax: argmax, height: h, width: w)
    }
}

/// `MaxPool2x2.Activation` on 16 Float lanes.
@usableFromInline
struct FloatActivation {
    @usableFromInline let gamma: SIMD16<Float>, beta: SIMD16<Float>
    @usableFromInline let affine: Bool, on: Bool
    @inlinable init(gamma: SIMD16<Float>, beta: SIMD16<Float>, affine: Bool, on: Bool) {
        self.gamma = gamma; self.beta = beta; self.affine = affine; self.on = on
    }
}

/// A max-pool's ∂L/∂input formed 16 positions at a time, for `planes` planes of h × w (both even, w ≥ 16 or
/// h·w ≥ 16): each pooled value spread to its window's two columns and kept where the window chose that
/// position, 0 elsewhere (+0, as the zero-filled scatter leaves it). `body(offset, values, fresh)` gets each
/// block with the offset of its first position from the first plane's start; a row takes blocks at 0, 16, …
/// and a last one ending at the row's end, which may overlap the one before it (the same values twice):
/// `fresh` has all bits set in the lanes of positions not given before, none in the others. Rows narrower
/// than 16 (pool2's 10) take a plane at a time: scattered into a zeroed buffer of the plane's size, then
/// given in blocks over the plane the same way (the last ending at the plane's end).
@inlinable @inline(__always)
func spreadPooledGradient(_ gradient: UnsafePointer<Float>, argmax: UnsafePointer<UInt8>, planes: Int, height h: Int, width w: Int,
                          _ body: (Int, SIMD16<Float>, SIMD16<UInt32>) -> Void) {
    let ow = w / 2
    let lane = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    let allFresh = SIMD16<UInt32>(repeating: .max)
    /// The last block of a run of `length`: fresh from the lane where the block before it ended.
    @inline(__always) func lastFresh(_ length: Int) -> SIMD16<UInt32> {
        let repeated = Int32(length % 16 == 0 ? 0 : 16 - length % 16)
        return unsafeBitCast(~((lane &- SIMD16(repeating: repeated)) &>> 31), to: SIMD16<UInt32>.self)
    }
    if w < 16 {
        let plane = h * w, pooledPlane = (h / 2) * ow, last = lastFresh(plane)
        precondition(plane >= 16, "spreadPooledGradient: planes of \(h) × \(w) are below one block")
        withUnsafeTemporaryAllocation(of: Float.self, capacity: plane) { spread in
            let base = spread.baseAddress!
            for p in 0..<planes {
                scatterPooledPlane(gradient + p * pooledPlane, argmax: argmax + p * pooledPlane, height: h, width: w, into: base)
                var q = 0
                while true {
                    body(p * plane + q, UnsafeRawPointer(base + q).loadUnaligned(as: SIMD16<Float>.self),
                         q == plane - 16 && q % 16 != 0 ? last : allFresh)
                    if q == plane - 16 { break }
                    q = Swift.min(q + 16, plane - 16)
                }
            }
        }
        return
    }
    let column = SIMD16<Int32>(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1)
    // The last block's lanes below `repeated` were the previous block's (sign of lane − repeated, spread).
    let rowLast = lastFresh(w)
    for p in 0..<planes {
        for r in 0..<h {
            // The positions of row r are window choices 2·(r mod 2) + (column mod 2).
            let choice = column &+ SIMD16(repeating: Int32(r & 1) &* 2)
            let pooledRow = (p * (h / 2) + r / 2) * ow, row = (p * h + r) * w
            var q = 0
            while true {
                let g = UnsafeRawPointer(gradient + pooledRow + q / 2).loadUnaligned(as: SIMD8<Float>.self)
                let a = UnsafeRawPointer(argmax + pooledRow + q / 2).loadUnaligned(as: SIMD8<UInt8>.self)
                let spread = SIMD16<Float>(g[0], g[0], g[1], g[1], g[2], g[2], g[3], g[3], g[4], g[4], g[5], g[5], g[6], g[6], g[7], g[7])
                // Lane by lane, not SIMD8(truncatingIfNeeded:), which stayed a call per block.
                let chosen = SIMD16<Int32>(Int32(a[0]), Int32(a[0]), Int32(a[1]), Int32(a[1]), Int32(a[2]), Int32(a[2]), Int32(a[3]), Int32(a[3]),
                                           Int32(a[4]), Int32(a[4]), Int32(a[5]), Int32(a[5]), Int32(a[6]), Int32(a[6]), Int32(a[7]), Int32(a[7])) .== choice
                body(row + q, unsafeBitCast(unsafeBitCast(spread, to: SIMD16<UInt32>.self) & unsafeBitCast(chosen, to: SIMD16<UInt32>.self),
                                            to: SIMD16<Float>.self), q == w - 16 && q % 16 != 0 ? rowLast : allFresh)
                if q == w - 16 { break }
                q = Swift.min(q + 16, w - 16)
            }
        }
    }
}

/// One plane of a max-pool's ∂L/∂input (h × w) from its pooled gradient: zeros, then each window's value at the
/// position it chose (0–3: (0,0), (0,1), (1,0), (1,1)).
@inlinable @inline(__always)
func scatterPooledPlane<T: KernelScalar>(_ gradient: UnsafePointer<T>, argmax: UnsafePointer<UInt8>, height h: Int, width w: Int,
                                         into plane: UnsafeMutablePointer<T>) {
    let ow = w / 2
    plane.update(repeating: 0, count: h * w)
    for r in 0..<(h / 2) { for q in 0..<ow {
        let chosen = Int(argmax[r * ow + q])
        plane[(2 * r + chosen / 2) * w + 2 * q + chosen % 2] = gradient[r * ow + q]
    } }
}

/// A max-pool's backward not yet spread: ∂L/∂(pooled output) and each window's choice (0–3: (0,0), (0,1),
/// (1,0), (1,1)); ∂L/∂input is that gradient at the chosen position of each window and 0 elsewhere.
public struct PooledGradient<T: KernelScalar> {
    public let gradient: FeatureMap<T>
    public let argmax: [UInt8]
    /// The pool's input size.
    public let height: Int, width: Int

    @inlinable
    public init(gradient: FeatureMap<T>, argmax: [UInt8], height: Int, width: Int) {
        precondition(argmax.count == gradient.data.count && gradient.height == height / 2 && gradient.width == width / 2)
        self.gradient = gradient
        self.argmax = argmax
        self.height = height
        self.width = width
    }

    /// Whether `reluGradientFromPool` spreads it: Float, even sizes (no row or column outside every window),
    /// rows of at least 16 (LeNet-5's 28 × 28) or planes of at least 16 (pool2's 10 × 10, a plane at a time).
    @inlinable
    public var spreadsInPlace: Bool {
        T.self == Float.self && height % 2 == 0 && width % 2 == 0 && (width >= 16 || height * width >= 16)
    }

    /// ∂L/∂input stored (`MaxPool2x2.backward`), threads taking whole planes: rows of 16 and more spread 16
    /// positions at a time in registers (`spreadPooledGradient`), others zero-filled and scattered.
    @inlinable
    public func dense(threads: Int = 1) -> FeatureMap<T> {
        let (h, w) = (height, width), oh = h / 2, ow = w / 2, planes = gradient.channels * gradient.batch
        // Narrow rows would go through a buffer of their own here: scattering onto the zero-filled output is direct.
        let spreads = spreadsInPlace && w >= 16
        var dx = [T](overwrittenCount: planes * h * w)  // every element written below
        gradient.data.withUnsafeBufferPointer { g in argmax.withUnsafeBufferPointer { ap in dx.withUnsafeMutableBufferPointer { dp in
            nonisolated(unsafe) let gs = g.baseAddress!, As = ap.baseAddress!, ds = dp.baseAddress!
            Parallel.forEach(planes, threads: threads, minimumPerPart: 16) { range in
                if spreads {
                    let out = UnsafeMutableRawPointer(ds + range.lowerBound * h * w)
                    spreadPooledGradient(cast(gs + range.lowerBound * oh * ow), argmax: As + range.lowerBound * oh * ow,
                                         planes: range.count, height: h, width: w) { offset, values, _ in
                        out.storeBytes(of: values, toByteOffset: offset &* 4, as: SIMD16<Float>.self)
                    }
                    return
                }
                for p in range {
                    scatterPooledPlane(gs + p * oh * ow, argmax: As + p * oh * ow, height: h, width: w, into: ds + p * h * w)
                }
            }
        } } }
        return FeatureMap(channels: gradient.channels, batch: gradient.batch, height: h, width: w, data: dx)
    }
}

/// The maxima and window indices of eight neighbouring 2×2 windows (reads 16 values of two rows), with the
/// comparisons of `MaxPool2x2.pool1` in the same order; the selects work on bit patterns (each mask lane is
/// all ones or all zeros), because SIMD's replace(with:where:) compiles to a per-lane loop.
/// With an activation (`on`), each loaded x̂ first becomes max(x̂·γ + β, 0) (`affineReLU`).
@inlinable @inline(__always)
func maxPool8Lanes(_ top: UnsafePointer<Float>, rowLength w: Int, activation a: FloatActivation) -> (SIMD8<Float>, SIMD8<UInt8>) {
    typealias Bits = SIMD8<Int32>
    let raw = UnsafeRawPointer(top)
    var upper = raw.loadUnaligned(as: SIMD16<Float>.self)
    var lower = raw.loadUnaligned(fromByteOffset: w * MemoryLayout<Float>.stride, as: SIMD16<Float>.self)
    if a.on {
        upper = affineReLU(upper, gamma: a.gamma, beta: a.beta, affine: a.affine)
        lower = affineReLU(lower, gamma: a.gamma, beta: a.beta, affine: a.affine)
    }
    var best = upper.evenHalf, at = Bits(repeating: 0)
    @inline(__always) func consider(_ candidate: SIMD8<Float>, _ index: Int32) {
        // The masks combined as bits: SIMDMask's own `.|` compiles to a per-lane loop through Bool
        // (150 instructions for eight windows instead of 45).
        let take = unsafeBitCast(candidate .> best, to: Bits.self) | unsafeBitCast(candidate .!= candidate, to: Bits.self)
        best = unsafeBitCast((unsafeBitCast(candidate, to: Bits.self) & take) | (unsafeBitCast(best, to: Bits.self) & ~take),
                             to: SIMD8<Float>.self)
        at = (Bits(repeating: index) & take) | (at & ~take)
    }
    consider(upper.oddHalf, 1)
    consider(lower.evenHalf, 2)
    consider(lower.oddHalf, 3)
    // Lane by lane, not SIMD8(truncatingIfNeeded:), which stayed a call per eight windows.
    return (best, SIMD8<UInt8>(UInt8(truncatingIfNeeded: at[0]), UInt8(truncatingIfNeeded: at[1]), UInt8(truncatingIfNeeded: at[2]),
                               UInt8(truncatingIfNeeded: at[3]), UInt8(truncatingIfNeeded: at[4]), UInt8(truncatingIfNeeded: at[5]),
                               UInt8(truncatingIfNeeded: at[6]), UInt8(truncatingIfNeeded: at[7])))
}
