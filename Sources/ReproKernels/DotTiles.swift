/// Many dot products at once, each in the dot form's lane order: lane l of dot(a_i, b_j) sums the products at
/// indices ≡ l (mod 16) in increasing index, in a row. Lanes are independent sums, so a tile of up to 4 rows a_i
/// × 3 rows b_j runs one 8-lane half at a time: 12 accumulators of 8 lanes, 3 b vectors and one a vector fill
/// the 16 AVX2 registers, and 7 loads feed 12 fused multiply-adds (one dot product at a time needs 2 per 1).
/// Used by the convolution weight gradients and the GEMM's dot form; the caller combines the lanes and adds
/// the tail.
@usableFromInline
enum DotTiles<T: KernelScalar> {
    @usableFromInline typealias V = SIMD16<T>

    @inlinable static var rowsPerTile: Int { 4 }
    @inlinable static var columnsPerTile: Int { 3 }

    /// 0..<count split into ⌈count / size⌉ parts (start, length) differing by at most one in length (6 channels
    /// → 3 + 3, not 4 + 2).
    @inlinable
    static func balanced(_ count: Int, size: Int) -> [(Int, Int)] {
        let parts = (count + size - 1) / size
        return (0..<parts).map { i in (count * i / parts, count * (i + 1) / parts - count * i / parts) }
    }

