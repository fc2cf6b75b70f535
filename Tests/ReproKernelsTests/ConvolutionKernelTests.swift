import Testing
import ReproKernels
import ReproNN

/// The portable convolution (chunked by images, without a column matrix where it can) against the reference
/// order: im2col of the whole batch + the portable GEMM, which `PortableKernelTests` checks against scalar code.
@Suite struct ConvolutionKernelTests {
    /// (input channels, batch, height, width, kernel, output channels): conv1 and conv2 of LeNet-5 at small
    /// batches (5 images of 10×10 outputs leave a partial chunk of 4), a 16-wide output row, 8×14 outputs and
    /// 7×9 outputs (the weight gradient reads per-chunk shifted copies, where a group of 8 positions crosses into
    /// the next image after 4 lanes for conv2, after 7 and 6 for 7×9), 8×18 outputs (it reads the image in place,
    /// and groups cross row ends after 2, 4 and 6 lanes), 8×17 outputs (two groups of one forward tile cross row
    /// ends), odd sizes. `WeightGradientSource` says which shape takes which path of the weight gradient; the
    /// forward reads 28×28, 16×16, 8×18 and 8×17 outputs in place (rows of 16 or more, whole groups per image),
    /// with forward tiles whose first, second, third, none or two of their groups cross a row end.
    static let shapes: [ConvolutionShape] = [
        ConvolutionShape(inChannels: 3, batch: 3, height: 32, width: 32, kernelSize: 5, outChannels: 6),
        ConvolutionShape(inChannels: 6, batch: 5, height: 14, width: 14, kernelSize: 5, outChannels: 16),
        ConvolutionShape(inChannels: 2, batch: 2, height: 20, width: 20, kernelSize: 5, outChannels: 7),
        ConvolutionShape(inChannels: 2, batch: 3, height: 9, width: 11, kernelSize: 3, outChannels: 5),
        ConvolutionShape(inChannels: 2, batch: 2, height: 12, width: 18, kernelSize: 5, outChannels: 5),
        ConvolutionShape(inChannels: 2, batch: 2, height: 12, width: 22, kernelSize: 5, outChannels: 5),
        ConvolutionShape(inChannels: 2, batch: 2, height: 12, width: 21, kernelSize: 5, outChannels: 5),
        ConvolutionShape(inChannels: 1, batch: 1, height: 5, width: 5, kernelSize: 5, outChannels: 1),
    ]

    struct Results<T: KernelScalar> { var forward: [T]; var weightGradient: [T]; var inputGradient: [T] }

