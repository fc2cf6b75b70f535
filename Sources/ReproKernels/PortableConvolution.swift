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
                    Im2col.fill(s, images: n0..<n1, rows: 0..<rows, from: x, into: cp.baseAddress!, rowStride: width)
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

    /// dW = dY·colsᵀ in the dot form's order: lane l of (o, p) sums dY[o, j]·col[p, j] over the batch's column
    /// indices j ≡ l (mod 16) in increasing j, the 16 lanes are then combined pairwise
    /// (`FixedOrderReductions.combine`) and the batch's last (columns mod 16) terms added in order, exactly as
    /// one long dot product of `PortableGEMM` would. Lanes are independent sums, so each half (8 lanes) runs
    /// on its own, and a tile of up to 4 output channels × 3 taps shares every load: 7 loads for 12 fused
    /// multiply-adds, where a row at a time needed 14 for 12. Threads take whole taps p.
    ///
    /// The column matrix is never stored whole. When an image's output positions fill whole 16-lane blocks
    /// (conv1: 784 = 49·16), a chunk is one image and tap (c, ki, kj)'s row is contiguous in a copy of the
    /// image shifted by kj and cut to the output width (`ShiftedImage`). Otherwise a chunk is the fewest images
    /// filling whole blocks (4 for 10×10) and the rows of three taps at a time are filled by im2col.
    @inlinable
    static func weightGradient(_ s: ConvolutionShape, input x: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
                               weightGradient dw: UnsafeMutablePointer<T>, threads: Int) {
        let plane = s.outPlane, rows = s.rows, cols = s.columns, outs = s.outChannels
        let shifted = plane % 16 == 0, group = shifted ? 1 : imagesPerChunk(s)
        // Threads write disjoint columns p of dW.
        nonisolated(unsafe) let x = x, dy = dy, dw = dw
        Parallel.forEach(rows, threads: threads) { rowRange in
            let p0 = rowRange.lowerBound, count = rowRange.count
            var lanes = [V](repeating: V(), count: outs * count)  // lanes[o·count + (p − p0)]
            let tapTiles = balancedTiles(count, size: tileTaps), outputTiles = balancedTiles(outs, size: tileOutputs)
            var gradient = [T](repeating: 0, count: outs * group * plane)
            var columns = [T](repeating: 0, count: shifted ? ShiftedImage.count(s) : tileTaps * group * plane)
            lanes.withUnsafeMutableBufferPointer { lp in gradient.withUnsafeMutableBufferPointer { gp in
              columns.withUnsafeMutableBufferPointer { cp in
                for n0 in stride(from: 0, to: s.batch, by: group) {
                    let n1 = min(s.batch, n0 + group), width = (n1 - n0) * plane, blocks = width / 16
                    // The chunk's dY rows side by side (in place they are a whole batch apart: for conv1 392 KB,
                    // a multiple of 4 KiB, so every row would map to the same cache sets).
                    for o in 0..<outs { (gp.baseAddress! + o * width).update(from: dy + o * cols + n0 * plane, count: width) }
                    if shifted { ShiftedImage.fill(s, image: n0, from: x, into: cp.baseAddress!) }
                    let dyChunk = UnsafePointer(gp.baseAddress!), lanesBase = lp.baseAddress!
                    if shifted {
                        // Three channels' dY rows stay in L1 while every tap's columns stream past them.
                        for (o0, outputs) in outputTiles { for (t0, taps) in tapTiles {
                            @inline(__always) func column(_ t: Int) -> UnsafePointer<T> {
                                UnsafePointer(cp.baseAddress! + ShiftedImage.rowStart(s, tap: p0 + t0 + min(t, taps - 1)))
                            }
                            accumulateTile(outputs: outputs, taps: taps, lanes: lanesBase + o0 * count + t0, laneStride: count,
                                           dy: dyChunk + o0 * width, dyStride: width,
                                           columns: (column(0), column(1), column(2)), blocks: blocks)
                        } }
                    } else {
                        for (t0, taps) in tapTiles {
                            Im2col.fill(s, images: n0..<n1, rows: (p0 + t0)..<(p0 + t0 + taps), from: x, into: cp.baseAddress!,
                                        rowStride: width)
                            @inline(__always) func column(_ t: Int) -> UnsafePointer<T> {
                                UnsafePointer(cp.baseAddress! + min(t, taps - 1) * width)
                            }
                            for (o0, outputs) in outputTiles {
                                accumulateTile(outputs: outputs, taps: taps, lanes: lanesBase + o0 * count + t0, laneStride: count,
                                               dy: dyChunk + o0 * width, dyStride: width,
                                               columns: (column(0), column(1), column(2)), blocks: blocks)
                            }
                        }
                    }
                }
              }
                // Lanes combined as the dot form combines them, then the batch's last (cols mod 16) terms in order.
                let tail = (cols / 16 * 16)..<cols
                for o in 0..<outs { for p in 0..<count {
                    var total = FixedOrderReductions.combine(lp[o * count + p])
                    for j in tail { total.addProduct(dy[o * cols + j], columnValue(s, x, tap: p0 + p, column: j)) }
                    dw[o * rows + p0 + p] = total
                } }
            } }
        }
    }

    /// Output channels × taps of one weight-gradient tile: 12 accumulators of 8 lanes, plus 3 column vectors and
    /// one dY vector, fill the 16 AVX2 registers.
    @inlinable static var tileOutputs: Int { 4 }
    @inlinable static var tileTaps: Int { 3 }

    /// 0..<count split into ⌈count / size⌉ parts (start, length) differing by at most one in length (6 channels
    /// → 3 + 3, not 4 + 2).
    @inlinable
    static func balancedTiles(_ count: Int, size: Int) -> [(Int, Int)] {
        let parts = (count + size - 1) / size
        return (0..<parts).map { i in (count * i / parts, count * (i + 1) / parts - count * i / parts) }
    }

    /// The column matrix's value at row p = (c, ki, kj), batch column j = (n, r, q).
    @inlinable
    static func columnValue(_ s: ConvolutionShape, _ x: UnsafePointer<T>, tap p: Int, column j: Int) -> T {
        let k = s.kernelSize, c = p / (k * k), ki = (p / k) % k, kj = p % k
        let n = j / s.outPlane, r = (j % s.outPlane) / s.outWidth, q = j % s.outWidth
        return x[((c * s.batch + n) * s.height + r + ki) * s.width + q + kj]
    }

    /// lanes[(o, t)] += Σ_b dY_o[16b..<16b+16] · column_t[16b..<16b+16], b increasing, for `outputs` ≤ 4 channels
    /// (rows of dY `dyStride` apart) and `taps` ≤ 3 column rows, one 8-lane half at a time. Dispatched to a copy
    /// per tile shape, so that the loop body has no conditions.
    @inlinable @inline(__always)
    static func accumulateTile(outputs: Int, taps: Int, lanes: UnsafeMutablePointer<V>, laneStride: Int,
                               dy: UnsafePointer<T>, dyStride: Int,
                               columns: (UnsafePointer<T>, UnsafePointer<T>, UnsafePointer<T>), blocks: Int) {
        // Each case is its own specialization of the loop, with the tile's shape a constant.
        switch (outputs, taps) {
        case (4, 3): tile(Four.self, Three.self, lanes, laneStride, dy, dyStride, columns, blocks)
        case (3, 3): tile(Three.self, Three.self, lanes, laneStride, dy, dyStride, columns, blocks)
        case (4, 2): tile(Four.self, Two.self, lanes, laneStride, dy, dyStride, columns, blocks)
        case (3, 2): tile(Three.self, Two.self, lanes, laneStride, dy, dyStride, columns, blocks)
        case (4, 1): tile(Four.self, One.self, lanes, laneStride, dy, dyStride, columns, blocks)
        case (3, 1): tile(Three.self, One.self, lanes, laneStride, dy, dyStride, columns, blocks)
        case (2, 3): tile(Two.self, Three.self, lanes, laneStride, dy, dyStride, columns, blocks)
        case (2, 2): tile(Two.self, Two.self, lanes, laneStride, dy, dyStride, columns, blocks)
        case (2, 1): tile(Two.self, One.self, lanes, laneStride, dy, dyStride, columns, blocks)
        case (1, 3): tile(One.self, Three.self, lanes, laneStride, dy, dyStride, columns, blocks)
        case (1, 2): tile(One.self, Two.self, lanes, laneStride, dy, dyStride, columns, blocks)
        default: tile(One.self, One.self, lanes, laneStride, dy, dyStride, columns, blocks)
        }
    }

    @inlinable
    static func tile<Outputs: TileExtent, Taps: TileExtent>(
        _: Outputs.Type, _: Taps.Type, _ lanes: UnsafeMutablePointer<V>, _ laneStride: Int, _ dy: UnsafePointer<T>,
        _ dyStride: Int, _ columns: (UnsafePointer<T>, UnsafePointer<T>, UnsafePointer<T>), _ blocks: Int
    ) {
        let outputs = Outputs.value, taps = Taps.value
        for half in 0..<2 {
            typealias H = SIMD8<T>
            let size = MemoryLayout<T>.stride, halfBytes = half &* 8 &* size
            @inline(__always) func slot(_ o: Int, _ t: Int) -> UnsafeMutableRawPointer {
                UnsafeMutableRawPointer(lanes + (o &* laneStride &+ t)) + halfBytes
            }
            @inline(__always) func get(_ o: Int, _ t: Int) -> H {
                o < outputs && t < taps ? slot(o, t).load(as: H.self) : H()
            }
            @inline(__always) func put(_ v: H, _ o: Int, _ t: Int) {
                if o < outputs && t < taps { slot(o, t).storeBytes(of: v, as: H.self) }
            }
            var a00 = get(0, 0), a01 = get(0, 1), a02 = get(0, 2)
            var a10 = get(1, 0), a11 = get(1, 1), a12 = get(1, 2)
            var a20 = get(2, 0), a21 = get(2, 1), a22 = get(2, 2)
            var a30 = get(3, 0), a31 = get(3, 1), a32 = get(3, 2)
            let c0 = UnsafeRawPointer(columns.0) + halfBytes, c1 = UnsafeRawPointer(columns.1) + halfBytes
            let c2 = UnsafeRawPointer(columns.2) + halfBytes
            let d = UnsafeRawPointer(dy) + halfBytes, rowBytes = dyStride &* size, step = 16 &* size
            var offset = 0
            for _ in 0..<blocks {
                let v0 = c0.loadUnaligned(fromByteOffset: offset, as: H.self)
                let v1 = taps > 1 ? c1.loadUnaligned(fromByteOffset: offset, as: H.self) : H()
                let v2 = taps > 2 ? c2.loadUnaligned(fromByteOffset: offset, as: H.self) : H()
                let g0 = d.loadUnaligned(fromByteOffset: offset, as: H.self)
                a00.addProduct(g0, v0)
                if taps > 1 { a01.addProduct(g0, v1) }
                if taps > 2 { a02.addProduct(g0, v2) }
                if outputs > 1 {
                    let g = d.loadUnaligned(fromByteOffset: rowBytes &+ offset, as: H.self)
                    a10.addProduct(g, v0)
                    if taps > 1 { a11.addProduct(g, v1) }
                    if taps > 2 { a12.addProduct(g, v2) }
                }
                if outputs > 2 {
                    let g = d.loadUnaligned(fromByteOffset: 2 &* rowBytes &+ offset, as: H.self)
                    a20.addProduct(g, v0)
                    if taps > 1 { a21.addProduct(g, v1) }
                    if taps > 2 { a22.addProduct(g, v2) }
                }
                if outputs > 3 {
                    let g = d.loadUnaligned(fromByteOffset: 3 &* rowBytes &+ offset, as: H.self)
                    a30.addProduct(g, v0)
                    if taps > 1 { a31.addProduct(g, v1) }
                    if taps > 2 { a32.addProduct(g, v2) }
                }
                offset &+= step
            }
            put(a00, 0, 0); put(a01, 0, 1); put(a02, 0, 2)
            put(a10, 1, 0); put(a11, 1, 1); put(a12, 1, 2)
            put(a20, 2, 0); put(a21, 2, 1); put(a22, 2, 2)
            put(a30, 3, 0); put(a31, 3, 1); put(a32, 3, 2)
        }
    }

    /// dX = col2im(Wᵀ·dY), chunk by chunk: each chunk's column gradient (axpy form, the same bits as the
    /// whole-batch GEMM) is computed 24 rows p at a time, while they are in L1, and each row scattered into the
    /// chunk's own images onto zeros, rows in increasing p = (c, ki, kj); so every input position sums its
    /// (ki, kj) contributions in the same order as the whole-batch col2im.
    @inlinable
    static func inputGradient(_ s: ConvolutionShape, weight: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
                              inputGradient dx: UnsafeMutablePointer<T>, threads: Int) {
        let plane = s.outPlane, rows = s.rows, cols = s.columns, group = imagesPerChunk(s)
        let chunks = (s.batch + group - 1) / group, rowsAtOnce = 24
        let k = s.kernelSize, hw = s.height * s.width, w = s.width, oh = s.outHeight, ow = s.outWidth
        // Threads write disjoint images of dX.
        nonisolated(unsafe) let weight = weight, dy = dy, dx = dx
        Parallel.forEach(chunks, threads: threads) { chunkRange in
            var chunk = [T](repeating: 0, count: rowsAtOnce * group * plane)
            var gradient = [T](repeating: 0, count: s.outChannels * group * plane)
            chunk.withUnsafeMutableBufferPointer { cp in gradient.withUnsafeMutableBufferPointer { gp in
                for g in chunkRange {
                    let n0 = g * group, n1 = min(s.batch, n0 + group), width = (n1 - n0) * plane
                    // The chunk's dY rows side by side, as in `weightGradient`.
                    for o in 0..<s.outChannels {
                        (gp.baseAddress! + o * width).update(from: dy + o * cols + n0 * plane, count: width)
                    }
                    for c in 0..<s.inChannels { for n in n0..<n1 { (dx + (c * s.batch + n) * hw).update(repeating: 0, count: hw) } }
                    for p0 in stride(from: 0, to: rows, by: rowsAtOnce) {
                        let m = min(rowsAtOnce, rows - p0)
                        PortableGEMM<T>.axpyForm(m: m, columns: 0..<width, k: s.outChannels, alpha: 1, a: weight + p0, aRow: 1,
                                                 aColumn: rows, b: gp.baseAddress!, ldb: width, beta: 0, c: cp.baseAddress!,
                                                 ldc: width)
                        for p in p0..<(p0 + m) {
                            let c = p / (k * k), ki = (p / k) % k, kj = p % k, row = cp.baseAddress! + (p - p0) * width
                            for n in n0..<n1 {
                                let target = dx + (c * s.batch + n) * hw + ki * w + kj, source = row + (n - n0) * plane
                                for r in 0..<oh { addRow(source + r * ow, into: target + r * w, count: ow) }
                            }
                        }
                    }
                }
            } }
        }
    }

    /// into[q] += from[q] for q < count, elementwise (8, 4, 2, then 1 lanes at a time: rows of 10 are too short
    /// for the loop vectorizer); each position's additions keep their order.
    @inlinable @inline(__always)
    static func addRow(_ from: UnsafePointer<T>, into: UnsafeMutablePointer<T>, count: Int) {
        let i = UnsafeRawPointer(from), o = UnsafeMutableRawPointer(into), size = MemoryLayout<T>.stride
        @inline(__always) func add<L: SIMD>(_: L.Type, _ q: Int) where L.Scalar == T {
            let sum = o.loadUnaligned(fromByteOffset: q &* size, as: L.self) + i.loadUnaligned(fromByteOffset: q &* size, as: L.self)
            o.storeBytes(of: sum, toByteOffset: q &* size, as: L.self)
        }
        var q = 0
        while q &+ 8 <= count { add(SIMD8<T>.self, q); q &+= 8 }
        if q &+ 4 <= count { add(SIMD4<T>.self, q); q &+= 4 }
        if q &+ 2 <= count { add(SIMD2<T>.self, q); q &+= 2 }
        if q < count { into[q] += from[q] }
    }
}

