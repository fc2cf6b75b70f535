/// The convolution of `PortableKernels`: the same arithmetic as im2col of the whole batch + `PortableGEMM`
/// (so the same bits), done a few images at a time so that their column matrix (75 × 784 values for
/// conv1, 235 KB) stays in cache instead of a 30 MB matrix going through memory twice per step.
///
/// - Forward: threads take whole images; each output is bias + the axpy-form sum over p, as before.
/// - Chunks are the fewest images whose output positions fill whole 16-lane blocks (1 image for conv1's
///   28×28, 4 for conv2's 10×10).
/// - Weight gradient: the dot form's 16 lane sums per (o, p) are kept across chunks, so the lanes see the
///   column index of the whole batch in increasing order exactly as one long dot product would. Threads
///   take whole rows p.
/// - Input gradient: each chunk's column gradient is computed and scattered (col2im) into its own images;
///   threads take whole chunks.
/// Measured (2 threads, batch 128, conv1): see the README's performance table.
// Each entry point re-enters concrete Float or Double code: reached through `any Kernels`, a generic body
// would run unspecialized.
extension PortableKernels {
    @inlinable
    public func convolutionForward<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
        output: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        guard PortableConvolution<T>.handles(shape) else {
            return ConvolutionByColumns.forward(shape, kernels: self, input: input, weight: weight, bias: bias,
                                                output: output, columns: &columns)
        }
        columns = []
        if T.self == Float.self {
            PortableConvolution<Float>.forward(shape, input: cast(input), weight: cast(weight), bias: cast(bias),
                                               output: cast(output), threads: threads)
        } else {
            PortableConvolution<Double>.forward(shape, input: cast(input), weight: cast(weight), bias: cast(bias),
                                                output: cast(output), threads: threads)
        }
    }

    @inlinable
    public func convolutionWeightGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        weightGradient: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        guard PortableConvolution<T>.handles(shape) else {
            return ConvolutionByColumns.weightGradient(shape, kernels: self, input: input, outputGradient: outputGradient,
                                                       weightGradient: weightGradient, columns: &columns)
        }
        if T.self == Float.self {
            PortableConvolution<Float>.weightGradient(shape, input: cast(input), outputGradient: cast(outputGradient),
                                                      weightGradient: cast(weightGradient), threads: threads)
        } else {
            PortableConvolution<Double>.weightGradient(shape, input: cast(input), outputGradient: cast(outputGradient),
                                                       weightGradient: cast(weightGradient), threads: threads)
        }
    }

    @inlinable
    public func convolutionInputGradient<T: KernelScalar>(
        _ shape: ConvolutionShape, weight: UnsafePointer<T>, outputGradient: UnsafePointer<T>,
        inputGradient: UnsafeMutablePointer<T>
    ) {
        guard PortableConvolution<T>.handles(shape) else {
            return ConvolutionByColumns.inputGradient(shape, kernels: self, weight: weight, outputGradient: outputGradient,
                                                      inputGradient: inputGradient)
        }
        if T.self == Float.self {
            PortableConvolution<Float>.inputGradient(shape, weight: cast(weight), outputGradient: cast(outputGradient),
                                                     inputGradient: cast(inputGradient), threads: threads)
        } else {
            PortableConvolution<Double>.inputGradient(shape, weight: cast(weight), outputGradient: cast(outputGradient),
                                                      inputGradient: cast(inputGradient), threads: threads)
        }
    }
}

@usableFromInline
enum PortableConvolution<T: KernelScalar> {
    @usableFromInline typealias V = SIMD16<T>

    /// Concrete Float/Double only: a generic SIMD body reached through `any Kernels` runs unspecialized.
    @inlinable
    static func handles(_ s: ConvolutionShape) -> Bool { T.self == Float.self || T.self == Double.self }

    /// Images per chunk: the fewest whose output positions fill whole 16-lane blocks (1 for 28×28, 4 for 10×10),
    /// so that every chunk but the last starts at lane 0 of the whole batch's column index.
    @inlinable
    static func imagesPerChunk(_ s: ConvolutionShape) -> Int {
        var a = s.outPlane, b = 16
        while b != 0 { (a, b) = (b, a % b) }
        return 16 / a
    }