    /// `input`: the input's values, by default random ones (seed 1).
    static func run<T: KernelScalar>(_ s: ConvolutionShape, _ kernels: any Kernels, chunked: Bool, as _: T.Type,
                                     input: [T]? = nil) -> Results<T> {
        let x: [T] = input ?? PortableKernelTests.values(s.inChannels * s.batch * s.height * s.width, seed: 1).map { T($0) }
        let w: [T] = PortableKernelTests.values(s.outChannels * s.rows, seed: 2).map { T($0) }
        let bias: [T] = PortableKernelTests.values(s.outChannels, seed: 3).map { T($0) }
        let dy: [T] = PortableKernelTests.values(s.outChannels * s.columns, seed: 4).map { T($0) }
        var y = [T](repeating: 0, count: s.outChannels * s.columns), dw = [T](repeating: 0, count: w.count)
        var dx = [T](repeating: .nan, count: x.count), columns = [T]()
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
            dy.withUnsafeBufferPointer { gp in y.withUnsafeMutableBufferPointer { yp in dw.withUnsafeMutableBufferPointer { dwp in
                dx.withUnsafeMutableBufferPointer { dxp in
                    if chunked {
                        kernels.convolutionForward(s, input: xp.baseAddress!, weight: wp.baseAddress!, bias: bp.baseAddress!,
                                                   output: yp.baseAddress!, columns: &columns)
                        kernels.convolutionWeightGradient(s, input: xp.baseAddress!, outputGradient: gp.baseAddress!,
                                                          weightGradient: dwp.baseAddress!, columns: &columns)
                        kernels.convolutionInputGradient(s, weight: wp.baseAddress!, outputGradient: gp.baseAddress!,
                                                         inputGradient: dxp.baseAddress!)
                    } else {
                        ConvolutionByColumns.forward(s, kernels: kernels, input: xp.baseAddress!, weight: wp.baseAddress!,
                                                     bias: bp.baseAddress!, output: yp.baseAddress!, columns: &columns)
                        ConvolutionByColumns.weightGradient(s, kernels: kernels, input: xp.baseAddress!,
                                                            outputGradient: gp.baseAddress!, weightGradient: dwp.baseAddress!,
                                                            columns: &columns)
                        ConvolutionByColumns.inputGradient(s, kernels: kernels, weight: wp.baseAddress!,
                                                           outputGradient: gp.baseAddress!, inputGradient: dxp.baseAddress!)
                    }
                }
            } } }
        } } }
        return Results(forward: y, weightGradient: dw, inputGradient: dx)
    }

    static func bits<T: KernelScalar>(_ v: [T]) -> [UInt64] {
        v.map { value in withUnsafeBytes(of: value) { raw in raw.count == 4 ? UInt64(raw.load(as: UInt32.self)) : raw.load(as: UInt64.self) } }
    }

    @Test(arguments: shapes)
    func portableConvolutionMatchesTheColumnMatrixPathBitForBit(shape: ConvolutionShape) {
        let reference = Self.run(shape, PortableKernels(threads: 1), chunked: false, as: Float.self)
        let referenceDouble = Self.run(shape, PortableKernels(threads: 1), chunked: false, as: Double.self)
        for threads in [1, 2, 3] {
            let k = PortableKernels(threads: threads)
            let r = Self.run(shape, k, chunked: true, as: Float.self)
            #expect(Self.bits(r.forward) == Self.bits(reference.forward), "forward \(shape) threads \(threads)")
            #expect(Self.bits(r.weightGradient) == Self.bits(reference.weightGradient), "dW \(shape) threads \(threads)")
            #expect(Self.bits(r.inputGradient) == Self.bits(reference.inputGradient), "dX \(shape) threads \(threads)")
            let d = Self.run(shape, k, chunked: true, as: Double.self)
            #expect(Self.bits(d.forward) == Self.bits(referenceDouble.forward), "Double forward \(shape) threads \(threads)")
            #expect(Self.bits(d.weightGradient) == Self.bits(referenceDouble.weightGradient), "Double dW \(shape)")
            #expect(Self.bits(d.inputGradient) == Self.bits(referenceDouble.inputGradient), "Double dX \(shape)")
        }
    }

    /// Channels that repeat channel 0 (MNIST as the notebook feeds it) take the weight gradient's shortcut
    /// (channel 0's taps computed once, copied): the same bits as the column-matrix path, on every thread
    /// count. Negative control: one value changed in the last image of the last channel must turn the
    /// shortcut off, or the copied rows would be wrong there, and the comparison catches it (shown by
    /// breaking the check to compare only the first image: this test fails).
    @Test(arguments: [shapes[0], shapes[1]])
    func repeatedChannelsGiveTheSameBits(shape s: ConvolutionShape) {
        let plane = s.batch * s.height * s.width
        let gray: [Float] = PortableKernelTests.values(plane, seed: 7).map { Float($0) }
        let repeated = (0..<s.inChannels).flatMap { _ in gray }
        var spoiled = repeated
        spoiled[spoiled.count - 1] += 100  // enough to move the one weight gradient it enters (a tap of the last position)
        for input in [repeated, spoiled] {
            let reference = Self.run(s, PortableKernels(threads: 1), chunked: false, as: Float.self, input: input)
            for threads in [1, 2, 3] {
                let r = Self.run(s, PortableKernels(threads: threads), chunked: true, as: Float.self, input: input)
                #expect(Self.bits(r.weightGradient) == Self.bits(reference.weightGradient), "dW \(s) threads \(threads)")
            }
        }
        // The shortcut's rows are copies: the channels' gradients are equal with repeated input, not with the spoiled one.
        let k2 = s.kernelSize * s.kernelSize
        func channel(_ dw: [Float], _ c: Int) -> [Float] {
            var values = [Float]()
            for o in 0..<s.outChannels {
                let start = o * s.rows + c * k2
                values += dw[start..<(start + k2)]
            }
            return values
        }
        let same = Self.run(s, PortableKernels(threads: 2), chunked: true, as: Float.self, input: repeated).weightGradient
        let differs = Self.run(s, PortableKernels(threads: 2), chunked: true, as: Float.self, input: spoiled).weightGradient
        #expect(Self.bits(channel(same, 0)) == Self.bits(channel(same, s.inChannels - 1)))
        #expect(Self.bits(channel(differs, 0)) != Self.bits(channel(differs, s.inChannels - 1)))
    }

    /// Independent check of the values: the definition summed in Float64, against the Float kernels within
    /// a bound for Float rounding (|Δ| ≤ 1e-5·Σ|terms|: 75–150 terms of unit roundoff 6e-8 each).
    @Test(arguments: shapes)
    func portableConvolutionMatchesTheDefinitionInFloat64(shape s: ConvolutionShape) {
        let r = Self.run(s, PortableKernels(threads: 2), chunked: true, as: Float.self)
        let x = PortableKernelTests.values(s.inChannels * s.batch * s.height * s.width, seed: 1).map(Double.init)
        let w = PortableKernelTests.values(s.outChannels * s.rows, seed: 2).map(Double.init)
        let bias = PortableKernelTests.values(s.outChannels, seed: 3).map(Double.init)
        let dy = PortableKernelTests.values(s.outChannels * s.columns, seed: 4).map(Double.init)
        let k = s.kernelSize, oh = s.outHeight, ow = s.outWidth, h = s.height, wd = s.width
        func xAt(_ c: Int, _ n: Int, _ i: Int, _ j: Int) -> Double { x[((c * s.batch + n) * h + i) * wd + j] }
        var worst = 0.0
        func check(_ got: Float, _ terms: [Double]) {
            let scale = terms.reduce(0) { $0 + abs($1) }
            worst = max(worst, abs(Double(got) - terms.reduce(0, +)) / max(scale, 1e-30))
        }
        for o in 0..<s.outChannels { for n in 0..<s.batch { for i in 0..<oh { for j in 0..<ow {
            var terms = [bias[o]]
            for c in 0..<s.inChannels { for ki in 0..<k { for kj in 0..<k {
                terms.append(w[((o * s.inChannels + c) * k + ki) * k + kj] * xAt(c, n, i + ki, j + kj))
            } } }
            check(r.forward[((o * s.batch + n) * oh + i) * ow + j], terms)
        } } } }
        for o in 0..<s.outChannels { for c in 0..<s.inChannels { for ki in 0..<k { for kj in 0..<k {
            var terms = [Double]()
            for n in 0..<s.batch { for i in 0..<oh { for j in 0..<ow {
                terms.append(dy[((o * s.batch + n) * oh + i) * ow + j] * xAt(c, n, i + ki, j + kj))
            } } }
            check(r.weightGradient[((o * s.inChannels + c) * k + ki) * k + kj], terms)
        } } } }
        for c in 0..<s.inChannels { for n in 0..<s.batch { for yy in 0..<h { for xx in 0..<wd {
            var terms = [Double]()
            for o in 0..<s.outChannels { for ki in 0..<k { for kj in 0..<k {
                let i = yy - ki, j = xx - kj
                if i >= 0, i < oh, j >= 0, j < ow {
                    terms.append(dy[((o * s.batch + n) * oh + i) * ow + j] * w[((o * s.inChannels + c) * k + ki) * k + kj])
                }
            } } }
            check(r.inputGradient[((c * s.batch + n) * h + yy) * wd + xx], terms)
        } } } }
        #expect(worst < 1e-5, "worst relative error \(worst) for \(s)")
    }

    /// Negative control: the bit-for-bit comparison above does see a different order. The same convolution
    /// summed in reverse order (p from last to first, columns from last to first), without fused
    /// multiply-adds, gives other bits on conv1's shape. (OpenBLAS is no reliable "other order": on some CPUs
    /// its kernel happens to sum conv1's 75 terms exactly as the portable one does.)
    @Test func negativeControlAnotherOrderIsDetected() {
        let s = Self.shapes[0]
        let portable = Self.run(s, PortableKernels(threads: 1), chunked: true, as: Float.self)
        let x: [Float] = PortableKernelTests.values(s.inChannels * s.batch * s.height * s.width, seed: 1).map { Float($0) }
        let w: [Float] = PortableKernelTests.values(s.outChannels * s.rows, seed: 2).map { Float($0) }
        let bias: [Float] = PortableKernelTests.values(s.outChannels, seed: 3).map { Float($0) }
        let dy: [Float] = PortableKernelTests.values(s.outChannels * s.columns, seed: 4).map { Float($0) }
        let k = s.kernelSize, oh = s.height - k + 1, ow = s.width - k + 1
        // column q = (n, i, j), row p = (c, ki, kj): the im2col matrix entry.
        func column(_ p: Int, _ q: Int) -> Float {
            let c = p / (k * k), ki = p / k % k, kj = p % k
            let n = q / (oh * ow), i = q / ow % oh, j = q % ow
            return x[((c * s.batch + n) * s.height + i + ki) * s.width + j + kj]
        }
        var forward = [Float](repeating: 0, count: s.outChannels * s.columns), magnitude = forward
        var weightGradient = [Float](repeating: 0, count: w.count)
        for o in 0..<s.outChannels {
            for q in 0..<s.columns {
                var acc: Float = 0
                for p in (0..<s.rows).reversed() {
                    acc = acc + w[o * s.rows + p] * column(p, q)
                    magnitude[o * s.columns + q] += abs(w[o * s.rows + p] * column(p, q))
                }
                forward[o * s.columns + q] = bias[o] + acc
            }
            for p in 0..<s.rows {
                var acc: Float = 0
                for q in (0..<s.columns).reversed() { acc = acc + dy[o * s.columns + q] * column(p, q) }
                weightGradient[o * s.rows + p] = acc
            }
        }
        #expect(Self.bits(portable.forward) != Self.bits(forward))
        #expect(Self.bits(portable.weightGradient) != Self.bits(weightGradient))
        // …while the values agree to float32 rounding of 75 terms: the same convolution, only in another order.
        #expect(forward.indices.allSatisfy { abs(portable.forward[$0] - forward[$0]) <= 1e-5 * (magnitude[$0] + abs(bias[$0 / s.columns])) })
    }
}

extension ConvolutionShape: CustomTestStringConvertible {
    public var testDescription: String {
        "\(inChannels)×\(height)×\(width) k\(kernelSize) → \(outChannels), batch \(batch)"
    }
}
