import ReproKernels

/// Options of the notebook's BatchNorm1d/BatchNorm2d, plus the two knobs that turn it into the textbook
/// formula (epsilon, biased variance) for comparison.
public struct BatchNormOptions: Sendable, Equatable {
    public var affine: Bool
    public var trackRunningStats: Bool
    /// Weight on the OLD running value: running = momentum·running + (1 − momentum)·batch (the notebook's
    /// convention, the opposite of torch.nn.BatchNorm's).
    public var momentum: Double
    /// Added to the variance under the square root. The notebook has none (0).
    public var epsilon: Double
    /// Unbiased standard deviation (divide by m − 1), as torch.std does by default; false divides by m.
    public var unbiased: Bool

    public init(affine: Bool = true, trackRunningStats: Bool = true, momentum: Double = 0.9,
                epsilon: Double = 0, unbiased: Bool = true) {
        self.affine = affine
        self.trackRunningStats = trackRunningStats
        self.momentum = momentum
        self.epsilon = epsilon
        self.unbiased = unbiased
    }

    /// The notebook's layer.
    public static let notebook = BatchNormOptions()
}

public enum BatchNormError: Error, Equatable, CustomStringConvertible {
    /// A channel's batch standard deviation is 0 (or undefined: one element with unbiased statistics) and
    /// epsilon is 0, so x̂ = (x − mean)/std divides by zero. PyTorch would silently produce NaN/Inf there.
    case zeroStandardDeviation(layer: String, channel: Int, elements: Int)

    public var description: String {
        switch self {
        case let .zeroStandardDeviation(layer, channel, elements):
            return "\(layer): channel \(channel) has standard deviation 0 over its \(elements) batch elements "
                + "and epsilon is 0, so normalization divides by zero (the notebook's BatchNorm has no epsilon)"
        }
    }
}

/// The notebook's BatchNorm, one implementation for both BatchNorm1d (N, C) and BatchNorm2d (N, C, H, W):
/// in channel-major layout both reduce over one contiguous run of m = N·H·W elements per channel.
///
///   training:  μ = mean(x), s = sqrt(Σ(x − μ)²/(m − 1) + ε), x̂ = (x − μ)/s, y = x̂·γ + β
///   eval with running stats: μ, s = running_mean, running_std
/// Parameters γ (ones), β (zeros), buffers running_mean (zeros), running_std (ones), all [C, 1].
public final class BatchNorm<T: KernelScalar> {
    public let name: String
    public let channels: Int
    public let options: BatchNormOptions
    public let gamma: NamedTensor<T>?
    public let beta: NamedTensor<T>?
    public let runningMean: NamedTensor<T>?
    public let runningStd: NamedTensor<T>?
    @usableFromInline let kernels: any Kernels

    /// The names of the statistics a training forward pass computes, in order: those it normalizes with,
    /// then the running buffers it updates (when it tracks them). The record's per-step BN series.
    public var statisticNames: [String] {
        ["batch_mean", "batch_std"] + (options.trackRunningStats ? ["running_mean", "running_std"] : [])
    }

    /// The statistics used by the last forward pass (batch statistics in training, running ones in eval).
    public var lastMean: [T]
    public var lastStd: [T]
    @usableFromInline var normalized: [T] = []        // x̂ of the last forward
    @usableFromInline var usedBatchStatistics = true  // whether the last forward normalized with batch stats
    /// When the last forward applied the following ReLU itself (see `forward`): the γ and β it used, from
    /// which `backward` recomputes the ReLU's decisions out of x̂ (the same operations, so the same decisions)
    /// instead of reading the whole output back from memory. Nil otherwise.
    @usableFromInline var fusedReLUAffine: (gamma: [T], beta: [T])?

    public init(_ name: String, channels: Int, options: BatchNormOptions = .notebook, kernels: any Kernels) {
        self.name = name
        self.channels = channels
        self.options = options
        self.kernels = kernels
        let ones = [T](repeating: 1, count: channels), zeros = [T](repeating: 0, count: channels)
        gamma = options.affine ? NamedTensor(name: "\(name).gamma", shape: [channels, 1], isParameter: true, value: ones) : nil
        beta = options.affine ? NamedTensor(name: "\(name).beta", shape: [channels, 1], isParameter: true, value: zeros) : nil
        runningMean = options.trackRunningStats
            ? NamedTensor(name: "\(name).running_mean", shape: [channels, 1], isParameter: false, value: zeros) : nil
        runningStd = options.trackRunningStats
            ? NamedTensor(name: "\(name).running_std", shape: [channels, 1], isParameter: false, value: ones) : nil
        lastMean = zeros
        lastStd = ones
    }

