/// The kernel seam: every hot primitive whose bits depend on an implementation choice.
///
/// Layers call only these for GEMM, convolution, reductions and exp/log. A second implementation (for example one whose
/// results are identical on every machine) is a new type conforming to this protocol, in a new file.
/// Implementations must give identical bits for identical inputs run after run (no dependence on thread
/// scheduling); whether they also agree across machines is each implementation's documented property.
public protocol Kernels: Sendable {

    /// Threads for work that layers split themselves into whole outputs (channels, images) with `Parallel`;
    /// splitting that way changes the time, never the bits.
    var threads: Int { get }

    /// C = alpha·op(A)·op(B) + beta·C, all matrices row-major. op(A) is m×k, op(B) is k×n, C is m×n.
    func gemm<T: KernelScalar>(
        _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
        alpha: T, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T, c: UnsafeMutablePointer<T>, ldc: Int)

    /// Σ x in this implementation's fixed order.
    func sum<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> T
    /// Σ (x − center)² in this implementation's fixed order.
    func sumOfSquaredDeviations<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, from center: T) -> T
    /// Σ x·y in this implementation's fixed order.
    func dot<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> T

    func exp<T: KernelScalar>(_ x: T) -> T
    func log<T: KernelScalar>(_ x: T) -> T

    /// A short sum a layer forms itself, element by element (the loss's logsumexp(z) − z[target]): r, the
    /// result, formed from `terms` terms whose magnitudes add to `magnitude`. Every implementation returns r
    /// unchanged (the default below); Monte Carlo arithmetic moves it by its roundings, as it moves a kernel's
    /// sum. `index` tells values of one call apart.
    func elementwiseSum<T: KernelScalar>(_ r: T, terms: Int, magnitude: T, index: Int) -> T

    /// Y[o][n][r][q] = bias[o] + Σ_p W[o][p]·x[c][n][r + ki][q + kj], p = (c, ki, kj) (see `ConvolutionShape`).
    /// `columns` is the implementation's workspace, kept by the layer from the forward to the weight gradient.
    func convolutionForward<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
        output: UnsafeMutablePointer<T>, columns: inout [T])
    /// dW[o][p] = Σ_(n,r,q) dY[o][n][r][q]·x[c][n][r + ki][q + kj] for the input of the last forward.
    func convolutionWeightGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        weightGradient: UnsafeMutablePointer<T>, columns: inout [T])
    /// dX[c][n][y][x] = Σ dY[o][n][r][q]·W[o][c][ki][kj] over r + ki = y, q + kj = x; dX is overwritten.
    func convolutionInputGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, weight: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        inputGradient: UnsafeMutablePointer<T>)
}

/// Both implementations reduce in the one fixed order of `FixedOrderReductions` (already the same bits on
/// every machine); an implementation with another order overrides these.
extension Kernels {
    @inlinable
    public func sum<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> T { FixedOrderReductions.sumSpecialized(x) }

    @inlinable
    public func sumOfSquaredDeviations<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, from center: T) -> T {
        FixedOrderReductions.sumOfSquaredDeviationsSpecialized(x, from: center)
    }

    @inlinable
    public func dot<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> T {
        FixedOrderReductions.dotSpecialized(x, y)
    }

    /// Without a convolution of its own, an implementation runs im2col of the batch + its GEMM.
    @inlinable
    public func convolutionForward<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
        output: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        ConvolutionByColumns.forward(shape, kernels: self, input: input, weight: weight, bias: bias, output: output,
                                     columns: &columns)
    }

    @inlinable
    public func convolutionWeightGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        weightGradient: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        ConvolutionByColumns.weightGradient(shape, kernels: self, input: input, outputGradient: outputGradient,
                                            weightGradient: weightGradient, columns: &columns)
    }

    @inlinable
    public func convolutionInputGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, weight: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        inputGradient: UnsafeMutablePointer<T>
    ) {
        ConvolutionByColumns.inputGradient(shape, kernels: self, weight: weight, outputGradient: outputGradient,
                                           inputGradient: inputGradient)
    }
}

public enum Transpose: Sendable {
    case none, transposed
}

/// Kernels that change one or two primitives of another implementation and pass the rest through
/// (planted faults, the planted legitimate reorderings): only the changed ones are written.
extension Kernels {
    @inlinable
    public func elementwiseSum<T: KernelScalar>(_ r: T, terms: Int, magnitude: T, index: Int) -> T { r }
}

public protocol ForwardingKernels: Kernels {
    var base: any Kernels { get }
}

extension ForwardingKernels {
    public var threads: Int { base.threads }

    public func gemm<T: KernelScalar>(
        _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
        alpha: T, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        base.gemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    public func sum<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> T { base.sum(x) }
    public func sumOfSquaredDeviations<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, from center: T) -> T {
        base.sumOfSquaredDeviations(x, from: center)
    }
    public func dot<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> T { base.dot(x, y) }
    public func exp<T: KernelScalar>(_ x: T) -> T { base.exp(x) }
    public func log<T: KernelScalar>(_ x: T) -> T { base.log(x) }
    public func elementwiseSum<T: KernelScalar>(_ r: T, terms: Int, magnitude: T, index: Int) -> T {
        base.elementwiseSum(r, terms: terms, magnitude: magnitude, index: index)
    }

    public func convolutionForward<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
        output: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        base.convolutionForward(shape, input: input, weight: weight, bias: bias, output: output, columns: &columns)
    }

    public func convolutionWeightGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        weightGradient: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        base.convolutionWeightGradient(shape, input: input, outputGradient: outputGradient, weightGradient: weightGradient, columns: &columns)
    }

    public func convolutionInputGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, weight: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        inputGradient: UnsafeMutablePointer<T>
    ) {
        base.convolutionInputGradient(shape, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient)
    }
}
