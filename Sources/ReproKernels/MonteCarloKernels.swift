/// Monte Carlo arithmetic at the kernel seam: the base kernels' results, each perturbed by a random amount
/// of the size its own roundings could have moved it. A replica (`seed`, `replica`) is deterministic: the
/// perturbation of a value is a hash of the seed, the replica, the value's bits and its index, so neither
/// thread scheduling nor call order changes it. Never used by a plain run.
///
/// The model. A result r = Σᵢ tᵢ of n terms (a GEMM or convolution output, a reduction) computed in another
/// order, by another library or with other partial sums moves by at most about u·√n·Σ|tᵢ| in practice
/// (u = 2⁻²⁴ for float32; a random-walk bound over the n roundings of partial sums no larger than Σ|tᵢ|).
/// Each result here moves by ξ·u·√n·Σ|tᵢ|, ξ uniform in [−1, 1]: as large as a reordered sum's difference,
/// where rounding the output once (ξ·u·|r|) would be √n·Σ|tᵢ|/|r| times too small for long or cancelling
/// sums. Σ|tᵢ| comes from the same kernel run on the terms' absolute values (the replica's slower path).
/// exp and log round once: ξ·u·|r|. For cancelling sums (BatchNorm's ∂γ and ∂β) this is wider than a
/// reordered sum's typical error, u·√n·√(r² + Σtᵢ²); the narrower model was measured and rejected: another
/// OpenBLAS kernel flips ReLU decisions whose one-term jumps in such sums it does not cover
/// (docs/verifying.md, "Round-off envelopes").
public struct MonteCarloKernels: Kernels {
    public let base: any Kernels
    public let seed: UInt64
    public let replica: UInt32
    /// The perturbation in units of the model's (1); 0 perturbs nothing (the negative control of the tests).
    public let scale: Double

    public init(base: any Kernels, seed: UInt64, replica: UInt32, scale: Double = 1) {
        self.base = base
        self.seed = seed
        self.replica = replica
        self.scale = scale
    }

    public var threads: Int { base.threads }

    /// ξ in [−1, 1) for a value at an index (`MonteCarloKernels.xi(seed:replica:value:index:)`).
    func xi<T: KernelScalar>(_ value: T, index: Int) -> T { Self.xi(seed: seed, replica: replica, value: value, index: index) }

    /// ξ in [−1, 1): SplitMix64's finalizer over the replica's key, the value's bits and its index. Also
    /// what a replica's element-wise perturbations outside the kernels use (`RoundingReplica`), with their
    /// own index ranges.
    @inlinable
    public static func xi<T: KernelScalar>(seed: UInt64, replica: UInt32, value: T, index: Int) -> T {
        var z = seed &+ (UInt64(replica) &+ 1) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(truncatingIfNeeded: index) &* 0xD1B5_4A32_D192_ED03
        z ^= Double(value).bitPattern
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return T(Double(Int64(bitPattern: z >> 11)) * 0x1p-52 - 1)  // < 2⁵³: exact; a signed conversion is one instruction
    }

    /// The unit roundoff of T.
    func unit<T: KernelScalar>(_: T.Type) -> T { T(scale) * T.ulpOfOne / 2 }

    /// r + ξ·u·√n·magnitude, element by element.
    func perturb<T: KernelScalar>(_ r: UnsafeMutablePointer<T>, count: Int, terms: Int, magnitudes: [T]) {
        let scale = unit(T.self) * T(Double(terms).squareRoot())
        for i in 0..<count { r[i] += xi(r[i], index: i) * scale * magnitudes[i] }
    }