    /// In PyTorch's state_dict order: gamma, beta, running_mean, running_std.
    public var stateTensors: [NamedTensor<T>] { [gamma, beta, runningMean, runningStd].compactMap { $0 } }
    public var parameters: [NamedTensor<T>] { [gamma, beta].compactMap { $0 } }

    /// `fusedReLU` applies the ReLU that follows the layer in LeNet-5 to each channel right after normalizing
    /// it, while the channel is in cache, and `backward` then takes the ReLU's gradient too: the same
    /// operations as BatchNorm then `ReLU` (so the same bits), one pass over the activations fewer each way.
    @inlinable
    public func forward(_ x: FeatureMap<T>, training: Bool, fusedReLU: Bool = false, probing: Bool = false) throws(BatchNormError) -> FeatureMap<T> {
        try run(x, training: training, fusedReLU: fusedReLU, storeOutput: true, probing: probing)!
    }

    /// The forward with its fused ReLU, the output left unstored: x̂ and the γ, β that turn it into
    /// y = max(x̂·γ + β, 0) (`NormalizedOutput`), for a layer that reads y once (max-pool) and can apply those
    /// operations as it loads x̂. The same bits as `forward(_:training:fusedReLU: true)`; one store of the
    /// activations fewer (bn1: 2.4 MB a step, whose stores kept its forward from scaling to 2 threads).
    @inlinable
    public func forwardLeavingOutputNormalized(_ x: FeatureMap<T>, training: Bool, probing: Bool = false) throws(BatchNormError) -> NormalizedOutput<T> {
        _ = try run(x, training: training, fusedReLU: true, storeOutput: false, probing: probing)
        let (g, b) = fusedReLUAffine!
        return NormalizedOutput(normalized: FeatureMap(channels: x.channels, batch: x.batch, height: x.height, width: x.width, data: normalized),
                                gamma: g, beta: b, affine: options.affine)
    }

    /// Statistics, x̂ (kept for the backward), and y when `storeOutput`.
    @inlinable
    func run(_ x: FeatureMap<T>, training: Bool, fusedReLU: Bool, storeOutput: Bool, probing: Bool = false) throws(BatchNormError) -> FeatureMap<T>? {
        precondition(x.channels == channels, "\(name) expects \(channels) channels, got \(x.channels)")
        let m = x.perChannel
        let useBatch = training || !options.trackRunningStats
        usedBatchStatistics = useBatch
        var mean = useBatch ? [T](repeating: 0, count: channels) : runningMean!.value
        var std = useBatch ? [T](repeating: 0, count: channels) : runningStd!.value
        if normalized.count != x.data.count { normalized = [T](repeating: 0, count: x.data.count) }
        let pass = ForwardPass(m: m, divisor: T(options.unbiased ? m - 1 : m), epsilon: T(options.epsilon), batchStatistics: useBatch,
                               affine: options.affine, relu: fusedReLU, kernels: kernels,
                               gamma: gamma?.value ?? [T](repeating: 1, count: channels), beta: beta?.value ?? [T](repeating: 0, count: channels))
        var y = [T](overwrittenCount: storeOutput ? x.data.count : 0)  // every element is written below
        var probes = probing ? ChannelProbes(channels: channels) : nil
        // Threads take whole channels: a channel's statistics, then its normalization while it is in cache.
        ChannelProbes.with(&probes) { slots in
          x.data.withUnsafeBufferPointer { xp in normalized.withUnsafeMutableBufferPointer { np in y.withUnsafeMutableBufferPointer { yp in
            mean.withUnsafeMutableBufferPointer { mp in std.withUnsafeMutableBufferPointer { sp in
                nonisolated(unsafe) let xs = xp.baseAddress!, ns = np.baseAddress!, ys = storeOutput ? yp.baseAddress : nil
                nonisolated(unsafe) let means = mp.baseAddress!, stds = sp.baseAddress!
                Parallel.forEach(channels, threads: kernels.threads, minimumPerPart: Self.channelsPerThread(m)) { range in
                    for c in range { pass.channel(c, x: xs, normalized: ns, y: ys, means: means, stds: stds, probes: slots?(c)) }
                }
            } }
          } } }
        }
        lastForwardProbes = probes?.probes
        if useBatch {
            // NaN inputs propagate as in PyTorch; only the division by a zero std is refused (first such channel),
            // before any state changes: the output computed with it is dropped.
            if let c = std.firstIndex(where: { $0 == 0 }) ?? (pass.divisor == 0 ? 0 : nil) {
                throw BatchNormError.zeroStandardDeviation(layer: name, channel: c, elements: m)
            }
            if training { updateRunningStatistics(mean: mean, std: std) }
        }
        lastMean = mean
        lastStd = std
        fusedReLUAffine = fusedReLU ? (pass.gamma, pass.beta) : nil
        return storeOutput ? FeatureMap(channels: x.channels, batch: x.batch, height: x.height, width: x.width, data: y) : nil
    }