/// A tile extent known at compile time: each (outputs, taps) pair specializes its own loop without conditions.
@usableFromInline protocol TileExtent { static var value: Int { get } }
@usableFromInline enum One: TileExtent { @inlinable static var value: Int { 1 } }
@usableFromInline enum Two: TileExtent { @inlinable static var value: Int { 2 } }
@usableFromInline enum Three: TileExtent { @inlinable static var value: Int { 3 } }
@usableFromInline enum Four: TileExtent { @inlinable static var value: Int { 4 } }

/// An image copied once per kernel column kj, shifted left by kj and cut to the output width: copy kj of
/// channel c holds x[c][n][i][q + kj] at (kj·C + c)·H·OW + i·OW + q. Then tap (c, ki, kj)'s row of the
/// image's column matrix, x[c][n][r + ki][q + kj] at r·OW + q, is the contiguous run from `rowStart` (5 copies
/// of the image instead of 25 rows of im2col for conv1).
@usableFromInline
enum ShiftedImage {
    @inlinable
    static func count(_ s: ConvolutionShape) -> Int { s.kernelSize * s.inChannels * s.height * s.outWidth }

    @inlinable
    static func rowStart(_ s: ConvolutionShape, tap p: Int) -> Int {
        let k = s.kernelSize, c = p / (k * k), ki = (p / k) % k, kj = p % k
        return (kj * s.inChannels + c) * s.height * s.outWidth + ki * s.outWidth
    }

    @inlinable
    static func fill<T: SIMDScalar>(_ s: ConvolutionShape, image n: Int, from x: UnsafePointer<T>, into dst: UnsafeMutablePointer<T>) {
        let h = s.height, w = s.width, ow = s.outWidth
        for kj in 0..<s.kernelSize { for c in 0..<s.inChannels {
            let source = x + (c * s.batch + n) * h * w + kj, target = dst + (kj * s.inChannels + c) * h * ow
            for i in 0..<h { Im2col.copy(source + i * w, to: target + i * ow, count: ow) }
        } }
    }
}