    /// lanes[(i, j)] += Σ_blk a_i[16·blk ..< +16] · b_j[16·blk ..< +16], blk = 0 ..< blocks increasing, for
    /// `rows` ≤ 4 rows a_i (`aStride` apart) and `columns` ≤ 3 rows b_j, one 8-lane half at a time. Dispatched to
    /// a copy per tile shape, so that the loop body has no conditions.
    /// `placement` says where a b row's values lie (`ContiguousColumns`, or `ImageRowColumns` for a convolution's
    /// inputs read from the images or from their shifted copies).
    @inlinable @inline(__always)
    static func accumulate<Placement: ColumnPlacement>(
        rows outputs: Int, columns taps: Int, lanes: UnsafeMutablePointer<V>, laneStride: Int,
        a dy: UnsafePointer<T>, aStride dyStride: Int,
        b columns: (UnsafePointer<T>, UnsafePointer<T>, UnsafePointer<T>), placement: Placement, blocks: Int
    ) {
        let p = placement
        // Each case is its own specialization of the loop, with the tile's shape a constant.
        switch (outputs, taps) {
        case (4, 3): tile(Four.self, Three.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        case (3, 3): tile(Three.self, Three.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        case (4, 2): tile(Four.self, Two.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        case (3, 2): tile(Three.self, Two.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        case (4, 1): tile(Four.self, One.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        case (3, 1): tile(Three.self, One.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        case (2, 3): tile(Two.self, Three.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        case (2, 2): tile(Two.self, Two.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        case (2, 1): tile(Two.self, One.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        case (1, 3): tile(One.self, Three.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        case (1, 2): tile(One.self, Two.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        default: tile(One.self, One.self, lanes, laneStride, dy, dyStride, columns, p, blocks)
        }
    }

    @inlinable
    static func tile<Outputs: TileExtent, Taps: TileExtent, Placement: ColumnPlacement>(
        _: Outputs.Type, _: Taps.Type, _ lanes: UnsafeMutablePointer<V>, _ laneStride: Int, _ dy: UnsafePointer<T>,
        _ dyStride: Int, _ columns: (UnsafePointer<T>, UnsafePointer<T>, UnsafePointer<T>), _ placement: Placement,
        _ blocks: Int
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
            let c0 = UnsafeRawPointer(columns.0), c1 = UnsafeRawPointer(columns.1), c2 = UnsafeRawPointer(columns.2)
            let d = UnsafeRawPointer(dy) + halfBytes, rowBytes = dyStride &* size, step = 16 &* size
            var offset = 0, group = half  // group g: lanes 8g ..< 8g + 8 of the rows, half of block g / 2
            for _ in 0..<blocks {
                let (v0, v1, v2): (H, H, H) = placement.load(c0, c1, c2, count: taps, group: group)
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
                group &+= 2
            }
            put(a00, 0, 0); put(a01, 0, 1); put(a02, 0, 2)
            put(a10, 1, 0); put(a11, 1, 1); put(a12, 1, 2)
            put(a20, 2, 0); put(a21, 2, 1); put(a22, 2, 2)
            put(a30, 3, 0); put(a31, 3, 1); put(a32, 3, 2)
        }
    }
}

/// A tile extent known at compile time: each tile shape specializes its own loop without conditions.
@usableFromInline protocol TileExtent { static var value: Int { get } }
@usableFromInline enum One: TileExtent { @inlinable static var value: Int { 1 } }
@usableFromInline enum Two: TileExtent { @inlinable static var value: Int { 2 } }
@usableFromInline enum Three: TileExtent { @inlinable static var value: Int { 3 } }
@usableFromInline enum Four: TileExtent { @inlinable static var value: Int { 4 } }

/// Where the values of the b rows lie, 8 at a time: group g holds a row's elements 8g ..< 8g + 8. `load`
/// reads group g of the first `count` (≤ 3) rows; the others are zero.
@usableFromInline protocol ColumnPlacement {
    func load<T: KernelScalar>(_ r0: UnsafeRawPointer, _ r1: UnsafeRawPointer, _ r2: UnsafeRawPointer, count: Int,
                               group g: Int) -> (SIMD8<T>, SIMD8<T>, SIMD8<T>)
}

/// Rows stored as contiguous runs.
@usableFromInline struct ContiguousColumns: ColumnPlacement {
    @inlinable init() {}

    @inlinable @inline(__always)
    func load<T: KernelScalar>(_ r0: UnsafeRawPointer, _ r1: UnsafeRawPointer, _ r2: UnsafeRawPointer, count: Int,
                               group g: Int) -> (SIMD8<T>, SIMD8<T>, SIMD8<T>) {
        let offset = g &* 8 &* MemoryLayout<T>.stride
        return (r0.loadUnaligned(fromByteOffset: offset, as: SIMD8<T>.self),
                count > 1 ? r1.loadUnaligned(fromByteOffset: offset, as: SIMD8<T>.self) : SIMD8<T>(),
                count > 2 ? r2.loadUnaligned(fromByteOffset: offset, as: SIMD8<T>.self) : SIMD8<T>())
    }
}

/// A convolution's column row read in place from the input: element j = (n, r, q) of a chunk's row for tap
/// (c, ki, kj) is x[c][n0 + n][r + ki][q + kj], element n·H·W + r·W + q from the tap's first input. A group
/// of 8 positions within one output row is one load; a group that runs past a row's end (q > OW − 8) takes its
/// lanes from `split` = OW − q on from where the next position lies (the next row, or the next image's first
/// row), two loads and a select. No copy of the input is made. Needs OW ≥ 8, so that a group meets at most one
/// row end; every load then stays inside the input (past a row's end lies the next row or image, and a group
/// only crosses into a position that exists). The same loads serve a chunk's `ShiftedImage` copies
/// (`shiftedTable`), where a tap's positions are one run per image and only image ends split a group.
@usableFromInline struct ImageRowColumns: ColumnPlacement {
    /// Per group g, at 3g: the element offset of its first value; `split` (8: none); the offset of the value at
    /// lane `split` minus `split` (where the rest continues). One table, so the loop keeps one pointer for it;
    /// 32-bit entries, the first two read as one 64-bit load (a load less per group: conv1's in-place tiles
    /// are bound by their loads).
    @usableFromInline let groups: UnsafePointer<Int32>

    @inlinable init(_ groups: UnsafePointer<Int32>) { self.groups = groups }

    /// The table for the positions of `images` images of OH × OW outputs, inputs H × W (`s`).
    @inlinable
    static func table(_ s: ConvolutionShape, images: Int) -> [Int32] {
        let ow = s.outWidth, plane = s.outPlane
        precondition(ow >= 8)
        return table(groups: images * plane / 8, runLength: ow) { j in j / plane * s.height * s.width + j % plane / ow * s.width + j % ow }
    }

    /// The table for `images` images' `ShiftedImage` copies, `copyStride` elements apart: a tap's positions
    /// are one run per image there, so only a group that crosses into the next image is two loads.
    @inlinable
    static func shiftedTable(_ s: ConvolutionShape, images: Int, copyStride: Int) -> [Int32] {
        let plane = s.outPlane
        precondition(plane >= 8)
        return table(groups: images * plane / 8, runLength: plane) { j in j / plane * copyStride + j % plane }
    }

    /// Group g's entries when the positions lie in runs of `runLength` (≥ 8) at `offset(j)`.
    @inlinable
    static func table(groups: Int, runLength: Int, offset: (Int) -> Int) -> [Int32] {
        var table = [Int32]()
        table.reserveCapacity(3 * groups + 1)
        for g in 0..<groups {
            let split = min(8, runLength - 8 * g % runLength)
            table.append(Int32(offset(8 * g)))
            table.append(Int32(split))
            table.append(Int32(offset(8 * g + split) - split))
        }
        table.append(0)  // the last group's 64-bit load stays inside
        return table
    }

    @inlinable @inline(__always)
    func load<T: KernelScalar>(_ r0: UnsafeRawPointer, _ r1: UnsafeRawPointer, _ r2: UnsafeRawPointer, count: Int,
                               group g: Int) -> (SIMD8<T>, SIMD8<T>, SIMD8<T>) {
        let entry = groups + 3 &* g, size = MemoryLayout<T>.stride
        let packed = UnsafeRawPointer(entry).loadUnaligned(as: UInt64.self)
        #if _endian(little)
        let (first, second) = (packed, packed &>> 32)
        #else
        let (first, second) = (packed &>> 32, packed)
        #endif
        let here = Int(Int32(truncatingIfNeeded: first)) &* size, split = Int(Int32(truncatingIfNeeded: second))
        // One test per group, not per row.
        if split == 8 { return ContiguousColumns().load(r0 + here, r1 + here, r2 + here, count: count, group: 0) }
        let next = Int(entry[2]) &* size
        // Lanes below `split` from this row, the rest from the next.
        let below = (SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) &- Int32(truncatingIfNeeded: split)) &>> 31  // −1 where lane < split
        @inline(__always) func joined(_ row: UnsafeRawPointer) -> SIMD8<T> {
            Self.joined(row.loadUnaligned(fromByteOffset: here, as: SIMD8<T>.self),
                        row.loadUnaligned(fromByteOffset: next, as: SIMD8<T>.self), below: below)
        }
        return (joined(r0), count > 1 ? joined(r1) : SIMD8<T>(), count > 2 ? joined(r2) : SIMD8<T>())
    }

    /// `a` in the lanes where `below` is −1, `b` elsewhere: a select on bit patterns.
    @inlinable @inline(__always)
    static func joined<T: KernelScalar>(_ a: SIMD8<T>, _ b: SIMD8<T>, below: SIMD8<Int32>) -> SIMD8<T> {
        if MemoryLayout<T>.stride == 4 {
            let m = SIMD8<UInt32>(truncatingIfNeeded: below)
            return unsafeBitCast((unsafeBitCast(a, to: SIMD8<UInt32>.self) & m) | (unsafeBitCast(b, to: SIMD8<UInt32>.self) & ~m),
                                 to: SIMD8<T>.self)
        }
        let m = SIMD8<UInt64>(truncatingIfNeeded: SIMD8<Int64>(truncatingIfNeeded: below))
        return unsafeBitCast((unsafeBitCast(a, to: SIMD8<UInt64>.self) & m) | (unsafeBitCast(b, to: SIMD8<UInt64>.self) & ~m),
                             to: SIMD8<T>.self)
    }
}