    /// What one forward pass does to one channel: its batch statistics (when it uses them), then
    /// x̂ = (x − μ)/s, y = x̂·γ + β, and the fused ReLU (y only when `y` is given).
    @usableFromInline
    struct ForwardPass: Sendable {
        @usableFromInline let m: Int
        @usableFromInline let divisor: T, epsilon: T
        @usableFromInline let batchStatistics: Bool, affine: Bool, relu: Bool
        @usableFromInline let kernels: any Kernels
        @usableFromInline let gamma: [T], beta: [T]

        @inlinable
        init(m: Int, divisor: T, epsilon: T, batchStatistics: Bool, affine: Bool, relu: Bool, kernels: any Kernels, gamma: [T], beta: [T]) {
            self.m = m; self.divisor = divisor; self.epsilon = epsilon
            self.batchStatistics = batchStatistics; self.affine = affine; self.relu = relu
            self.kernels = kernels; self.gamma = gamma; self.beta = beta
        }

        /// `probes`: where to form the probes of the channel's input and output.
        @inlinable
        func channel(_ c: Int, x xs: UnsafePointer<T>, normalized ns: UnsafeMutablePointer<T>, y ys: UnsafeMutablePointer<T>?,
                     means: UnsafeMutablePointer<T>, stds: UnsafeMutablePointer<T>,
                     probes: (input: UnsafeMutablePointer<ProbeLanes>, output: UnsafeMutablePointer<ProbeLanes>)? = nil) {
            let base = c * m
            if batchStatistics {
                let seg = UnsafeBufferPointer(start: xs + base, count: m)
                let mu = kernels.sum(seg) / T(m)
                let variance = kernels.sumOfSquaredDeviations(seg, from: mu) / divisor + epsilon
                means[c] = mu
                stds[c] = variance.squareRoot()
            }
            let mu = means[c], s = stds[c], g = gamma[c], b = beta[c]
            if T.self == Float.self {
                normalizeFloat(x: cast(xs + base), normalized: cast(ns + base), y: ys.map { cast($0 + base) }, count: m,
                               mean: unsafeBitCast(mu, to: Float.self), std: unsafeBitCast(s, to: Float.self),
                               gamma: unsafeBitCast(g, to: Float.self), beta: unsafeBitCast(b, to: Float.self), affine: affine, relu: relu,
                               probes: probes)
                return
            }
            // Other types: the channel's input and output probed after it is formed.
            defer {
                if let probes {
                    probes.input.pointee.add(UnsafeBufferPointer(start: xs + base, count: m))
                    for i in base..<(base + m) {
                        probes.output.pointee.add(relu ? affineReLU(ns[i], gamma: g, beta: b, affine: affine) : affine ? ns[i] * g + b : ns[i])
                    }
                }
            }
            guard let ys else {
                for i in base..<(base + m) { ns[i] = (xs[i] - mu) / s }
                return
            }
            switch (affine, relu) {
            case (true, false):
                for i in base..<(base + m) { let h = (xs[i] - mu) / s; ns[i] = h; ys[i] = h * g + b }
            case (false, false):
                for i in base..<(base + m) { let h = (xs[i] - mu) / s; ns[i] = h; ys[i] = h }
            case (_, true):
                for i in base..<(base + m) { let h = (xs[i] - mu) / s; ns[i] = h; ys[i] = affineReLU(h, gamma: g, beta: b, affine: affine) }
            }
        }
    }

