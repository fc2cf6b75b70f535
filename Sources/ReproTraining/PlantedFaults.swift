import ReproKernels

/// A planted fault that does not fit the run (a BatchNorm layer the model does not have): bad input.
public struct PlantedFaultError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The run's kernels, except that conv2's forward (the convolution with 6 input channels) adds its input
/// channels in reverse order: mathematically the same sums, rounded differently. A planted regression for
/// the localization tests (`Trainer.Perturbation.conv2ForwardReordered`); never used by a real run.
struct ReorderedConv2Kernels: Kernels {
    let base: any Kernels
    var threads: Int { base.threads }

    func gemm<T: KernelScalar>(
        _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
        alpha: T, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        base.gemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    func sum<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> T { base.sum(x) }
    func sumOfSquaredDeviations<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, from center: T) -> T {
        base.sumOfSquaredDeviations(x, from: center)
    }
    func dot<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> T { base.dot(x, y) }
    func exp<T: KernelScalar>(_ x: T) -> T { base.exp(x) }
    func log<T: KernelScalar>(_ x: T) -> T { base.log(x) }

    func convolutionForward<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
        output: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        // The true forward first: it leaves the workspace the weight gradient expects.
        base.convolutionForward(shape, input: input, weight: weight, bias: bias, output: output, columns: &columns)
        guard shape.inChannels == 6 else { return }
        let c = shape.inChannels, plane = shape.batch * shape.height * shape.width, taps = shape.kernelSize * shape.kernelSize
        var reversedInput = [T](repeating: 0, count: c * plane), reversedWeight = [T](repeating: 0, count: shape.outChannels * c * taps)
        for ch in 0..<c {
            for i in 0..<plane { reversedInput[(c - 1 - ch) * plane + i] = input[ch * plane + i] }
            for o in 0..<shape.outChannels {
                for t in 0..<taps { reversedWeight[(o * c + c - 1 - ch) * taps + t] = weight[(o * c + ch) * taps + t] }
            }
        }
        var scratch = [T]()
        base.convolutionForward(shape, input: reversedInput, weight: reversedWeight, bias: bias, output: output, columns: &scratch)
    }

    func convolutionWeightGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        weightGradient: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        base.convolutionWeightGradient(shape, input: input, outputGradient: outputGradient, weightGradient: weightGradient, columns: &columns)
    }

    func convolutionInputGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, weight: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        inputGradient: UnsafeMutablePointer<T>
    ) {
        base.convolutionInputGradient(shape, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient)
    }
}