    /// Runs `body(part)` for parts 0..<parts, on up to `parts` threads. Callers give each part disjoint outputs.
    @inlinable
    static func split(_ parts: Int, _ body: @Sendable (Int) -> Void) {
        Parallel.forEach(parts, threads: parts) { range in for part in range { body(part) } }
    }

    @inlinable
    static func forward(_ s: ConvolutionShape, input x: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
                        output y: UnsafeMutablePointer<T>, threads: Int) {
        if s.width % 16 == 0 {
            return forwardDirect(s, input: x, weight: weight, bias: bias, output: y, threads: threads)
        }
        let plane = s.outPlane, rows = s.rows, cols = s.columns, group = imagesPerChunk(s)
        let chunks = (s.batch + group - 1) / group, parts = max(1, min(threads, chunks))
        // Parts write disjoint images of Y.
        nonisolated(unsafe) let x = x, weight = weight, bias = bias, y = y
        split(parts) { part in
            var chunk = [T](repeating: 0, count: rows * group * plane)
            chunk.withUnsafeMutableBufferPointer { cp in
                for g in (chunks * part / parts)..<(chunks * (part + 1) / parts) {
                    let n0 = g * group, n1 = min(s.batch, n0 + group), width = (n1 - n0) * plane
                    for n in n0..<n1 {
                        Im2col.fill(s, image: n, rows: 0..<rows, from: x, into: cp.baseAddress! + (n - n0) * plane,
                                    rowStride: width)
                    }
                    for o in 0..<s.outChannels { (y + o * cols + n0 * plane).update(repeating: bias[o], count: width) }
                    PortableGEMM<T>.axpyForm(m: s.outChannels, columns: 0..<width, k: rows, alpha: 1, a: weight, aRow: rows,
                                             aColumn: 1, b: cp.baseAddress!, ldb: width, beta: 1, c: y + n0 * plane, ldc: cols)
                }
            }
        }
    }

    /// The forward pass without a column matrix, for input rows of whole 16-lane blocks (conv1's 32 columns):
    /// 16 neighbouring outputs of a row are one SIMD vector, and their inputs for tap p = (c, ki, kj) are the
    /// 16 input values at a fixed offset, one unaligned load. Each output is still bias + Σ_p w(o,p)·x, p
    /// increasing from 0, so the bits are those of the column-matrix path. Lanes past the output row's end
    /// (q ≥ OW) compute values that are never stored; the image is copied into a zero-padded buffer so their
    /// loads stay inside it.
    @inlinable
    static func forwardDirect(_ s: ConvolutionShape, input x: UnsafePointer<T>, weight: UnsafePointer<T>,
                              bias: UnsafePointer<T>, output y: UnsafeMutablePointer<T>, threads: Int) {
        let w = s.width, hw = s.height * w, k = s.kernelSize, rows = s.rows, outs = s.outChannels
        let ow = s.outWidth, plane = s.outPlane, cols = s.columns
        var offsets = [Int](repeating: 0, count: rows)
        for p in 0..<rows { offsets[p] = (p / (k * k)) * hw + ((p / k) % k) * w + p % k }
        nonisolated(unsafe) let x = x, weight = weight, bias = bias, y = y
        let tapOffsets = offsets
        Parallel.forEach(s.batch, threads: threads) { images in
            var padded = [T](repeating: 0, count: s.inChannels * hw + w + 16)
            padded.withUnsafeMutableBufferPointer { buffer in tapOffsets.withUnsafeBufferPointer { taps in
                let image = buffer.baseAddress!
                for n in images {
                    for c in 0..<s.inChannels { (image + c * hw).update(from: x + (c * s.batch + n) * hw, count: hw) }
                    for r in 0..<s.outHeight {
                        for q0 in stride(from: 0, to: ow, by: 16) {
                            var o = 0
                            while o < outs {
                                let block = min(6, outs - o)
                                directBlock(rows: block, weight: weight + o * rows, taps: taps.baseAddress!, count: rows,
                                            input: image + r * w + q0, bias: bias + o,
                                            output: y + o * cols + n * plane + r * ow + q0, outputStride: cols,
                                            lanes: min(16, ow - q0))
                                o += block
                            }
                        }
                    }
                }
            } }
        }
    }