    /// As the notebook computes it in float32: momentum·running + (1 − momentum)·batch, with (1 − momentum)
    /// formed in Double first (Python does) and each factor rounded to T.
    @inlinable
    func updateRunningStatistics(mean: [T], std: [T]) {
        guard options.trackRunningStats, let rm = runningMean, let rs = runningStd else { return }
        let keep = T(options.momentum), take = T(1 - options.momentum)
        for c in 0..<channels {
            rm.value[c] = keep * rm.value[c] + take * mean[c]
            rs.value[c] = keep * rs.value[c] + take * std[c]
        }
    }

    /// Channels per thread worth handing to a second thread: about 4 K elements in all (bn3 and bn4 split too).
    @inlinable
    static func channelsPerThread(_ elementsPerChannel: Int) -> Int { max(1, 4_096 / max(1, elementsPerChannel)) }

    /// The backward from a max-pool's unspread gradient (`PooledGradient`) with the fused ReLU: the pool's
    /// ∂L/∂input is formed 16 positions at a time while the ReLU's gradient reads it (`reluGradientFromPool`),
    /// never stored (rows narrower than 16, pool2's, a plane at a time). The same bits as
    /// `backward(pool.backward(dy))`; one 2.4 MB zero-fill, store and load fewer for bn1, 0.8 MB for bn2.
    /// Other shapes (planes below 16 values, odd sizes, Double) take the stored gradient.
    ///
    /// `probing`: also form the probes of the gradient flowing in and of ∂L/∂x (`backwardProbes`), channel by
    /// channel as the values pass through registers or while the channel is in cache.
    @inlinable
    public func backward(_ dy: PooledGradient<T>, probing: Bool = false) -> FeatureMap<T> {
        guard dy.spreadsInPlace, fusedReLUAffine != nil else { return backward(dy.dense(threads: kernels.threads), probing: probing) }
        return dy.gradient.data.withUnsafeBufferPointer { g in dy.argmax.withUnsafeBufferPointer { a in
            backward(.pooled(gradient: g.baseAddress!, argmax: a.baseAddress!, height: dy.height, width: dy.width),
                     channels: dy.gradient.channels, batch: dy.gradient.batch, height: dy.height, width: dy.width, probing: probing)
        } }
    }

    /// The probes of the last backward that was asked for them: the gradient flowing in and ∂L/∂x (nil after
    /// a backward without `probing`).
    public var backwardProbes: (incoming: Probe, inputGradient: Probe)? { lastBackwardProbes }
    /// The probes of the last forward that was asked for them: its input and its output (after the fused
    /// ReLU; formed whether stored or not).
    public var forwardProbes: (input: Probe, output: Probe)? { lastForwardProbes }
    @usableFromInline var lastForwardProbes: (input: Probe, output: Probe)?
    @usableFromInline var lastBackwardProbes: (incoming: Probe, inputGradient: Probe)?

    /// Fills gamma.grad and beta.grad; returns ∂L/∂x, the exact gradient of the forward above.
    ///
    /// With batch statistics (d = m − 1 unbiased, m biased; s includes ε):
    ///   ∂L/∂x̂ = γ·dy,   ∂L/∂x = (1/s)·(∂L/∂x̂ − mean(∂L/∂x̂) − x̂·Σ(∂L/∂x̂·x̂)/d)
    /// because ∂μ/∂x_i = 1/m and ∂s/∂x_i = x̂_i/d. With running statistics μ and s are constants: ∂L/∂x = γ·dy/s.
    @inlinable
    public func backward(_ dy: FeatureMap<T>, probing: Bool = false) -> FeatureMap<T> {
        dy.data.withUnsafeBufferPointer { g in
            backward(.stored(g.baseAddress!), channels: dy.channels, batch: dy.batch, height: dy.height, width: dy.width, probing: probing)
        }
    }

    /// Where the gradient flowing in comes from: stored, or a max-pool's to be spread (Float only).
    @usableFromInline
    enum Incoming: @unchecked Sendable {
        case stored(UnsafePointer<T>)
        case pooled(gradient: UnsafePointer<T>, argmax: UnsafePointer<UInt8>, height: Int, width: Int)
    }

