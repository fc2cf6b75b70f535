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
    @inlinable @inline(__always)
    static func accumulate(rows outputs: Int, columns taps: Int, lanes: UnsafeMutablePointer<V>, laneStride: Int,
                           a dy: UnsafePointer<T>, aStride dyStride: Int,
                           b columns: (UnsafePointer<T>, UnsafePointer<T>, UnsafePointer<T>), blocks: Int) {
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
}

/// A tile extent known at compile time: each tile shape specializes its own loop without conditions.
@usableFromInline protocol TileExtent { static var value: Int { get } }
@usableFromInline enum One: TileExtent { @inlinable static var value: Int { 1 } }
@usableFromInline enum Two: TileExtent { @inlinable static var value: Int { 2 } }
@usableFromInline enum Three: TileExtent { @inlinable static var value: Int { 3 } }
@usableFromInline enum Four: TileExtent { @inlinable static var value: Int { 4 } }