    /// Up to 6 output channels × 16 neighbouring outputs: acc = Σ_p w(o,p)·input[taps[p]], p increasing,
    /// then bias + acc, stored for the first `lanes` lanes.
    @inlinable
    static func directBlock(rows: Int, weight: UnsafePointer<T>, taps: UnsafePointer<Int>, count: Int,
                            input: UnsafePointer<T>, bias: UnsafePointer<T>, output: UnsafeMutablePointer<T>,
                            outputStride: Int, lanes: Int) {
        let raw = UnsafeRawPointer(input), size = MemoryLayout<T>.stride
        var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V()
        if rows == 6 {
            for p in 0..<count {
                let xv = raw.loadUnaligned(fromByteOffset: taps[p] * size, as: V.self)
                a0.addProduct(V(repeating: weight[p]), xv)
                a1.addProduct(V(repeating: weight[count + p]), xv)
                a2.addProduct(V(repeating: weight[2 * count + p]), xv)
                a3.addProduct(V(repeating: weight[3 * count + p]), xv)
                a4.addProduct(V(repeating: weight[4 * count + p]), xv)
                a5.addProduct(V(repeating: weight[5 * count + p]), xv)
            }
        } else {
            for p in 0..<count {
                let xv = raw.loadUnaligned(fromByteOffset: taps[p] * size, as: V.self)
                a0.addProduct(V(repeating: weight[p]), xv)
                if rows > 1 { a1.addProduct(V(repeating: weight[count + p]), xv) }
                if rows > 2 { a2.addProduct(V(repeating: weight[2 * count + p]), xv) }
                if rows > 3 { a3.addProduct(V(repeating: weight[3 * count + p]), xv) }
                if rows > 4 { a4.addProduct(V(repeating: weight[4 * count + p]), xv) }
            }
        }
        let sums = [a0, a1, a2, a3, a4, a5]
        for r in 0..<rows {
            let out = V(repeating: bias[r]) + sums[r], target = output + r * outputStride
            if lanes == 16 {
                UnsafeMutableRawPointer(target).storeBytes(of: out, as: V.self)
            } else {
                for lane in 0..<lanes { target[lane] = out[lane] }
            }
        }
    }

    @inlinable
    static func weightGradient(_ s: ConvolutionShape, input x: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
                               weightGradient dw: UnsafeMutablePointer<T>, threads: Int) {
        if T.self == Float.self && PortableConvolution<Float>.handlesWithoutColumns(s) {
            return PortableConvolution<Float>.weightGradientWithoutColumns(
                s, input: cast(x), outputGradient: cast(dy), weightGradient: cast(dw), threads: threads)
        }
        let plane = s.outPlane, rows = s.rows, cols = s.columns, outs = s.outChannels, group = imagesPerChunk(s)
        let parts = max(1, min(threads, rows))
        // Parts write disjoint columns p of dW.
        nonisolated(unsafe) let x = x, dy = dy, dw = dw
        split(parts) { part in
            let p0 = rows * part / parts, p1 = rows * (part + 1) / parts, count = p1 - p0
            var chunk = [T](repeating: 0, count: count * group * plane)
            var lanes = [V](repeating: V(), count: outs * count)  // lanes[o·count + (p − p0)]
            chunk.withUnsafeMutableBufferPointer { cp in lanes.withUnsafeMutableBufferPointer { lp in
                var width = 0, start = 0
                for n0 in stride(from: 0, to: s.batch, by: group) {
                    let n1 = min(s.batch, n0 + group)
                    width = (n1 - n0) * plane
                    start = n0 * plane
                    for n in n0..<n1 {
                        Im2col.fill(s, image: n, rows: p0..<p1, from: x, into: cp.baseAddress! + (n - n0) * plane,
                                    rowStride: width)
                    }
                    for p in 0..<count {
                        var o = 0
                        while o < outs {
                            let block = outs - o == 6 ? 6 : min(4, outs - o)
                            accumulate(rows: block, lanes: lp.baseAddress! + o * count + p, laneStride: count,
                                       dy: dy + o * cols + start, dyStride: cols, column: cp.baseAddress! + p * width,
                                       blocks: width / 16)
                            o += block
                        }
                    }
                }
                // Lanes combined as the dot form combines them, then the batch's last (cols mod 16) columns in
                // order; they are the tail of the last chunk, which is still in `chunk`.
                let tail = (width / 16 * 16)..<width
                for o in 0..<outs { for p in 0..<count {
                    var total = FixedOrderReductions.combine(lp[o * count + p])
                    for j in tail { total.addProduct(dy[o * cols + start + j], cp[p * width + j]) }
                    dw[o * rows + p0 + p] = total
                } }
            } }
        }
    }