    @inlinable
    func backward(_ incoming: Incoming, channels: Int, batch: Int, height: Int, width: Int, probing: Bool) -> FeatureMap<T> {
        let m = batch * height * width, count = channels * m
        precondition(count == normalized.count, "\(name).backward does not match the last forward")
        var dx = [T](overwrittenCount: count)  // every element is written below
        var sumsDy = [T](repeating: 0, count: channels), sumsDyXhat = [T](repeating: 0, count: channels)
        let pass = BackwardPass(m: m, divisor: T(options.unbiased ? m - 1 : m), batchStatistics: usedBatchStatistics,
                                affine: options.affine, kernels: kernels, gamma: gamma?.value ?? [T](repeating: 1, count: channels),
                                stds: lastStd, fusedReLU: fusedReLUAffine)
        var probes = probing ? ChannelProbes(channels: channels) : nil
        ChannelProbes.with(&probes) { slots in
          normalized.withUnsafeBufferPointer { np in dx.withUnsafeMutableBufferPointer { dp in
            sumsDy.withUnsafeMutableBufferPointer { sd in sumsDyXhat.withUnsafeMutableBufferPointer { sx in
                nonisolated(unsafe) let ns = np.baseAddress!, ds = dp.baseAddress!
                nonisolated(unsafe) let sumDyOut = sd.baseAddress!, sumDyXhatOut = sx.baseAddress!
                // Threads take whole channels.
                Parallel.forEach(channels, threads: kernels.threads, minimumPerPart: Self.channelsPerThread(m)) { channelRange in
                    for c in channelRange {
                        pass.channel(c, incoming: incoming, normalized: ns, dx: ds, sumDy: sumDyOut, sumDyXhat: sumDyXhatOut, probes: slots?(c))
                    }
                }
            } }
          } }
        }
        lastBackwardProbes = probes?.probes
        if let gamma, let beta {
            gamma.grad = sumsDyXhat
            beta.grad = sumsDy
        }
        return FeatureMap(channels: channels, batch: batch, height: height, width: width, data: dx)
    }

    /// What one backward pass does to one channel: the fused ReLU's gradient (threshold_backward,
    /// `o <= 0 ? 0 : dy`, written into dx first so the rest works in place), the channel's sums Σdy and
    /// Σdy·x̂ (the gradients of β and γ), then ∂L/∂x. The ReLU's output o is recomputed from x̂ as the forward
    /// computed it (x̂·γ + β): o <= 0 exactly where the forward's ReLU gave 0.
    @usableFromInline
    struct BackwardPass: Sendable {
        @usableFromInline let m: Int
        @usableFromInline let divisor: T
        @usableFromInline let batchStatistics: Bool, affine: Bool
        @usableFromInline let kernels: any Kernels
        @usableFromInline let gamma: [T], stds: [T]
        @usableFromInline let fusedReLU: (gamma: [T], beta: [T])?

        @inlinable
        init(m: Int, divisor: T, batchStatistics: Bool, affine: Bool, kernels: any Kernels, gamma: [T], stds: [T],
             fusedReLU: (gamma: [T], beta: [T])?) {
            self.m = m; self.divisor = divisor; self.batchStatistics = batchStatistics; self.affine = affine
            self.kernels = kernels; self.gamma = gamma; self.stds = stds; self.fusedReLU = fusedReLU
        }