    public func gemm<T: KernelScalar>(
        _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
        alpha: T, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        // Concrete Float code, which the compiler specializes (layers call through `any Kernels`).
        if T.self == Float.self {
            return gemmBody(transA, transB, m: m, n: n, k: k, alpha: unsafeBitCast(alpha, to: Float.self), a: Self.float(a), lda: lda,
                            b: Self.float(b), ldb: ldb, beta: unsafeBitCast(beta, to: Float.self),
                            c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), ldc: ldc)
        }
        gemmBody(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    static func float<T>(_ p: UnsafePointer<T>) -> UnsafePointer<Float> { UnsafeRawPointer(p).assumingMemoryBound(to: Float.self) }

    func gemmBody<T: KernelScalar>(
        _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
        alpha: T, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        // Σ|terms| of every output: |alpha|·|op(A)|·|op(B)| + |beta·C|, before C is overwritten (with beta = 0,
        // C's old contents are not read: they may be anything).
        let rowsA = transA == .none ? m : k, rowsB = transB == .none ? k : n
        let absA = absolute(a, rowsA * lda), absB = absolute(b, rowsB * ldb)
        var magnitude = [T](repeating: 0, count: m * n)
        if beta != 0 { for i in 0..<m { for j in 0..<n { magnitude[i * n + j] = abs(beta * c[i * ldc + j]) } } }
        base.gemm(transA, transB, m: m, n: n, k: k, alpha: abs(alpha), a: absA, lda: lda, b: absB, ldb: ldb,
                  beta: 1, c: &magnitude, ldc: n)
        base.gemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        let scale = unit(T.self) * T(Double(k + (beta == 0 ? 0 : 1)).squareRoot())
        for i in 0..<m {
            for j in 0..<n { c[i * ldc + j] += xi(c[i * ldc + j], index: i * n + j) * scale * magnitude[i * n + j] }
        }
    }

    func sumBody<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> T {
        let r = base.sum(x), magnitude = absolute(x).withUnsafeBufferPointer { base.sum($0) }
        return r + xi(r, index: 0) * unit(T.self) * T(Double(x.count).squareRoot()) * magnitude
    }

    public func sumOfSquaredDeviations<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, from center: T) -> T {
        let r = base.sumOfSquaredDeviations(x, from: center)  // every term ≥ 0: Σ|terms| is the result
        return r + xi(r, index: 1) * unit(T.self) * T(Double(x.count).squareRoot()) * r
    }

    func dotBody<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> T {
        let r = base.dot(x, y)
        let ax = absolute(x), ay = absolute(y)
        let magnitude = ax.withUnsafeBufferPointer { px in ay.withUnsafeBufferPointer { py in base.dot(px, py) } }
        return r + xi(r, index: 2) * unit(T.self) * T(Double(x.count).squareRoot()) * magnitude
    }

    public func exp<T: KernelScalar>(_ x: T) -> T { let r = base.exp(x); return r + xi(r, index: 3) * unit(T.self) * abs(r) }
    public func log<T: KernelScalar>(_ x: T) -> T { let r = base.log(x); return r + xi(r, index: 4) * unit(T.self) * abs(r) }

    /// The sum's own model, ξ·u·√n·Σ|tᵢ|: late in training a sample's loss best + log(total) − z[target] is
    /// ~10⁻⁵ while its terms are ~10, so its roundings, not log's, set how far another formula lands (PyTorch's
    /// log_softmax, measured by repro-torch: 1,970 envelopes before this term).
    public func elementwiseSum<T: KernelScalar>(_ r: T, terms: Int, magnitude: T, index: Int) -> T {
        r + xi(r, index: 5 &+ 8 &* index) * unit(T.self) * T(Double(terms).squareRoot()) * magnitude
    }