    /// dX = col2im(Wᵀ·dY), chunk by chunk: each chunk's column gradient (axpy form, the same bits as the
    /// whole-batch GEMM) is scattered into its own images in the order (c, ki, kj, n, r, q) onto zeros, so
    /// every input position sums its (ki, kj) contributions in the same order as the whole-batch col2im.
    @inlinable
    static func inputGradient(_ s: ConvolutionShape, weight: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
                              inputGradient dx: UnsafeMutablePointer<T>, threads: Int) {
        let plane = s.outPlane, rows = s.rows, cols = s.columns, group = imagesPerChunk(s)
        let chunks = (s.batch + group - 1) / group, parts = max(1, min(threads, chunks))
        let k = s.kernelSize, h = s.height, w = s.width, oh = s.outHeight, ow = s.outWidth
        nonisolated(unsafe) let weight = weight, dy = dy, dx = dx
        split(parts) { part in
            var chunk = [T](repeating: 0, count: rows * group * plane)
            chunk.withUnsafeMutableBufferPointer { cp in
                for g in (chunks * part / parts)..<(chunks * (part + 1) / parts) {
                    let n0 = g * group, n1 = min(s.batch, n0 + group), width = (n1 - n0) * plane
                    PortableGEMM<T>.axpyForm(m: rows, columns: 0..<width, k: s.outChannels, alpha: 1, a: weight, aRow: 1,
                                             aColumn: rows, b: dy + n0 * plane, ldb: cols, beta: 0, c: cp.baseAddress!,
                                             ldc: width)
                    for c in 0..<s.inChannels {
                        for n in n0..<n1 { (dx + (c * s.batch + n) * h * w).update(repeating: 0, count: h * w) }
                        for ki in 0..<k { for kj in 0..<k {
                            let row = cp.baseAddress! + ((c * k + ki) * k + kj) * width
                            for n in n0..<n1 {
                                let target = dx + (c * s.batch + n) * h * w + ki * w + kj, source = row + (n - n0) * plane
                                for r in 0..<oh { Im2col.add(ow, from: source + r * ow, to: target + r * w) }
                            }
                        } }
                    }
                }
            }
        }
    }