        /// `probes`: where to form the probes of the channel's gradient flowing in and of its ∂L/∂x.
        @inlinable
        func channel(_ c: Int, incoming source: Incoming, normalized ns: UnsafePointer<T>,
                     dx ds: UnsafeMutablePointer<T>, sumDy: UnsafeMutablePointer<T>, sumDyXhat: UnsafeMutablePointer<T>,
                     probes: (incoming: UnsafeMutablePointer<ProbeLanes>, inputGradient: UnsafeMutablePointer<ProbeLanes>)?) {
            let range = (c * m)..<((c + 1) * m)
            let incoming: UnsafePointer<T>
            switch source {
            case .stored(let g):
                incoming = g
                if let probes { probes.incoming.pointee.add(UnsafeBufferPointer(start: g + c * m, count: m)) }
            case let .pooled(gradient, argmax, height, width):
                // `backward(_: PooledGradient)` takes this path only for Float with the fused ReLU.
                let g = fusedReLU!.gamma[c], b = fusedReLU!.beta[c], pooledPerChannel = m / 4
                reluGradientFromPool(gradient: cast(gradient + c * pooledPerChannel), argmax: argmax + c * pooledPerChannel,
                                     normalized: cast(ns + c * m), into: cast(ds + c * m), images: m / (height * width),
                                     height: height, width: width,
                                     gamma: unsafeBitCast(g, to: Float.self), beta: unsafeBitCast(b, to: Float.self), affine: affine,
                                     probe: probes?.incoming)
                incoming = UnsafePointer(ds)
            }
            // ∂L/∂x of the channel: probed as float32's loop forms it, else while in cache.
            var probedInLoop = false
            defer {
                if let probes, !probedInLoop { probes.inputGradient.pointee.add(UnsafeBufferPointer(start: UnsafePointer(ds + c * m), count: m)) }
            }
            if let fusedReLU, case .stored = source {
                let g = fusedReLU.gamma[c], b = fusedReLU.beta[c]
                if T.self == Float.self {
                    reluGradientFloat(gradient: cast(incoming + c * m), normalized: cast(ns + c * m), into: cast(ds + c * m), count: m,
                                      gamma: unsafeBitCast(g, to: Float.self), beta: unsafeBitCast(b, to: Float.self), affine: affine)
                } else if affine {
                    for i in range { ds[i] = ns[i] * g + b <= T.zero ? T.zero : incoming[i] }
                } else {
                    for i in range { ds[i] = ns[i] <= T.zero ? T.zero : incoming[i] }
                }
            }
            let gs = fusedReLU == nil ? incoming : UnsafePointer(ds)
            let gSeg = UnsafeBufferPointer(start: gs + c * m, count: m)
            let nSeg = UnsafeBufferPointer(start: ns + c * m, count: m)
            let sumsDy = kernels.sum(gSeg)
            let sumsDyXhat = kernels.dot(gSeg, nSeg)
            sumDy[c] = sumsDy
            sumDyXhat[c] = sumsDyXhat
            let gam = gamma[c], s = stds[c]
            guard batchStatistics else {
                for i in range { ds[i] = gam * gs[i] / s }
                return
            }
            // Sums of ∂L/∂x̂ = γ·dy follow from the sums of dy.
            let meanDxhat = gam * sumsDy / T(m)
            let projection = gam * sumsDyXhat / divisor
            if T.self == Float.self {
                inputGradientFloat(gradient: cast(gs + c * m), normalized: cast(ns + c * m), into: cast(ds + c * m), count: m,
                                   gamma: unsafeBitCast(gam, to: Float.self), meanGradient: unsafeBitCast(meanDxhat, to: Float.self),
                                   projection: unsafeBitCast(projection, to: Float.self), std: unsafeBitCast(s, to: Float.self),
                                   probe: probes?.inputGradient)
                probedInLoop = true
            } else {
                for i in range { ds[i] = (gam * gs[i] - meanDxhat - ns[i] * projection) / s }
            }
        }
    }
}

// The two elementwise loops of BatchNorm as explicit 16-lane code for Float: the loop vectorizer leaves them
// scalar (the output may alias the gradient it reads: the fused backward works in place), at 5 cycles per
// element. Every lane does exactly the scalar loop's operations in the same order, so the bits are the same.

/// x̂ = (x − μ)/s; y = x̂·γ + β (when affine), then max(y, 0) when `relu` (NaN stays NaN, as Swift.max(v, 0));
/// y only when it is given.
@inlinable
func normalizeFloat(x: UnsafePointer<Float>, normalized: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>?,
                    count: Int, mean: Float, std: Float, gamma: Float, beta: Float, affine: Bool, relu: Bool,
                    probes: (input: UnsafeMutablePointer<ProbeLanes>, output: UnsafeMutablePointer<ProbeLanes>)? = nil) {
    typealias V = SIMD16<Float>
    let xr = UnsafeRawPointer(x), nr = UnsafeMutableRawPointer(normalized)
    let mu = V(repeating: mean), s = V(repeating: std), g = V(repeating: gamma), b = V(repeating: beta)
    var i = 0
    if let probes {
        // The probes of x and of y (formed whether stored or not) from the registers.
        var input = probes.input.pointee, output = probes.output.pointee
        while i + 16 <= count {
            let offset = i &* 4
            let xv = xr.loadUnaligned(fromByteOffset: offset, as: V.self)
            let h = (xv - mu) / s
            nr.storeBytes(of: h, toByteOffset: offset, as: V.self)
            let out = relu ? affineReLU(h, gamma: g, beta: b, affine: affine) : affine ? h * g + b : h
            if let y { UnsafeMutableRawPointer(y).storeBytes(of: out, toByteOffset: offset, as: V.self) }
            input.add(xv)
            output.add(out)
            i += 16
        }
        while i < count {
            let h = (x[i] - mean) / std
            normalized[i] = h
            let out = relu ? affineReLU(h, gamma: gamma, beta: beta, affine: affine) : affine ? h * gamma + beta : h
            y?[i] = out
            input.add(x[i])
            output.add(out)
            i += 1
        }
        probes.input.pointee = input
        probes.output.pointee = output
        return
    }
    if let y {
        let yr = UnsafeMutableRawPointer(y)
        while i + 16 <= count {
            let offset = i &* 4
            let h = (xr.loadUnaligned(fromByteOffset: offset, as: V.self) - mu) / s
            nr.storeBytes(of: h, toByteOffset: offset, as: V.self)
            yr.storeBytes(of: relu ? affineReLU(h, gamma: g, beta: b, affine: affine) : affine ? h * g + b : h,
                          toByteOffset: offset, as: V.self)
            i += 16
        }
    } else {
        while i + 16 <= count {
            let offset = i &* 4
            nr.storeBytes(of: (xr.loadUnaligned(fromByteOffset: offset, as: V.self) - mu) / s, toByteOffset: offset, as: V.self)
            i += 16
        }
    }
    while i < count {
        let h = (x[i] - mean) / std
        normalized[i] = h
        if let y { y[i] = relu ? affineReLU(h, gamma: gamma, beta: beta, affine: affine) : affine ? h * gamma + beta : h }
        i += 1
    }
}

