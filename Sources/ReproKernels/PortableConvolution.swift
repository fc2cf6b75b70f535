#if canImport(Glibc)
import Glibc
#endif
/// The convolution of `PortableKernels`: the same arithmetic as im2col of the whole batch + `PortableGEMM`
/// (so the same bits), without the 30 MB column matrix going through memory twice per step.
///
/// - Forward: threads take whole images; each image is read in place when its output rows are 16 or wider and
///   its positions fill whole groups of 8 (conv1), else copied once per kernel column kj, shifted
///   (`ShiftedImage`), so that a tap's inputs are one contiguous run; each output is bias + the axpy-form sum
///   over p, as before.
/// - Chunks are the fewest images whose output positions fill whole 16-lane blocks (1 image for conv1's
///   28×28, 4 for conv2's 10×10).
/// - Weight gradient: the dot form's 16 lane sums per (o, p) are kept across chunks, so the lanes see the
///   column index of the whole batch in increasing order exactly as one long dot product would; the inputs
///   are read in place from the images or from per-chunk shifted copies (`WeightGradientSource`), and
///   channels that repeat channel 0 are computed once. Threads take whole rows p.
/// - Input gradient: each chunk's column gradient is computed and scattered (col2im) into its own images,
///   K taps of all the chunk's images at a time (`scatterTaps`); threads take whole chunks.
/// Measured (batch 128): docs/performance.md.
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

    /// The forward pass without a column matrix: for tap p = (c, ki, kj) the inputs of 8 neighbouring output
    /// positions are read as one unaligned load, from shifted copies of each image (`ShiftedImage`, where an
    /// image's positions j = r·OW + q are one contiguous run) or, when output rows are at least 16 wide and an
    /// image's positions fill whole groups of 8 (conv1's 28 × 28), in place from the input (`InPlaceGroups`: a
    /// group that runs past a row's end is two loads and a select, one group in 7 for conv1; the copies, 53 KB
    /// per image for conv1, cost ~15% of its forward in stores). A tile of up to 4 output channels × 3 groups of
    /// 8 positions accumulates Σ_p w(o,p)·x, p increasing from 0, then stores bias + acc: the bits of the
    /// column-matrix path, whichever the source. In the copies the last group of an image may run past its
    /// positions; those lanes read the copy's padding or the next rows and are never stored.
    @inlinable
    static func forward(_ s: ConvolutionShape, input x: UnsafePointer<T>, weight: UnsafePointer<T>,
                        bias: UnsafePointer<T>, output y: UnsafeMutablePointer<T>, threads: Int) {
        let plane = s.outPlane
        if s.outWidth >= 16 && plane % 8 == 0 {
            return forwardInPlace(s, input: x, weight: weight, bias: bias, output: y, threads: threads)
        }
        let rows = s.rows, cols = s.columns, groups = (plane + 7) / 8
        let taps = (0..<rows).map { ShiftedImage.rowStart(s, tap: $0) }
        // 4 channels × 3 groups: 12 accumulators of 8 lanes, 3 input vectors and a weight fill the 16 AVX2 registers.
        let groupTiles = DotTiles<T>.balanced(groups, size: 3), outputTiles = DotTiles<T>.balanced(s.outChannels, size: 4)
        nonisolated(unsafe) let x = x, weight = weight, bias = bias, y = y
        // Threads write disjoint images of Y.
        Parallel.forEach(s.batch, threads: threads) { images in
            var copies = [T](repeating: 0, count: ShiftedImage.count(s) + 16)
            copies.withUnsafeMutableBufferPointer { cp in taps.withUnsafeBufferPointer { tp in
                for n in images {
                    ShiftedImage.fill(s, image: n, from: x, into: cp.baseAddress!)
                    // Groups outer: a group tile's inputs serve every output tile while they are in L1.
                    for (g0, tiles) in groupTiles { for (o0, outputs) in outputTiles {
                        forwardTile(outputs: outputs, groups: tiles, source: UnsafePointer(cp.baseAddress! + 8 * g0),
                                    taps: tp.baseAddress!, count: rows, placement: ConsecutiveGroups(), weight: weight + o0 * rows,
                                    bias: bias + o0, output: y + o0 * cols + n * plane + 8 * g0, outputStride: cols,
                                    valid: plane - 8 * g0)
                    } }
                }
            } }
        }
    }

    /// `forward` reading each image in place: tap p's inputs start at x[c][n][ki][kj], and group g of an image's
    /// positions lies where `ImageRowColumns.table` says (a group that crosses a row end continues on the next
    /// input row). Needs OW ≥ 8 (a group meets at most one row end) and whole groups per image (no group
    /// crosses into the next image); every load then stays inside the image's rows.
    @inlinable
    static func forwardInPlace(_ s: ConvolutionShape, input x: UnsafePointer<T>, weight: UnsafePointer<T>,
                               bias: UnsafePointer<T>, output y: UnsafeMutablePointer<T>, threads: Int) {
        let rows = s.rows, plane = s.outPlane, cols = s.columns, hw = s.height * s.width
        precondition(s.outWidth >= 8 && plane % 8 == 0)
        let taps = (0..<rows).map { tapStart(s, tap: $0) }
        let table = ImageRowColumns.table(s, images: 1)
        let groupTiles = DotTiles<T>.balanced(plane / 8, size: 3), outputTiles = DotTiles<T>.balanced(s.outChannels, size: 4)
        // Each group tile's placement, worked out once: (offset, split, where the rest continues) per group.
        let placements = groupTiles.map { g0, count in
            InPlaceGroups((0..<3).map { g in
                let entry = 3 * (g0 + min(g, count - 1))
                return (Int(table[entry]), Int(table[entry + 1]), Int(table[entry + 2]))
            }, count: count, size: MemoryLayout<T>.stride)
        }
        nonisolated(unsafe) let x = x, weight = weight, bias = bias, y = y
        // Threads write disjoint images of Y.
        Parallel.forEach(s.batch, threads: threads) { images in
            taps.withUnsafeBufferPointer { tp in
                for n in images {
                    for (tile, (g0, tiles)) in groupTiles.enumerated() {
                        let placement = placements[tile]
                        @inline(__always) func run<Crossing: CrossingGroups>(_: Crossing.Type) {
                            let groups = placement.crossing(Crossing.self)
                            for (o0, outputs) in outputTiles {
                                forwardTile(outputs: outputs, groups: tiles, source: x + n * hw, taps: tp.baseAddress!, count: rows,
                                            placement: groups, weight: weight + o0 * rows, bias: bias + o0,
                                            output: y + o0 * cols + n * plane + 8 * g0, outputStride: cols, valid: plane - 8 * g0)
                            }
                        }
                        // Each pattern of crossing groups its own loop, with no select where none is needed.
                        switch placement.crossings {
                        case 0: run(NoGroupCrosses.self)
                        case 1: run(FirstGroupCrosses.self)
                        case 2: run(SecondGroupCrosses.self)
                        case 4: run(ThirdGroupCrosses.self)
                        default: run(AnyGroupCrosses.self)
                        }
                    }
                }
            }
        }
    }

    @inlinable @inline(__always)
    static func forwardTile<Placement: ForwardGroups>(
        outputs: Int, groups: Int, source: UnsafePointer<T>, taps: UnsafePointer<Int>, count: Int, placement: Placement,
        weight: UnsafePointer<T>, bias: UnsafePointer<T>, output: UnsafeMutablePointer<T>, outputStride: Int, valid: Int
    ) {
        let p = placement
        switch (outputs, groups) {
        case (4, 3): forwardTile(Four.self, Three.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        case (4, 2): forwardTile(Four.self, Two.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        case (3, 3): forwardTile(Three.self, Three.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        case (3, 2): forwardTile(Three.self, Two.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        case (4, 1): forwardTile(Four.self, One.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        case (3, 1): forwardTile(Three.self, One.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        case (2, 3): forwardTile(Two.self, Three.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        case (2, 2): forwardTile(Two.self, Two.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        case (2, 1): forwardTile(Two.self, One.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        case (1, 3): forwardTile(One.self, Three.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        case (1, 2): forwardTile(One.self, Two.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        default: forwardTile(One.self, One.self, source, taps, count, p, weight, bias, output, outputStride, valid)
        }
    }

    /// acc[o][g] = Σ_p w(o,p)·(group g of tap p's inputs, from source + taps[p] as `placement` says), p increasing;
    /// output row o, group g = bias[o] + acc for the first `valid` positions.
    @inlinable
    static func forwardTile<Outputs: TileExtent, Groups: TileExtent, Placement: ForwardGroups>(
        _: Outputs.Type, _: Groups.Type, _ source: UnsafePointer<T>, _ taps: UnsafePointer<Int>, _ count: Int,
        _ placement: Placement, _ weight: UnsafePointer<T>, _ bias: UnsafePointer<T>, _ output: UnsafeMutablePointer<T>,
        _ outputStride: Int, _ valid: Int
    ) {
        typealias H = SIMD8<T>
        let outputs = Outputs.value, groups = Groups.value, size = MemoryLayout<T>.stride
        let raw = UnsafeRawPointer(source)
        var a00 = H(), a01 = H(), a02 = H(), a10 = H(), a11 = H(), a12 = H()
        var a20 = H(), a21 = H(), a22 = H(), a30 = H(), a31 = H(), a32 = H()
        var w = weight
        for p in 0..<count {
            let tap = raw + taps[p] &* size
            let v0: H = placement.load(tap, group: 0)
            let v1: H = groups > 1 ? placement.load(tap, group: 1) : H()
            let v2: H = groups > 2 ? placement.load(tap, group: 2) : H()
            let w0 = H(repeating: w[0])
            a00.addProduct(w0, v0)
            if groups > 1 { a01.addProduct(w0, v1) }
            if groups > 2 { a02.addProduct(w0, v2) }
            if outputs > 1 {
                let wo = H(repeating: w[count])
                a10.addProduct(wo, v0)
                if groups > 1 { a11.addProduct(wo, v1) }
                if groups > 2 { a12.addProduct(wo, v2) }
            }
            if outputs > 2 {
                let wo = H(repeating: w[2 &* count])
                a20.addProduct(wo, v0)
                if groups > 1 { a21.addProduct(wo, v1) }
                if groups > 2 { a22.addProduct(wo, v2) }
            }
            if outputs > 3 {
                let wo = H(repeating: w[3 &* count])
                a30.addProduct(wo, v0)
                if groups > 1 { a31.addProduct(wo, v1) }
                if groups > 2 { a32.addProduct(wo, v2) }
            }
            w += 1
        }
        @inline(__always) func store(_ acc: H, _ o: Int, _ g: Int) {
            guard o < outputs && g < groups else { return }
            let out = H(repeating: bias[o]) + acc, target = output + (o &* outputStride &+ 8 &* g), lanes = valid &- 8 &* g
            if lanes >= 8 {
                UnsafeMutableRawPointer(target).storeBytes(of: out, as: H.self)
            } else {
                for lane in 0..<Swift.max(0, lanes) { target[lane] = out[lane] }
            }
        }
        store(a00, 0, 0); store(a01, 0, 1); store(a02, 0, 2)
        store(a10, 1, 0); store(a11, 1, 1); store(a12, 1, 2)
        store(a20, 2, 0); store(a21, 2, 1); store(a22, 2, 2)
        store(a30, 3, 0); store(a31, 3, 1); store(a32, 3, 2)
    }

    /// dW = dY·colsᵀ in the dot form's order: lane l of (o, p) sums dY[o, j]·col[p, j] over the batch's column
    /// indices j ≡ l (mod 16) in increasing j, the 16 lanes are then combined pairwise
    /// (`FixedOrderReductions.combine`) and the batch's last (columns mod 16) terms added in order, exactly as
    /// one long dot product of `PortableGEMM` would. Lanes are independent sums, so each half (8 lanes) runs
    /// on its own, and a tile of up to 4 output channels × 3 taps shares every load: 7 loads for 12 fused
    /// multiply-adds, where a row at a time needed 14 for 12. Threads take whole taps p.
    ///
    /// The column matrix is never stored. A chunk is the fewest images whose positions fill whole 16-lane blocks
    /// (1 for 28×28, 4 for 10×10). Tap (c, ki, kj)'s row of a chunk is read through `ImageRowColumns` (a group
    /// of 8 positions that crosses the end of a run is two loads and a select), from where
    /// `WeightGradientSource` says: in place from the images' input rows when output rows are at least 16
    /// wide, else from the chunk's `ShiftedImage` copies; tiny outputs fill the rows of three taps at a time
    /// by im2col.
    ///
    /// Input channels that are bit-for-bit copies of channel 0 (the notebook's MNIST: one gray plane repeated
    /// three times) have the same column rows, so the same dot products in the same order: channel 0's
    /// K·K taps are computed once and copied to the others, the same bits as computing each (conv1's weight
    /// gradient on MNIST a third of the work). The check compares the channels' bytes, stopping at the first
    /// difference (at once for SVHN).
    @inlinable
    static func weightGradient(_ s: ConvolutionShape, input x: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
                               weightGradient dw: UnsafeMutablePointer<T>, threads: Int) {
        let channelValues = s.batch * s.height * s.width
        let copies = s.inChannels > 1 && (1..<s.inChannels).allSatisfy { c in
            memcmp(x, x + c * channelValues, channelValues * MemoryLayout<T>.stride) == 0
        }
        guard copies else { return distinctChannelsWeightGradient(s, input: x, outputGradient: dy, weightGradient: dw, threads: threads) }
        var one = s
        one.inChannels = 1
        let taps = one.rows
        var shared = [T](repeating: 0, count: s.outChannels * taps)
        shared.withUnsafeMutableBufferPointer { sp in
            distinctChannelsWeightGradient(one, input: x, outputGradient: dy, weightGradient: sp.baseAddress!, threads: threads)
            for o in 0..<s.outChannels { for c in 0..<s.inChannels {
                (dw + o * s.rows + c * taps).update(from: sp.baseAddress! + o * taps, count: taps)
            } }
        }
    }

    @inlinable
    static func distinctChannelsWeightGradient(_ s: ConvolutionShape, input x: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
                                               weightGradient dw: UnsafeMutablePointer<T>, threads: Int) {
        let plane = s.outPlane, rows = s.rows, cols = s.columns, outs = s.outChannels, group = imagesPerChunk(s)
        let source = WeightGradientSource(s), copyStride = ShiftedImage.count(s)
        let table = switch source {
        case .inPlace: ImageRowColumns.table(s, images: group)
        case .shiftedCopies: ImageRowColumns.shiftedTable(s, images: group, copyStride: copyStride)
        case .im2col: [Int32]()
        }
        // Threads write disjoint columns p of dW.
        nonisolated(unsafe) let x = x, dy = dy, dw = dw
        Parallel.forEach(rows, threads: threads) { rowRange in
            let p0 = rowRange.lowerBound, count = rowRange.count
            var lanes = [V](repeating: V(), count: outs * count)  // lanes[o·count + (p − p0)]
            let tapTiles = DotTiles<T>.balanced(count, size: DotTiles<T>.columnsPerTile)
            let outputTiles = DotTiles<T>.balanced(outs, size: DotTiles<T>.rowsPerTile)
            let columnCount = switch source {
            case .inPlace: 0
            case .shiftedCopies: group * copyStride + 16
            case .im2col: DotTiles<T>.columnsPerTile * group * plane
            }
            var columns = [T](repeating: 0, count: columnCount)
            // This thread's taps use these input channels only.
            let channels = (p0 / (s.kernelSize * s.kernelSize))..<((rowRange.upperBound - 1) / (s.kernelSize * s.kernelSize) + 1)
            // Where tap p0 + t's row starts: in the chunk's copies, or in the input from the chunk's first image on.
            // Worked out once: dividing p into (c, ki, kj) for every tile of every chunk took a quarter of this
            // function's own time.
            let columnStarts = (p0..<rowRange.upperBound).map { p in
                source == .shiftedCopies ? ShiftedImage.rowStart(s, tap: p) : tapStart(s, tap: p)
            }
            lanes.withUnsafeMutableBufferPointer { lp in
              columns.withUnsafeMutableBufferPointer { cp in
              table.withUnsafeBufferPointer { tp in columnStarts.withUnsafeBufferPointer { starts in
                let image = ImageRowColumns(tp.baseAddress!)
                for n0 in stride(from: 0, to: s.batch, by: group) {
                    let n1 = min(s.batch, n0 + group), width = (n1 - n0) * plane, blocks = width / 16
                    // dY is read in place: a tile reads 4 of its rows, which (a whole batch apart, a multiple of
                    // 4 KiB for conv1) share cache sets but fit in L1's 8 ways. A copy per chunk measured no faster.
                    let lanesBase = lp.baseAddress!
                    switch source {
                    case .shiftedCopies, .inPlace:
                        let chunkBase: UnsafePointer<T>
                        if source == .shiftedCopies {
                            for n in n0..<n1 {
                                ShiftedImage.fill(s, image: n, channels: channels, from: x, into: cp.baseAddress! + (n - n0) * copyStride)
                            }
                            chunkBase = UnsafePointer(cp.baseAddress!)
                        } else {
                            chunkBase = x + n0 * s.height * s.width
                        }
                        // A tile's dY rows stay in L1 while every tap's inputs stream past them.
                        for (o0, outputs) in outputTiles { for (t0, taps) in tapTiles {
                            @inline(__always) func column(_ t: Int) -> UnsafePointer<T> { chunkBase + starts[t0 + min(t, taps - 1)] }
                            DotTiles<T>.accumulate(rows: outputs, columns: taps, lanes: lanesBase + o0 * count + t0, laneStride: count,
                                                   a: dy + o0 * cols + n0 * plane, aStride: cols,
                                                   b: (column(0), column(1), column(2)), placement: image, blocks: blocks)
                        } }
                    case .im2col:
                        for (t0, taps) in tapTiles {
                            Im2col.fill(s, images: n0..<n1, rows: (p0 + t0)..<(p0 + t0 + taps), from: x, into: cp.baseAddress!,
                                        rowStride: width)
                            @inline(__always) func column(_ t: Int) -> UnsafePointer<T> {
                                UnsafePointer(cp.baseAddress! + min(t, taps - 1) * width)
                            }
                            for (o0, outputs) in outputTiles {
                                DotTiles<T>.accumulate(rows: outputs, columns: taps, lanes: lanesBase + o0 * count + t0, laneStride: count,
                                                       a: dy + o0 * cols + n0 * plane, aStride: cols,
                                                       b: (column(0), column(1), column(2)), placement: ContiguousColumns(),
                                                       blocks: blocks)
                            }
                        }
                    }
                }
              } } }
                // Lanes combined as the dot form combines them, then the batch's last (cols mod 16) terms in order.
                let tail = (cols / 16 * 16)..<cols
                for o in 0..<outs { for p in 0..<count {
                    var total = FixedOrderReductions.combine(lp[o * count + p])
                    for j in tail { total.addProduct(dy[o * cols + j], columnValue(s, x, tap: p0 + p, column: j)) }
                    dw[o * rows + p0 + p] = total
                } }
            }
        }
    }

    /// Where the weight gradient reads tap (c, ki, kj)'s row of a chunk: in place from the input rows when output
    /// rows are at least 16 wide (conv1: 1 group in 7 crosses a row end); from per-chunk `ShiftedImage` copies
    /// when they are narrower but an image has at least 8 positions (conv2, OW = 10: 3 groups in 5 cross a row end
    /// in place, each two loads and a select, and the select's registers spill from the 4 × 3 tile; in the copies
    /// only a group crossing into the next image does); by im2col, three taps at a time, below that. The source
    /// changes no bits: the same values in the same lanes.
    @usableFromInline enum WeightGradientSource: Sendable {
        case inPlace, shiftedCopies, im2col

        @inlinable init(_ s: ConvolutionShape) {
            self = s.outWidth >= 16 ? .inPlace : s.outPlane >= 8 ? .shiftedCopies : .im2col
        }
    }

    /// Where tap p = (c, ki, kj) reads the batch's first image: the element offset of x[c][0][ki][kj] in the
    /// input (image n's is n·H·W further on).
    @inlinable
    static func tapStart(_ s: ConvolutionShape, tap p: Int) -> Int {
        let k = s.kernelSize, c = p / (k * k), ki = (p / k) % k, kj = p % k
        return (c * s.batch * s.height + ki) * s.width + kj
    }

    /// The column matrix's value at row p = (c, ki, kj), batch column j = (n, r, q).
    @inlinable
    static func columnValue(_ s: ConvolutionShape, _ x: UnsafePointer<T>, tap p: Int, column j: Int) -> T {
        let n = j / s.outPlane, r = (j % s.outPlane) / s.outWidth, q = j % s.outWidth
        return x[tapStart(s, tap: p) + (n * s.height + r) * s.width + q]
    }

    /// dX = col2im(Wᵀ·dY), chunk by chunk: each chunk's column gradient (axpy form, the same bits as the
    /// whole-batch GEMM) is computed 6·K rows p at a time, while they are in cache, and scattered onto zeros in
    /// increasing p = (c, ki, kj); so every input position sums its (ki, kj) contributions in the same order as
    /// the whole-batch col2im. The scatter takes the K rows (c, ki, 0..<K) together (`scatterTaps`): each input
    /// row, padded to whole vectors in a buffer of the chunk's own, gets its K shifted contributions one after
    /// the other in registers, and is copied to dX at the end of the chunk.
    @inlinable
    static func inputGradient(_ s: ConvolutionShape, weight: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
                              inputGradient dx: UnsafeMutablePointer<T>, threads: Int) {
        let plane = s.outPlane, rows = s.rows, cols = s.columns, group = imagesPerChunk(s), k = s.kernelSize
        let chunks = (s.batch + group - 1) / group, rowsAtOnce = 6 * k  // whole GEMM blocks of 6 rows, whole (c, ki)
        let hw = s.height * s.width, paddedWidth = (s.width + 7) / 8 * 8, paddedPlane = s.height * paddedWidth
        let masks = ScatterMasks(s, paddedWidth: paddedWidth)
        // Threads write disjoint images of dX.
        nonisolated(unsafe) let weight = weight, dy = dy, dx = dx
        Parallel.forEach(chunks, threads: threads) { chunkRange in
            // The column gradient rows, with a vector's margin before and after: a shifted load may reach past a row.
            var chunk = [T](repeating: 0, count: rowsAtOnce * group * plane + 16)
            var gradient = [T](repeating: 0, count: s.outChannels * group * plane)
            var sums = [T](repeating: 0, count: s.inChannels * group * paddedPlane)
            chunk.withUnsafeMutableBufferPointer { cp in gradient.withUnsafeMutableBufferPointer { gp in
              sums.withUnsafeMutableBufferPointer { sp in masks.bits.withUnsafeBufferPointer { mp in
                let rowsBase = cp.baseAddress! + 8
                for g in chunkRange {
                    let n0 = g * group, n1 = min(s.batch, n0 + group), width = (n1 - n0) * plane
                    // The chunk's dY rows side by side, as in `weightGradient`.
                    for o in 0..<s.outChannels {
                        (gp.baseAddress! + o * width).update(from: dy + o * cols + n0 * plane, count: width)
                    }
                    sp.update(repeating: 0)
                    for p0 in stride(from: 0, to: rows, by: rowsAtOnce) {
                        let m = min(rowsAtOnce, rows - p0)
                        PortableGEMM<T>.axpyForm(m: m, columns: 0..<width, k: s.outChannels, alpha: 1, a: weight + p0, aRow: 1,
                                                 aColumn: rows, b: gp.baseAddress!, ldb: width, beta: 0, c: rowsBase,
                                                 ldc: width)
                        for p in stride(from: p0, to: p0 + m, by: k) {
                            let c = p / (k * k), ki = (p / k) % k
                            scatterTaps(s, images: n1 - n0, from: UnsafePointer(rowsBase + (p - p0) * width), rowStride: width,
                                        into: sp.baseAddress! + c * group * paddedPlane + ki * paddedWidth,
                                        paddedWidth: paddedWidth, masks: mp.baseAddress!)
                        }
                    }
                    for c in 0..<s.inChannels { for n in n0..<n1 {
                        let source = sp.baseAddress! + (c * group + n - n0) * paddedPlane, target = dx + (c * s.batch + n) * hw
                        for y in 0..<s.height { Im2col.copy(source + y * paddedWidth, to: target + y * s.width, count: s.width) }
                    } }
                }
              } }
            } }
        }
    }

    /// For a chunk's images and one (c, ki): input row r + ki of image n, padded, += the K column-gradient rows
    /// (c, ki, kj) of output row r, each shifted right by kj, kj increasing, for every output row r. Lanes outside
    /// a row's OW values (before kj or past kj + OW) add +0, which changes nothing: a sum that starts at +0 and
    /// adds no −0 never is −0 (the column gradient is an FMA chain from +0), so x + 0 = x. The images' output
    /// rows follow each other in the column gradient (row n·OH + r) and their padded planes in `rows` (row
    /// n·H + r + ki).
    @inlinable @inline(__always)
    static func scatterTaps(_ s: ConvolutionShape, images: Int, from taps: UnsafePointer<T>, rowStride: Int,
                            into rows: UnsafeMutablePointer<T>, paddedWidth: Int, masks: UnsafePointer<SIMD8<Int32>>) {
        typealias H = SIMD8<T>
        let k = s.kernelSize, ow = s.outWidth, oh = s.outHeight, size = MemoryLayout<T>.stride, vectors = paddedWidth / 8
        let chains = images &* oh, planeGap = s.height &- oh
        // Each (output row, vector v) is a chain of K dependent additions; four chains at a time, interleaved, so
        // that they overlap (one at a time, the loop waited on the adder's latency). The vector is the outer loop,
        // so the four chains share each kj's mask, and one call takes all the chunk's images (a call per image
        // and (c, ki) spent as long setting up as adding). A chain's rows are counted, not divided out of its
        // index: four divisions per four chains took ~40% of the scatter.
        @inline(__always) func target(_ t: Int, _ v: Int) -> UnsafeMutableRawPointer {
            UnsafeMutableRawPointer(rows + t &* paddedWidth) + v &* 8 &* size
        }
        @inline(__always) func shifted(_ row: Int, _ kj: Int, _ offset: Int, _ mask: SIMD8<Int32>) -> H {
            let value = UnsafeRawPointer(taps + row &* ow).loadUnaligned(fromByteOffset: (kj &* rowStride &+ offset) &* size, as: H.self)
            // Lane l holds position 8v + l of the input row, value 8v + l − kj of the tap's output row.
            return ScatterMasks.keep(value, mask)
        }
        /// (column-gradient row, padded target row, output row r) of the next chain.
        @inline(__always) func next(_ c: (row: Int, t: Int, r: Int)) -> (row: Int, t: Int, r: Int) {
            c.r &+ 1 == oh ? (c.row &+ 1, c.t &+ 1 &+ planeGap, 0) : (c.row &+ 1, c.t &+ 1, c.r &+ 1)
        }
        for v in 0..<vectors {
            let maskRow = masks + v &* k
            var i = 0, c0 = (row: 0, t: 0, r: 0)
            while i &+ 4 <= chains {
                let c1 = next(c0), c2 = next(c1), c3 = next(c2)
                let t0 = target(c0.t, v), t1 = target(c1.t, v), t2 = target(c2.t, v), t3 = target(c3.t, v)
                var s0 = t0.loadUnaligned(as: H.self), s1 = t1.loadUnaligned(as: H.self)
                var s2 = t2.loadUnaligned(as: H.self), s3 = t3.loadUnaligned(as: H.self)
                for kj in 0..<k {
                    let mask = maskRow[kj], offset = 8 &* v &- kj
                    s0 += shifted(c0.row, kj, offset, mask)
                    s1 += shifted(c1.row, kj, offset, mask)
                    s2 += shifted(c2.row, kj, offset, mask)
                    s3 += shifted(c3.row, kj, offset, mask)
                }
                t0.storeBytes(of: s0, as: H.self); t1.storeBytes(of: s1, as: H.self)
                t2.storeBytes(of: s2, as: H.self); t3.storeBytes(of: s3, as: H.self)
                c0 = next(c3)
                i &+= 4
            }
            while i < chains {
                let t = target(c0.t, v)
                var sum = t.loadUnaligned(as: H.self)
                for kj in 0..<k { sum += shifted(c0.row, kj, 8 &* v &- kj, maskRow[kj]) }
                t.storeBytes(of: sum, as: H.self)
                c0 = next(c0)
                i &+= 1
            }
        }
    }
}

/// Where a forward tile's (up to 3) groups of 8 output positions lie, from a tap's first input.
@usableFromInline protocol ForwardGroups {
    func load<T: KernelScalar>(_ tap: UnsafeRawPointer, group g: Int) -> SIMD8<T>
}

/// Groups one after the other: a `ShiftedImage` copy, where an image's positions are one run.
@usableFromInline struct ConsecutiveGroups: ForwardGroups {
    @inlinable init() {}

    @inlinable @inline(__always)
    func load<T: KernelScalar>(_ tap: UnsafeRawPointer, group g: Int) -> SIMD8<T> {
        tap.loadUnaligned(fromByteOffset: g &* 8 &* MemoryLayout<T>.stride, as: SIMD8<T>.self)
    }
}

/// Which of a tile's groups cross a row end (bit g: group g), known per tile, so that each pattern is its own
/// loop with a select only where one is needed.
@usableFromInline protocol CrossingGroups { static var crossings: Int { get } }
@usableFromInline enum NoGroupCrosses: CrossingGroups { @inlinable static var crossings: Int { 0 } }
@usableFromInline enum FirstGroupCrosses: CrossingGroups { @inlinable static var crossings: Int { 1 } }
@usableFromInline enum SecondGroupCrosses: CrossingGroups { @inlinable static var crossings: Int { 2 } }
@usableFromInline enum ThirdGroupCrosses: CrossingGroups { @inlinable static var crossings: Int { 4 } }
@usableFromInline enum AnyGroupCrosses: CrossingGroups { @inlinable static var crossings: Int { 7 } }

/// A forward tile's groups in an image read in place (`PortableConvolution.forwardInPlace`), in bytes from the
/// tap's first input: a group starts at `here`; one that crosses a row end takes its lanes from `split` on from
/// `next` (the next input row), as `ImageRowColumns` describes.
@usableFromInline struct InPlaceGroups: Sendable {
    @usableFromInline let here: (Int, Int, Int), next: (Int, Int, Int)
    /// −1 in the lanes a crossing group takes from `here`.
    @usableFromInline let below: (SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>)
    /// Bit g: group g (of the tile's `count`) crosses a row end.
    @usableFromInline let crossings: Int

    /// `entries`: per group (element offset, split, offset of the rest minus split) of `ImageRowColumns.table`.
    @inlinable
    init(_ entries: [(offset: Int, split: Int, rest: Int)], count: Int, size: Int) {
        // A group that does not cross reads its `next` from `here`: every load stays where the group lies.
        let bytes = entries.map { e in (e.offset * size, (e.split == 8 ? e.offset : e.rest) * size) }
        let masks = entries.map { e in (SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) &- Int32(e.split)) &>> 31 }
        here = (bytes[0].0, bytes[1].0, bytes[2].0)
        next = (bytes[0].1, bytes[1].1, bytes[2].1)
        below = (masks[0], masks[1], masks[2])
        crossings = (0..<count).reduce(0) { bits, g in entries[g].split < 8 ? bits | 1 << g : bits }
    }

    @inlinable @inline(__always)
    func crossing<Crossing: CrossingGroups>(_: Crossing.Type) -> InPlaceTile<Crossing> { InPlaceTile(groups: self) }
}

/// `InPlaceGroups` with its crossing pattern fixed at compile time.
@usableFromInline struct InPlaceTile<Crossing: CrossingGroups>: ForwardGroups {
    @usableFromInline let groups: InPlaceGroups

    @inlinable init(groups: InPlaceGroups) { self.groups = groups }

    @inlinable @inline(__always)
    func load<T: KernelScalar>(_ tap: UnsafeRawPointer, group g: Int) -> SIMD8<T> {
        let here = g == 0 ? groups.here.0 : g == 1 ? groups.here.1 : groups.here.2
        let a = tap.loadUnaligned(fromByteOffset: here, as: SIMD8<T>.self)
        guard Crossing.crossings & (1 &<< g) != 0 else { return a }
        let next = g == 0 ? groups.next.0 : g == 1 ? groups.next.1 : groups.next.2
        let below = g == 0 ? groups.below.0 : g == 1 ? groups.below.1 : groups.below.2
        return ImageRowColumns.joined(a, tap.loadUnaligned(fromByteOffset: next, as: SIMD8<T>.self), below: below)
    }
}

/// Per (vector v of a padded input row, kj): −1 in the lanes whose position 8v + l takes a value of the tap's
/// output row (kj ≤ 8v + l < kj + OW), 0 elsewhere.
@usableFromInline
struct ScatterMasks: Sendable {
    @usableFromInline let bits: [SIMD8<Int32>]

    @inlinable
    init(_ s: ConvolutionShape, paddedWidth: Int) {
        let k = s.kernelSize, ow = s.outWidth
        bits = (0..<(paddedWidth / 8)).flatMap { v in
            (0..<k).map { kj in SIMD8<Int32>((0..<8).map { l in (kj..<(kj + ow)).contains(8 * v + l) ? -1 : 0 }) }
        }
    }

    /// `v` where `mask` is −1, +0 elsewhere (bit patterns: a NaN outside the row is dropped too).
    @inlinable @inline(__always)
    static func keep<T: KernelScalar>(_ v: SIMD8<T>, _ mask: SIMD8<Int32>) -> SIMD8<T> {
        if MemoryLayout<T>.stride == 4 {
            return unsafeBitCast(unsafeBitCast(v, to: SIMD8<UInt32>.self) & SIMD8<UInt32>(truncatingIfNeeded: mask), to: SIMD8<T>.self)
        }
        let wide = SIMD8<UInt64>(truncatingIfNeeded: SIMD8<Int64>(truncatingIfNeeded: mask))
        return unsafeBitCast(unsafeBitCast(v, to: SIMD8<UInt64>.self) & wide, to: SIMD8<T>.self)
    }
}

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

    /// Copies of image n's channels `channels` (by default all).
    @inlinable
    static func fill<T: SIMDScalar>(_ s: ConvolutionShape, image n: Int, channels: Range<Int>? = nil, from x: UnsafePointer<T>,
                                    into dst: UnsafeMutablePointer<T>) {
        let h = s.height, w = s.width, ow = s.outWidth
        for kj in 0..<s.kernelSize { for c in channels ?? 0..<s.inChannels {
            let source = x + (c * s.batch + n) * h * w + kj, target = dst + (kj * s.inChannels + c) * h * ow
            for i in 0..<h { Im2col.copy(source + i * w, to: target + i * ow, count: ow) }
        } }
    }
}
