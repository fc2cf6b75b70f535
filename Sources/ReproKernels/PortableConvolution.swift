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
// Each entry point re-enters concrete Float or Double code (the only KernelScalar types): reached through
// `any Kernels`, a generic body would run unspecialized.
extension PortableKernels {
    @inlinable
    public func convolutionForward<T: KernelScalar>(
        _ shape: ConvolutionShape, input: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
        output: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
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

    /// Images per chunk: the fewest whose output positions fill whole 16-lane blocks (1 for 28×28, 4 for 10×10),
    /// so that every chunk but the last starts at lane 0 of the whole batch's column index.
    @inlinable
    static func imagesPerChunk(_ s: ConvolutionShape) -> Int {
        var a = s.outPlane, b = 16
        while b != 0 { (a, b) = (b, a % b) }
        return 16 / a
    }

    @inlinable
    static func forward(_ s: ConvolutionShape, input x: UnsafePointer<T>, weight: UnsafePointer<T>, bias: UnsafePointer<T>,
                        output y: UnsafeMutablePointer<T>, threads: Int) {
        if s.width % 16 == 0 {
            return forwardDirect(s, input: x, weight: weight, bias: bias, output: y, threads: threads)
        }
        let plane = s.outPlane, rows = s.rows, cols = s.columns, group = imagesPerChunk(s)
        let chunks = (s.batch + group - 1) / group
        // Threads write disjoint images of Y.
        nonisolated(unsafe) let x = x, weight = weight, bias = bias, y = y
        Parallel.forEach(chunks, threads: threads) { chunkRange in
            var chunk = [T](repeating: 0, count: rows * group * plane)
            chunk.withUnsafeMutableBufferPointer { cp in
                for g in chunkRange {
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
        let lanesValid = lanes
        @inline(__always) func store(_ acc: V, _ r: Int) {
            let out = V(repeating: bias[r]) + acc, target = output + r * outputStride
            if lanesValid == 16 {
                UnsafeMutableRawPointer(target).storeBytes(of: out, as: V.self)
            } else {
                for lane in 0..<lanesValid { target[lane] = out[lane] }
            }
        }
        store(a0, 0)
        if rows > 1 { store(a1, 1) }
        if rows > 2 { store(a2, 2) }
        if rows > 3 { store(a3, 3) }
        if rows > 4 { store(a4, 4) }
        if rows > 5 { store(a5, 5) }
    }

    @inlinable
    static func weightGradient(_ s: ConvolutionShape, input x: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
                               weightGradient dw: UnsafeMutablePointer<T>, threads: Int) {
        if T.self == Float.self && PortableConvolution<Float>.handlesWithoutColumns(s) {
            return PortableConvolution<Float>.weightGradientWithoutColumns(
                s, input: cast(x), outputGradient: cast(dy), weightGradient: cast(dw), threads: threads)
        }
        let plane = s.outPlane, rows = s.rows, cols = s.columns, outs = s.outChannels, group = imagesPerChunk(s)
        // Threads write disjoint columns p of dW.
        nonisolated(unsafe) let x = x, dy = dy, dw = dw
        Parallel.forEach(rows, threads: threads) { rowRange in
            let p0 = rowRange.lowerBound, count = rowRange.count
            var chunk = [T](repeating: 0, count: count * group * plane)
            var lanes = [V](repeating: V(), count: outs * count)  // lanes[o·count + (p − p0)]
            var gradient = [T](repeating: 0, count: outs * group * plane)
            chunk.withUnsafeMutableBufferPointer { cp in lanes.withUnsafeMutableBufferPointer { lp in gradient.withUnsafeMutableBufferPointer { gp in
                var width = 0, start = 0
                for n0 in stride(from: 0, to: s.batch, by: group) {
                    let n1 = min(s.batch, n0 + group)
                    width = (n1 - n0) * plane
                    start = n0 * plane
                    for n in n0..<n1 {
                        Im2col.fill(s, image: n, rows: rowRange, from: x, into: cp.baseAddress! + (n - n0) * plane,
                                    rowStride: width)
                    }
                    // The chunk's dY rows side by side (in place they are a whole batch apart: the same cache sets).
                    for o in 0..<outs { (gp.baseAddress! + o * width).update(from: dy + o * cols + start, count: width) }
                    let dyChunk = UnsafePointer(gp.baseAddress!)
                    let columnBytes = width * MemoryLayout<T>.stride
                    let columnBase = UnsafeRawPointer(cp.baseAddress!)
                    @inline(__always) func column(_ p: Int) -> StoredColumn<T> { StoredColumn<T>(start: columnBase + p * columnBytes) }
                    for p in 0..<count {
                        accumulateAllOutputs(outs, lanes: lp.baseAddress! + p, laneStride: count, dy: dyChunk,
                                             dyStride: width, blocks: width / 16, column: column(p))
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
            } } }
        }
    }

    /// dX = col2im(Wᵀ·dY), chunk by chunk: each chunk's column gradient (axpy form, the same bits as the
    /// whole-batch GEMM) is scattered into its own images in the order (c, ki, kj, n, r, q) onto zeros, so
    /// every input position sums its (ki, kj) contributions in the same order as the whole-batch col2im.
    @inlinable
    static func inputGradient(_ s: ConvolutionShape, weight: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
                              inputGradient dx: UnsafeMutablePointer<T>, threads: Int) {
        let plane = s.outPlane, rows = s.rows, cols = s.columns, group = imagesPerChunk(s)
        let chunks = (s.batch + group - 1) / group
        let k = s.kernelSize, h = s.height, w = s.width, oh = s.outHeight, ow = s.outWidth
        // Threads write disjoint images of dX.
        nonisolated(unsafe) let weight = weight, dy = dy, dx = dx
        Parallel.forEach(chunks, threads: threads) { chunkRange in
            var chunk = [T](repeating: 0, count: rows * group * plane)
            var gradient = [T](repeating: 0, count: s.outChannels * group * plane)
            chunk.withUnsafeMutableBufferPointer { cp in gradient.withUnsafeMutableBufferPointer { gp in
                for g in chunkRange {
                    let n0 = g * group, n1 = min(s.batch, n0 + group), width = (n1 - n0) * plane
                    // The chunk's dY rows side by side, as in `weightGradient`.
                    for o in 0..<s.outChannels {
                        (gp.baseAddress! + o * width).update(from: dy + o * cols + n0 * plane, count: width)
                    }
                    PortableGEMM<T>.axpyForm(m: rows, columns: 0..<width, k: s.outChannels, alpha: 1, a: weight, aRow: 1,
                                             aColumn: rows, b: gp.baseAddress!, ldb: width, beta: 0, c: cp.baseAddress!,
                                             ldc: width)
                    for c in 0..<s.inChannels {
                        for n in n0..<n1 { (dx + (c * s.batch + n) * h * w).update(repeating: 0, count: h * w) }
                        for ki in 0..<k { for kj in 0..<k {
                            let row = cp.baseAddress! + ((c * k + ki) * k + kj) * width
                            for n in n0..<n1 {
                                let target = dx + (c * s.batch + n) * h * w + ki * w + kj, source = row + (n - n0) * plane
                                for r in 0..<oh {
                                    let out = target + r * w, inp = source + r * ow
                                    // Elementwise, eight lanes at a time (rows of 10 are too short for the
                                    // loop vectorizer): each position's additions keep their order.
                                    var q = 0
                                    if T.self == Float.self {
                                        let o = UnsafeMutableRawPointer(out), i = UnsafeRawPointer(inp), size = MemoryLayout<Float>.stride
                                        while q + 8 <= ow {
                                            let sum = o.loadUnaligned(fromByteOffset: q * size, as: SIMD8<Float>.self)
                                                + i.loadUnaligned(fromByteOffset: q * size, as: SIMD8<Float>.self)
                                            o.storeBytes(of: sum, toByteOffset: q * size, as: SIMD8<Float>.self)
                                            q += 8
                                        }
                                    }
                                    while q < ow { out[q] += inp[q]; q += 1 }
                                }
                            }
                        } }
                    }
                }
            } }
        }
    }

    /// Every output channel's lane sums continued over one more chunk, in blocks of up to 6 channels (the
    /// column vector of block b is built once per block of channels).
    @inlinable @inline(__always)
    static func accumulateAllOutputs<C: ColumnVectors>(_ outs: Int, lanes: UnsafeMutablePointer<V>, laneStride: Int,
                                                       dy: UnsafePointer<T>, dyStride: Int, blocks: Int, column: C)
    where C.Scalar == T {
        var o = 0
        while o < outs {
            let block = outs - o == 6 ? 6 : min(4, outs - o)
            accumulate(rows: block, lanes: lanes + o * laneStride, laneStride: laneStride,
                       dy: dy + o * dyStride, dyStride: dyStride, blocks: blocks, column: column)
            o += block
        }
    }

    /// lanes[r] += Σ_b dy_r[16b..<16b+16] · column.vector(b) for up to 6 output channels r, b increasing (fused):
    /// the dot form's lane sums continued over one more chunk.
    @inlinable @inline(__always)
    static func accumulate<C: ColumnVectors>(rows: Int, lanes: UnsafeMutablePointer<V>, laneStride: Int, dy: UnsafePointer<T>,
                                             dyStride: Int, blocks: Int, column: C) where C.Scalar == T {
        let dRaw = UnsafeRawPointer(dy), vBytes = 16 &* MemoryLayout<T>.stride, rowBytes = dyStride &* MemoryLayout<T>.stride
        @inline(__always) func load(_ r: Int, _ b: Int) -> V {
            dRaw.loadUnaligned(fromByteOffset: r &* rowBytes &+ b &* vBytes, as: V.self)
        }
        var a0 = lanes[0], a1 = rows > 1 ? lanes[laneStride] : V(), a2 = rows > 2 ? lanes[2 &* laneStride] : V()
        var a3 = rows > 3 ? lanes[3 &* laneStride] : V(), a4 = rows > 4 ? lanes[4 &* laneStride] : V()
        var a5 = rows > 5 ? lanes[5 &* laneStride] : V()
        // Specialized loops for the common channel counts keep the accumulators in registers.
        switch rows {
        case 6:
            for b in 0..<blocks {
                let cv = column.vector(b)
                a0.addProduct(load(0, b), cv); a1.addProduct(load(1, b), cv); a2.addProduct(load(2, b), cv)
                a3.addProduct(load(3, b), cv); a4.addProduct(load(4, b), cv); a5.addProduct(load(5, b), cv)
            }
        case 4:
            for b in 0..<blocks {
                let cv = column.vector(b)
                a0.addProduct(load(0, b), cv); a1.addProduct(load(1, b), cv)
                a2.addProduct(load(2, b), cv); a3.addProduct(load(3, b), cv)
            }
        default:
            for b in 0..<blocks {
                let cv = column.vector(b)
                a0.addProduct(load(0, b), cv)
                if rows > 1 { a1.addProduct(load(1, b), cv) }
                if rows > 2 { a2.addProduct(load(2, b), cv) }
                if rows > 3 { a3.addProduct(load(3, b), cv) }
                if rows > 4 { a4.addProduct(load(4, b), cv) }
            }
        }
        lanes[0] = a0
        if rows > 1 { lanes[laneStride] = a1 }
        if rows > 2 { lanes[2 &* laneStride] = a2 }
        if rows > 3 { lanes[3 &* laneStride] = a3 }
        if rows > 4 { lanes[4 &* laneStride] = a4 }
        if rows > 5 { lanes[5 &* laneStride] = a5 }
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
        nonisolated(unsafe) let x = x, dy = dy, dw = dw
        let blockStarts = starts, blockMasks = masks, shiftBytes = shift * MemoryLayout<Float>.stride
        // Threads write disjoint columns p of dW.
        Parallel.forEach(rows, threads: threads) { rowRange in
            let p0 = rowRange.lowerBound, count = rowRange.count
            // Loads of the second run may reach `shift` + 15 values past the last image row: pad.
            var image = [Float](repeating: 0, count: s.inChannels * hw + w + 16)
            var lanes = [V](repeating: V(), count: outs * count)
            var gradient = [Float](repeating: 0, count: outs * plane)
            image.withUnsafeMutableBufferPointer { ip in lanes.withUnsafeMutableBufferPointer { lp in
              gradient.withUnsafeMutableBufferPointer { gp in
                blockStarts.withUnsafeBufferPointer { bs in blockMasks.withUnsafeBufferPointer { bm in
                    for n in 0..<s.batch {
                        for c in 0..<s.inChannels { (ip.baseAddress! + c * hw).update(from: x + (c * s.batch + n) * hw, count: hw) }
                        // The image's dY rows side by side: in place they are a whole batch apart (392 KB for
                        // conv1, a multiple of 4 KiB, so every row maps to the same cache sets).
                        for o in 0..<outs { (gp.baseAddress! + o * plane).update(from: dy + o * cols + n * plane, count: plane) }
                        let dyImage = UnsafePointer(gp.baseAddress!)
                        let imageBase = ip.baseAddress!
                        @inline(__always) func column(_ p: Int) -> ColumnFromRuns {
                            ColumnFromRuns(tap: UnsafeRawPointer(imageBase + taps[p]), starts: bs.baseAddress!,
                                           masks: bm.baseAddress!, shiftBytes: shiftBytes)
                        }
                        for p in rowRange {
                            accumulateAllOutputs(outs, lanes: lp.baseAddress! + (p - p0), laneStride: count,
                                                 dy: dyImage, dyStride: plane, blocks: blocks, column: column(p))
                        }
                    }
                } }
              }
                for o in 0..<outs { for p in 0..<count {
                    dw[o * rows + p0 + p] = FixedOrderReductions.combine(lp[o * count + p])
                } }
            } }
        }
    }
}

/// Where `PortableConvolution.accumulate` gets block b's 16 column-matrix values from. A generic parameter
/// rather than a closure, so that each source is specialized and inlined into the loop.
@usableFromInline
protocol ColumnVectors {
    associatedtype Scalar: KernelScalar
    func vector(_ block: Int) -> SIMD16<Scalar>
}

/// A row of a column matrix in memory.
@usableFromInline
struct StoredColumn<Scalar: KernelScalar>: ColumnVectors {
    @usableFromInline let start: UnsafeRawPointer
    @inlinable init(start: UnsafeRawPointer) { self.start = start }
    @inlinable @inline(__always)
    func vector(_ block: Int) -> SIMD16<Scalar> {
        start.loadUnaligned(fromByteOffset: block &* 16 &* MemoryLayout<Scalar>.stride, as: SIMD16<Scalar>.self)
    }
}

/// A row of conv1's column matrix assembled from the image: lanes from the run at starts[b] where the
/// block's mask is set, from the run `shiftBytes` further on elsewhere (the next output row).
@usableFromInline
struct ColumnFromRuns: ColumnVectors {
    @usableFromInline let tap: UnsafeRawPointer
    @usableFromInline let starts: UnsafePointer<Int>
    @usableFromInline let masks: UnsafePointer<SIMD16<UInt32>>
    @usableFromInline let shiftBytes: Int
    @inlinable
    init(tap: UnsafeRawPointer, starts: UnsafePointer<Int>, masks: UnsafePointer<SIMD16<UInt32>>, shiftBytes: Int) {
        self.tap = tap; self.starts = starts; self.masks = masks; self.shiftBytes = shiftBytes
    }
    @inlinable @inline(__always)
    func vector(_ block: Int) -> SIMD16<Float> {
        let at = starts[block] &* MemoryLayout<Float>.stride, mask = masks[block]
        let first = unsafeBitCast(tap.loadUnaligned(fromByteOffset: at, as: SIMD16<Float>.self), to: SIMD16<UInt32>.self)
        let second = unsafeBitCast(tap.loadUnaligned(fromByteOffset: at &+ shiftBytes, as: SIMD16<Float>.self),
                                   to: SIMD16<UInt32>.self)
        return unsafeBitCast((first & mask) | (second & ~mask), to: SIMD16<Float>.self)
    }
}