/// The fused ReLU's output, y = max(x̂·γ + β, 0) (x̂ itself when not affine), in one place for wherever it is
/// formed: stored and probed by `normalizeFloat`, formed as max-pool loads x̂ (`NormalizedOutput`).
/// Product, then sum (never fused: PyTorch rounds both), then Swift.max(v, 0), which is `0 >= v ? 0 : v`, so a
/// NaN stays NaN and −0 becomes +0.
@inlinable @inline(__always)
public func affineReLU<T: KernelScalar>(_ h: T, gamma: T, beta: T, affine: Bool) -> T {
    Swift.max(affine ? h * gamma + beta : h, T.zero)
}

/// The same on 16 lanes: the lanes where 0 >= v cleared as bits (SIMD's own select compiles to a per-lane loop).
@inlinable @inline(__always)
public func affineReLU(_ h: SIMD16<Float>, gamma g: SIMD16<Float>, beta b: SIMD16<Float>, affine: Bool) -> SIMD16<Float> {
    let out = affine ? h * g + b : h
    let cleared = unsafeBitCast(SIMD16<Float>() .>= out, to: SIMD16<UInt32>.self)
    return unsafeBitCast(unsafeBitCast(out, to: SIMD16<UInt32>.self) & ~cleared, to: SIMD16<Float>.self)
}

/// A BatchNorm layer's output with its fused ReLU, left unstored: x̂ (the layer's own copy, kept for its
/// backward) and each channel's γ and β, so that the layer reading it forms y = max(x̂·γ + β, 0) as it loads x̂
/// (`affineReLU`: the operations of the stored output, so the same bits).
public struct NormalizedOutput<T: KernelScalar> {
    public let normalized: FeatureMap<T>
    public let gamma: [T], beta: [T]
    public let affine: Bool

    @inlinable
    public init(normalized: FeatureMap<T>, gamma: [T], beta: [T], affine: Bool) {
        precondition(gamma.count == normalized.channels && beta.count == normalized.channels)
        self.normalized = normalized
        self.gamma = gamma
        self.beta = beta
        self.affine = affine
    }

    /// y of element i (channel-major).
    @inlinable
    public func value(_ i: Int) -> T {
        let c = i / normalized.perChannel
        return affineReLU(normalized.data[i], gamma: gamma[c], beta: beta[c], affine: affine)
    }

    /// y stored.
    public func materialized() -> FeatureMap<T> {
        FeatureMap(channels: normalized.channels, batch: normalized.batch, height: normalized.height, width: normalized.width,
                   data: (0..<normalized.data.count).map(value))
    }
}