    func convolutionForwardBody<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
        output: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        let s = Sizes(shape)
        var magnitude = [T](repeating: 0, count: s.output), scratch = [T]()
        base.convolutionForward(shape, input: absolute(input, s.input), weight: absolute(weight, s.weight),
                                bias: absolute(bias, shape.outChannels), output: &magnitude, columns: &scratch)
        base.convolutionForward(shape, input: input, weight: weight, bias: bias, output: output, columns: &columns)
        perturb(output, count: s.output, terms: shape.rows + 1, magnitudes: magnitude)
    }

    func convolutionWeightGradientBody<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        weightGradient: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        // Σ|x|·|dY| with a workspace of its own (an im2col base fills it from |x|), so `columns` stays the true input's.
        let s = Sizes(shape), absInput = absolute(input, s.input)
        var magnitude = [T](repeating: 0, count: s.weight), scratch = [T]()
        base.convolutionWeightGradient(shape, input: absInput, outputGradient: absolute(outputGradient, s.output),
                                       weightGradient: &magnitude, columns: &scratch)
        base.convolutionWeightGradient(shape, input: input, outputGradient: outputGradient, weightGradient: weightGradient, columns: &columns)
        perturb(weightGradient, count: s.weight, terms: shape.columns, magnitudes: magnitude)
    }

    func convolutionInputGradientBody<T: KernelScalar>(
        _ shape: ConvolutionShape, weight: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        inputGradient: UnsafeMutablePointer<T>
    ) {
        let s = Sizes(shape)
        var magnitude = [T](repeating: 0, count: s.input)
        base.convolutionInputGradient(shape, weight: absolute(weight, s.weight), outputGradient: absolute(outputGradient, s.output),
                                      inputGradient: &magnitude)
        base.convolutionInputGradient(shape, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient)
        perturb(inputGradient, count: s.input, terms: shape.outChannels * shape.kernelSize * shape.kernelSize, magnitudes: magnitude)
    }

    public func sum<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> T {
        T.self == Float.self ? unsafeBitCast(sumBody(Self.float(x)), to: T.self) : sumBody(x)
    }

    public func dot<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> T {
        T.self == Float.self ? unsafeBitCast(dotBody(Self.float(x), Self.float(y)), to: T.self) : dotBody(x, y)
    }

    public func convolutionForward<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
        output: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        guard T.self == Float.self else {
            return convolutionForwardBody(shape, input: input, weight: weight, bias: bias, output: output, columns: &columns)
        }
        Self.asFloat(&columns) {
            convolutionForwardBody(shape, input: Self.float(input), weight: Self.float(weight), bias: Self.float(bias),
                                   output: Self.float(output), columns: &$0)
        }
    }

    public func convolutionWeightGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        weightGradient: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        guard T.self == Float.self else {
            return convolutionWeightGradientBody(shape, input: input, outputGradient: outputGradient, weightGradient: weightGradient,
                                                 columns: &columns)
        }
        Self.asFloat(&columns) {
            convolutionWeightGradientBody(shape, input: Self.float(input), outputGradient: Self.float(outputGradient),
                                          weightGradient: Self.float(weightGradient), columns: &$0)
        }
    }

    public func convolutionInputGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, weight: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        inputGradient: UnsafeMutablePointer<T>
    ) {
        guard T.self == Float.self else {
            return convolutionInputGradientBody(shape, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient)
        }
        convolutionInputGradientBody(shape, weight: Self.float(weight), outputGradient: Self.float(outputGradient),
                                     inputGradient: Self.float(inputGradient))
    }

    static func float<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
    }

    static func float<T>(_ x: UnsafeBufferPointer<T>) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: x.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: Float.self) }, count: x.count)
    }

    /// A workspace of T = Float seen as the [Float] it is.
    static func asFloat<T>(_ columns: inout [T], _ body: (inout [Float]) -> Void) {
        withUnsafeMutablePointer(to: &columns) { p in p.withMemoryRebound(to: [Float].self, capacity: 1) { body(&$0.pointee) } }
    }

    /// Element counts of a convolution's tensors.

    struct Sizes {
        let input: Int, weight: Int, output: Int
        init(_ s: ConvolutionShape) {
            (input, weight, output) = (s.inChannels * s.batch * s.height * s.width, s.outChannels * s.rows, s.outChannels * s.columns)
        }
    }

    func absolute<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> [T] { x.isEmpty ? [] : absolute(x.baseAddress!, x.count) }

    func absolute<T: KernelScalar>(_ x: UnsafePointer<T>, _ count: Int) -> [T] {
        [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            for i in 0..<count { buffer[i] = abs(x[i]) }
            initialized = count
        }
    }
}
