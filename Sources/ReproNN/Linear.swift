import ReproKernels

/// y = W·x + b on feature-major activations: X is [in][N], Y is [out][N], W is [out, in] as in PyTorch.
public final class Linear<T: KernelScalar> {
    /// The layer's name in the model ("fc3"): its parameters' prefix and its place in the trace.
    public let name: String
    public let inFeatures: Int
    public let outFeatures: Int
    public let weight: NamedTensor<T>
    public let bias: NamedTensor<T>
    @usableFromInline let kernels: any Kernels
    @usableFromInline var input: FeatureMap<T>?

    public init(_ name: String, inFeatures: Int, outFeatures: Int, kernels: any Kernels) {
        self.name = name
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.kernels = kernels
        weight = NamedTensor(name: "\(name).weight", shape: [outFeatures, inFeatures], isParameter: true,
                             value: [T](repeating: 0, count: outFeatures * inFeatures))
        bias = NamedTensor(name: "\(name).bias", shape: [outFeatures], isParameter: true,
                           value: [T](repeating: 0, count: outFeatures))
    }

    public var parameters: [NamedTensor<T>] { [weight, bias] }

    @inlinable
    public func forward(_ x: FeatureMap<T>) -> FeatureMap<T> {
        precondition(x.channels * x.spatial == inFeatures, "Linear expects \(inFeatures) features")
        let n = x.batch
        input = x
        var y = [T](overwrittenCount: outFeatures * n)
        weight.value.withUnsafeBufferPointer { w in x.data.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            // Bias first, then accumulate W·X on top (beta = 1). A fill per row: indexing the array element by
            // element (bounds-checked) took ~20 µs of the serial part of a step.
            for o in 0..<outFeatures { (yp.baseAddress! + o * n).update(repeating: bias.value[o], count: n) }
            kernels.gemm(.none, .none, m: outFeatures, n: n, k: inFeatures, alpha: 1, a: w.baseAddress!, lda: inFeatures,
                         b: xp.baseAddress!, ldb: n, beta: 1, c: yp.baseAddress!, ldc: n)
        } } }
        return FeatureMap(channels: outFeatures, batch: n, data: y)
    }

    /// Fills weight.grad and bias.grad; returns ∂L/∂x (feature-major [in][N]).
    @inlinable
    public func backward(_ dy: FeatureMap<T>) -> FeatureMap<T> {
        guard let x = input else { preconditionFailure("Linear.backward before forward") }
        let n = x.batch
        dy.data.withUnsafeBufferPointer { g in
            for o in 0..<outFeatures {
                bias.grad[o] = kernels.sum(UnsafeBufferPointer(rebasing: g[(o * n)..<((o + 1) * n)]))
            }
            x.data.withUnsafeBufferPointer { xp in weight.grad.withUnsafeMutableBufferPointer { dw in
                kernels.gemm(.none, .transposed, m: outFeatures, n: inFeatures, k: n, alpha: 1, a: g.baseAddress!, lda: n,
                             b: xp.baseAddress!, ldb: n, beta: 0, c: dw.baseAddress!, ldc: inFeatures)
            } }
        }
        var dx = [T](overwrittenCount: inFeatures * n)  // beta = 0: the GEMM writes every element
        weight.value.withUnsafeBufferPointer { w in dy.data.withUnsafeBufferPointer { g in dx.withUnsafeMutableBufferPointer { d in
            kernels.gemm(.transposed, .none, m: inFeatures, n: n, k: outFeatures, alpha: 1, a: w.baseAddress!, lda: inFeatures,
                         b: g.baseAddress!, ldb: n, beta: 0, c: d.baseAddress!, ldc: n)
        } } }
        return FeatureMap(channels: x.channels, batch: n, height: x.height, width: x.width, data: dx)
    }
}