/// The fused ReLU's gradient from x̂: d = (x̂·γ + β <= 0 ? 0 : g), the output recomputed with the forward's
/// operations (`normalizeFloat`), so each decision is the forward's (a NaN output passes its gradient, as
/// PyTorch's threshold_backward does).
@inlinable
func reluGradientFloat(gradient: UnsafePointer<Float>, normalized: UnsafePointer<Float>, into d: UnsafeMutablePointer<Float>,
                       count: Int, gamma: Float, beta: Float, affine: Bool) {
    typealias V = SIMD16<Float>
    let gr = UnsafeRawPointer(gradient), nr = UnsafeRawPointer(normalized), dr = UnsafeMutableRawPointer(d)
    let g = V(repeating: gamma), b = V(repeating: beta)
    var i = 0
    while i + 16 <= count {
        let offset = i &* 4
        let h = nr.loadUnaligned(fromByteOffset: offset, as: V.self)
        let out = affine ? h * g + b : h
        let cleared = unsafeBitCast(out .<= V(), to: SIMD16<UInt32>.self)
        let incoming = unsafeBitCast(gr.loadUnaligned(fromByteOffset: offset, as: V.self), to: SIMD16<UInt32>.self)
        dr.storeBytes(of: unsafeBitCast(incoming & ~cleared, to: V.self), toByteOffset: offset, as: V.self)
        i += 16
    }
    while i < count {
        let out = affine ? normalized[i] * gamma + beta : normalized[i]
        d[i] = out <= 0 ? 0 : gradient[i]
        i += 1
    }
}

/// `reluGradientFloat` with the gradient flowing in formed from a max-pool's (`PooledGradient`) as it is read
/// (`spreadPooledGradient`): the same values, so the same bits, as the stored gradient.
@inlinable
func reluGradientFromPool(gradient: UnsafePointer<Float>, argmax: UnsafePointer<UInt8>, normalized: UnsafePointer<Float>,
                          into d: UnsafeMutablePointer<Float>, images: Int, height h: Int, width w: Int,
                          gamma: Float, beta: Float, affine: Bool, probe: UnsafeMutablePointer<ProbeLanes>? = nil) {
    typealias V = SIMD16<Float>
    let g = V(repeating: gamma), b = V(repeating: beta)
    var lanes = probe?.pointee ?? ProbeLanes()
    spreadPooledGradient(gradient, argmax: argmax, planes: images, height: h, width: w) { offset, incoming, fresh in
        let h = UnsafeRawPointer(normalized + offset).loadUnaligned(as: V.self)
        let out = affine ? h * g + b : h
        let cleared = unsafeBitCast(out .<= V(), to: SIMD16<UInt32>.self)
        let bits = unsafeBitCast(incoming, to: SIMD16<UInt32>.self)
        UnsafeMutableRawPointer(d + offset).storeBytes(of: unsafeBitCast(bits & ~cleared, to: V.self), as: V.self)
        // The gradient flowing in, each position once (a row's last block may repeat positions).
        if probe != nil { lanes.add(unsafeBitCast(bits & fresh, to: V.self)) }
    }
    probe?.pointee = lanes
}

/// ∂L/∂x = (γ·g − mean(∂L/∂x̂) − x̂·projection)/s, in place when `into` is `gradient`.
@inlinable
func inputGradientFloat(gradient: UnsafePointer<Float>, normalized: UnsafePointer<Float>, into d: UnsafeMutablePointer<Float>,
                        count: Int, gamma: Float, meanGradient: Float, projection: Float, std: Float,
                        probe: UnsafeMutablePointer<ProbeLanes>? = nil) {
    typealias V = SIMD16<Float>
    let gr = UnsafeRawPointer(gradient), nr = UnsafeRawPointer(normalized), dr = UnsafeMutableRawPointer(d)
    let gam = V(repeating: gamma), mean = V(repeating: meanGradient), proj = V(repeating: projection), s = V(repeating: std)
    var i = 0
    if let probe {
        // ∂L/∂x probed from the registers (a second pass over the channel would read it all again).
        var lanes = probe.pointee
        while i + 16 <= count {
            let offset = i &* 4
            let g = gr.loadUnaligned(fromByteOffset: offset, as: V.self), n = nr.loadUnaligned(fromByteOffset: offset, as: V.self)
            let dx = (gam * g - mean - n * proj) / s
            dr.storeBytes(of: dx, toByteOffset: offset, as: V.self)
            lanes.add(dx)
            i += 16
        }
        while i < count {
            d[i] = (gamma * gradient[i] - meanGradient - normalized[i] * projection) / std
            lanes.add(d[i])
            i += 1
        }
        probe.pointee = lanes
        return
    }
    while i + 16 <= count {
        let offset = i &* 4
        let g = gr.loadUnaligned(fromByteOffset: offset, as: V.self), n = nr.loadUnaligned(fromByteOffset: offset, as: V.self)
        dr.storeBytes(of: (gam * g - mean - n * proj) / s, toByteOffset: offset, as: V.self)
        i += 16
    }
    while i < count {
        d[i] = (gamma * gradient[i] - meanGradient - normalized[i] * projection) / std
        i += 1
    }
}