    /// lanes[r] += Σ_b dy_r[16b..<16b+16] · column[16b..<16b+16] for up to 6 output channels r, b increasing:
    /// the dot form's lane sums continued over one more chunk.
    @inlinable
    static func accumulate(rows: Int, lanes: UnsafeMutablePointer<V>, laneStride: Int, dy: UnsafePointer<T>, dyStride: Int,
                           column: UnsafePointer<T>, blocks: Int) {
        let cRaw = UnsafeRawPointer(column), dRaw = UnsafeRawPointer(dy)
        let vBytes = 16 * MemoryLayout<T>.stride, rowBytes = dyStride * MemoryLayout<T>.stride
        if rows == 6 {
            var a0 = lanes[0], a1 = lanes[laneStride], a2 = lanes[2 * laneStride]
            var a3 = lanes[3 * laneStride], a4 = lanes[4 * laneStride], a5 = lanes[5 * laneStride]
            for b in 0..<blocks {
                let cv = cRaw.loadUnaligned(fromByteOffset: b * vBytes, as: V.self)
                a0.addProduct(dRaw.loadUnaligned(fromByteOffset: b * vBytes, as: V.self), cv)
                a1.addProduct(dRaw.loadUnaligned(fromByteOffset: rowBytes + b * vBytes, as: V.self), cv)
                a2.addProduct(dRaw.loadUnaligned(fromByteOffset: 2 * rowBytes + b * vBytes, as: V.self), cv)
                a3.addProduct(dRaw.loadUnaligned(fromByteOffset: 3 * rowBytes + b * vBytes, as: V.self), cv)
                a4.addProduct(dRaw.loadUnaligned(fromByteOffset: 4 * rowBytes + b * vBytes, as: V.self), cv)
                a5.addProduct(dRaw.loadUnaligned(fromByteOffset: 5 * rowBytes + b * vBytes, as: V.self), cv)
            }
            lanes[0] = a0; lanes[laneStride] = a1; lanes[2 * laneStride] = a2
            lanes[3 * laneStride] = a3; lanes[4 * laneStride] = a4; lanes[5 * laneStride] = a5
            return
        }
        var a0 = lanes[0], a1 = rows > 1 ? lanes[laneStride] : V(), a2 = rows > 2 ? lanes[2 * laneStride] : V()
        var a3 = rows > 3 ? lanes[3 * laneStride] : V()
        if rows == 4 {
            for b in 0..<blocks {
                let cv = cRaw.loadUnaligned(fromByteOffset: b * vBytes, as: V.self)
                a0.addProduct(dRaw.loadUnaligned(fromByteOffset: b * vBytes, as: V.self), cv)
                a1.addProduct(dRaw.loadUnaligned(fromByteOffset: rowBytes + b * vBytes, as: V.self), cv)
                a2.addProduct(dRaw.loadUnaligned(fromByteOffset: 2 * rowBytes + b * vBytes, as: V.self), cv)
                a3.addProduct(dRaw.loadUnaligned(fromByteOffset: 3 * rowBytes + b * vBytes, as: V.self), cv)
            }
        } else {
            for b in 0..<blocks {
                let cv = cRaw.loadUnaligned(fromByteOffset: b * vBytes, as: V.self)
                a0.addProduct(dRaw.loadUnaligned(fromByteOffset: b * vBytes, as: V.self), cv)
                if rows > 1 { a1.addProduct(dRaw.loadUnaligned(fromByteOffset: rowBytes + b * vBytes, as: V.self), cv) }
                if rows > 2 { a2.addProduct(dRaw.loadUnaligned(fromByteOffset: 2 * rowBytes + b * vBytes, as: V.self), cv) }
            }
        }
        lanes[0] = a0
        if rows > 1 { lanes[laneStride] = a1 }
        if rows > 2 { lanes[2 * laneStride] = a2 }
        if rows > 3 { lanes[3 * laneStride] = a3 }
    }
}

extension PortableConvolution where T == Float {
    /// Output rows of at least 16 positions and whole 16-lane blocks per image: a block of the column index
    /// then spans at most two output rows.
    @inlinable
    static func handlesWithoutColumns(_ s: ConvolutionShape) -> Bool { s.outWidth >= 16 && s.outPlane % 16 == 0 }

    /// The weight gradient of `weightGradient` without a column matrix (conv1: its im2col was 40% of the
    /// gradient's time). Lane l of block b needs the input at column index 16b + l, which lies in output row
    /// r0 or r0 + 1; both runs are one unaligned load each from the image, and a fixed per-block mask picks
    /// each lane from the right one. The lanes hold exactly the values the column matrix would, and are
    /// summed in the same order, so the bits are those of the dot form.
    @inlinable
    static func weightGradientWithoutColumns(_ s: ConvolutionShape, input x: UnsafePointer<Float>,
                                             outputGradient dy: UnsafePointer<Float>,
                                             weightGradient dw: UnsafeMutablePointer<Float>, threads: Int) {
        typealias Bits = SIMD16<UInt32>
        let w = s.width, hw = s.height * w, k = s.kernelSize, rows = s.rows, outs = s.outChannels
        let ow = s.outWidth, plane = s.outPlane, cols = s.columns, blocks = plane / 16, shift = w - ow
        var starts = [Int](repeating: 0, count: blocks), masks = [Bits](repeating: Bits(), count: blocks)
        for b in 0..<blocks {
            let r0 = 16 * b / ow, q0 = 16 * b % ow
            starts[b] = r0 * w + q0
            for lane in 0..<16 where q0 + lane < ow { masks[b][lane] = ~0 }
        }
        let taps = (0..<rows).map { p in (p / (k * k)) * hw + ((p / k) % k) * w + p % k }
        let parts = max(1, min(threads, rows))
        nonisolated(unsafe) let x = x, dy = dy, dw = dw
        let blockStarts = starts, blockMasks = masks
        split(parts) { part in
            let p0 = rows * part / parts, p1 = rows * (part + 1) / parts, count = p1 - p0
            // Loads of the second run may reach `shift` + 15 values past the last image row: pad.
            var image = [Float](repeating: 0, count: s.inChannels * hw + w + 16)
            var lanes = [V](repeating: V(), count: outs * count)
            image.withUnsafeMutableBufferPointer { ip in lanes.withUnsafeMutableBufferPointer { lp in
                blockStarts.withUnsafeBufferPointer { bs in blockMasks.withUnsafeBufferPointer { bm in
                    for n in 0..<s.batch {
                        for c in 0..<s.inChannels { (ip.baseAddress! + c * hw).update(from: x + (c * s.batch + n) * hw, count: hw) }
                        for p in p0..<p1 {
                            var o = 0
                            while o < outs {
                                let block = outs - o == 6 ? 6 : min(4, outs - o)
                                accumulateRuns(rows: block, lanes: lp.baseAddress! + o * count + (p - p0), laneStride: count,
                                               dy: dy + o * cols + n * plane, dyStride: cols,
                                               image: UnsafeRawPointer(ip.baseAddress! + taps[p]), starts: bs.baseAddress!,
                                               masks: bm.baseAddress!, shift: shift, blocks: blocks)
                                o += block
                            }
                        }
                    }
                } }
                for o in 0..<outs { for p in 0..<count {
                    dw[o * rows + p0 + p] = FixedOrderReductions.combine(lp[o * count + p])
                } }
            } }
        }
    }

    /// `accumulate` with the column vector assembled from two runs of the image.
    @inlinable
    static func accumulateRuns(rows: Int, lanes: UnsafeMutablePointer<V>, laneStride: Int, dy: UnsafePointer<Float>,
                               dyStride: Int, image: UnsafeRawPointer, starts: UnsafePointer<Int>,
                               masks: UnsafePointer<SIMD16<UInt32>>, shift: Int, blocks: Int) {
        let size = MemoryLayout<Float>.stride, shiftBytes = shift &* size
        var a0 = lanes[0], a1 = rows > 1 ? lanes[laneStride] : V(), a2 = rows > 2 ? lanes[2 &* laneStride] : V()
        var a3 = rows > 3 ? lanes[3 &* laneStride] : V(), a4 = rows > 4 ? lanes[4 &* laneStride] : V()
        var a5 = rows > 5 ? lanes[5 &* laneStride] : V()
        let d1 = dy + dyStride, d2 = dy + 2 &* dyStride, d3 = dy + 3 &* dyStride, d4 = dy + 4 &* dyStride
        let d5 = dy + 5 &* dyStride
        @inline(__always) func load(_ p: UnsafePointer<Float>, _ b: Int) -> V {
            UnsafeRawPointer(p).loadUnaligned(fromByteOffset: b &* 64, as: V.self)
        }
        for b in 0..<blocks {
            let at = starts[b] &* size, mask = masks[b]
            let first = unsafeBitCast(image.loadUnaligned(fromByteOffset: at, as: V.self), to: SIMD16<UInt32>.self)
            let second = unsafeBitCast(image.loadUnaligned(fromByteOffset: at &+ shiftBytes, as: V.self), to: SIMD16<UInt32>.self)
            let cv = unsafeBitCast((first & mask) | (second & ~mask), to: V.self)
            a0.addProduct(load(dy, b), cv)
            if rows > 1 { a1.addProduct(load(d1, b), cv) }
            if rows > 2 { a2.addProduct(load(d2, b), cv) }
            if rows > 3 { a3.addProduct(load(d3, b), cv) }
            if rows > 4 { a4.addProduct(load(d4, b), cv) }
            if rows > 5 { a5.addProduct(load(d5, b), cv) }
        }
        lanes[0] = a0
        if rows > 1 { lanes[laneStride] = a1 }
        if rows > 2 { lanes[2 &* laneStride] = a2 }
        if rows > 3 { lanes[3 &* laneStride] = a3 }
        if rows > 4 { lanes[4 &* laneStride] = a4 }
        if rows > 5 { lanes[5 &* laneStride] = a5 }
    }
}
