/// Geometry of a stride-1, unpadded 2-d convolution on channel-major activations: input [C][N][H][W],
/// weight [O][C][K][K] (rows of the GEMM: p = (c·K + ki)·K + kj), output [O][N][OH][OW].
public struct ConvolutionShape: Sendable, Equatable {
    public var inChannels: Int, batch: Int, height: Int, width: Int, kernelSize: Int, outChannels: Int

    @inlinable
    public init(inChannels: Int, batch: Int, height: Int, width: Int, kernelSize: Int, outChannels: Int) {
        self.inChannels = inChannels; self.batch = batch; self.height = height; self.width = width
        self.kernelSize = kernelSize; self.outChannels = outChannels
    }

    @inlinable public var outHeight: Int { height - kernelSize + 1 }
    @inlinable public var outWidth: Int { width - kernelSize + 1 }
    /// Output positions of one image.
    @inlinable public var outPlane: Int { outHeight * outWidth }
    /// Rows of the column matrix: C·K·K, the GEMM's inner dimension.
    @inlinable public var rows: Int { inChannels * kernelSize * kernelSize }
    /// Columns of the full column matrix: one per output position of the batch, (n, oh, ow).
    @inlinable public var columns: Int { batch * outPlane }
}

/// im2col: column-matrix row p = (c, ki, kj), column (n, r, q) holds x[c][n][r + ki][q + kj].
public enum Im2col {
    /// Rows `rows` of the column matrix for images `images` (their parts side by side), written to
    /// dst[(p − rows.lowerBound)·rowStride + (n − images.lowerBound)·OH·OW + r·OW + q]. A copy of bit patterns:
    /// exact, and specialized by element size, because callers reach it through `any Kernels` where a generic
    /// body would run unspecialized.
    @inlinable
    public static func fill<T>(_ s: ConvolutionShape, images: Range<Int>, rows: Range<Int>, from x: UnsafePointer<T>,
                               into dst: UnsafeMutablePointer<T>, rowStride: Int) {
        switch MemoryLayout<T>.stride {
        case 4: fill32(s, images: images, rows: rows, from: UnsafeRawPointer(x), into: UnsafeMutableRawPointer(dst), rowStride: rowStride)
        case 8: fill64(s, images: images, rows: rows, from: UnsafeRawPointer(x), into: UnsafeMutableRawPointer(dst), rowStride: rowStride)
        default: preconditionFailure("im2col of \(T.self): only 4- and 8-byte scalars")
        }
    }

    // Concrete entry points, compiled here once for 4- and 8-byte scalars: `fill` is reached from generic
    // code, where a copy loop over T would move every value through value witnesses.
    @usableFromInline
    static func fill32(_ s: ConvolutionShape, images: Range<Int>, rows: Range<Int>, from x: UnsafeRawPointer,
                       into dst: UnsafeMutableRawPointer, rowStride: Int) {
        copyRows(s, images: images, rows: rows, from: x.assumingMemoryBound(to: UInt32.self),
                 into: dst.assumingMemoryBound(to: UInt32.self), rowStride: rowStride)
    }

    @usableFromInline
    static func fill64(_ s: ConvolutionShape, images: Range<Int>, rows: Range<Int>, from x: UnsafeRawPointer,
                       into dst: UnsafeMutableRawPointer, rowStride: Int) {
        copyRows(s, images: images, rows: rows, from: x.assumingMemoryBound(to: UInt64.self),
                 into: dst.assumingMemoryBound(to: UInt64.self), rowStride: rowStride)
    }

    /// dst[0..<count] = value, by bit pattern (see `fill`).
    @inlinable
    public static func broadcast<T>(_ value: UnsafePointer<T>, into dst: UnsafeMutablePointer<T>, count: Int) {
        switch MemoryLayout<T>.size {
        case 4: (cast(dst) as UnsafeMutablePointer<UInt32>).update(repeating: (cast(value) as UnsafePointer<UInt32>).pointee, count: count)
        case 8: (cast(dst) as UnsafeMutablePointer<UInt64>).update(repeating: (cast(value) as UnsafePointer<UInt64>).pointee, count: count)
        default: dst.update(repeating: value.pointee, count: count)
        }
    }

    @inline(__always)
    static func copyRows<E: SIMDScalar>(_ s: ConvolutionShape, images: Range<Int>, rows: Range<Int>, from x: UnsafePointer<E>,
                            into dst: UnsafeMutablePointer<E>, rowStride: Int) {
        let k = s.kernelSize, oh = s.outHeight, ow = s.outWidth, hw = s.height * s.width, plane = s.outPlane
        for p in rows {
            let c = p / (k * k), ki = (p / k) % k, kj = p % k
            let row = dst + (p - rows.lowerBound) * rowStride
            for n in images {
                let source = x + (c * s.batch + n) * hw + ki * s.width + kj, target = row + (n - images.lowerBound) * plane
                for r in 0..<oh { copy(source + r * s.width, to: target + r * ow, count: ow) }
            }
        }
    }

    /// to[0..<count] = from[0..<count], eight at a time, the last eight overlapping the ones before (rows are
    /// short: 10 for conv2, below the trip count at which the loop vectorizer's own vector loop starts).
    @inlinable @inline(__always)
    static func copy<E: SIMDScalar>(_ from: UnsafePointer<E>, to: UnsafeMutablePointer<E>, count: Int) {
        guard count >= 8 else {
            for q in 0..<count { to[q] = from[q] }
            return
        }
        @inline(__always) func eight(_ q: Int) {
            UnsafeMutableRawPointer(to + q).storeBytes(of: UnsafeRawPointer(from + q).loadUnaligned(as: SIMD8<E>.self), as: SIMD8<E>.self)
        }
        var q = 0
        while q &+ 8 < count { eight(q); q &+= 8 }
        eight(count &- 8)
    }
}

/// The convolution entry points of `Kernels`, as im2col of the whole batch + one GEMM: the reference
/// order (each output is bias + the GEMM's sum over p), and what an implementation without a
/// convolution of its own runs.
public enum ConvolutionByColumns {
    /// Y = W·cols + bias; leaves the column matrix in `columns` for the weight gradient.
    @inlinable
    public static func forward<T: KernelScalar>(
        _ s: ConvolutionShape, kernels: any Kernels, input x: UnsafePointer<T>, weight: UnsafePointer<T>,
        bias: UnsafePointer<T>, output y: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        fillColumns(s, input: x, columns: &columns)
        let cols = s.columns
        for o in 0..<s.outChannels { Im2col.broadcast(bias + o, into: y + o * cols, count: cols) }
        columns.withUnsafeBufferPointer { cp in
            kernels.gemm(.none, .none, m: s.outChannels, n: cols, k: s.rows, alpha: 1, a: weight, lda: s.rows,
                         b: cp.baseAddress!, ldb: cols, beta: 1, c: y, ldc: cols)
        }
    }

    /// dW = dY·colsᵀ, reusing `columns` from the forward pass of the same input when it is there.
    @inlinable
    public static func weightGradient<T: KernelScalar>(
        _ s: ConvolutionShape, kernels: any Kernels, input x: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
        weightGradient dw: UnsafeMutablePointer<T>, columns: inout [T]
    ) {
        if columns.count != s.rows * s.columns { fillColumns(s, input: x, columns: &columns) }
        columns.withUnsafeBufferPointer { cp in
            kernels.gemm(.none, .transposed, m: s.outChannels, n: s.rows, k: s.columns, alpha: 1, a: dy, lda: s.columns,
                         b: cp.baseAddress!, ldb: s.columns, beta: 0, c: dw, ldc: s.rows)
        }
    }

    /// dX = col2im(Wᵀ·dY): the column gradient by one GEMM, then scatter-added onto zeros in the order
    /// (c, ki, kj, n, r, q), so every input position sums its contributions in (ki, kj) order.
    @inlinable
    public static func inputGradient<T: KernelScalar>(
        _ s: ConvolutionShape, kernels: any Kernels, weight: UnsafePointer<T>, outputGradient dy: UnsafePointer<T>,
        inputGradient dx: UnsafeMutablePointer<T>
    ) {
        let rows = s.rows, cols = s.columns
        var dcols: [T] = zeroedArray(count: rows * cols)
        dcols.withUnsafeMutableBufferPointer { d in
            kernels.gemm(.transposed, .none, m: rows, n: cols, k: s.outChannels, alpha: 1, a: weight, lda: rows,
                         b: dy, ldb: cols, beta: 0, c: d.baseAddress!, ldc: cols)
        }
        // Entered through concrete Float/Double code: reached through `any Kernels`, a generic body runs unspecialized.
        dcols.withUnsafeBufferPointer { d in
            if T.self == Float.self {
                col2im(cast(d.baseAddress!) as UnsafePointer<Float>, s, into: cast(dx))
            } else if T.self == Double.self {
                col2im(cast(d.baseAddress!) as UnsafePointer<Double>, s, into: cast(dx))
            } else {
                col2im(d.baseAddress!, s, into: dx)
            }
        }
    }

    @inlinable
    static func col2im<T: KernelScalar>(_ source: UnsafePointer<T>, _ s: ConvolutionShape, into dx: UnsafeMutablePointer<T>) {
        let cols = s.columns, k = s.kernelSize, h = s.height, w = s.width, oh = s.outHeight, ow = s.outWidth
        UnsafeMutableRawPointer(dx).initializeMemory(as: UInt8.self, repeating: 0, count: s.inChannels * s.batch * h * w * MemoryLayout<T>.stride)
        for c in 0..<s.inChannels { for ki in 0..<k { for kj in 0..<k {
            let row = source + ((c * k + ki) * k + kj) * cols
            for img in 0..<s.batch {
                let plane = dx + (c * s.batch + img) * h * w
                for r in 0..<oh {
                    let out = plane + (r + ki) * w + kj, inp = row + (img * oh + r) * ow
                    for q in 0..<ow { out[q] += inp[q] }
                }
            }
        } } }
    }

    @inlinable
    static func fillColumns<T: KernelScalar>(_ s: ConvolutionShape, input x: UnsafePointer<T>, columns: inout [T]) {
        if columns.count != s.rows * s.columns { columns = zeroedArray(count: s.rows * s.columns) }
        columns.withUnsafeMutableBufferPointer { cp in
            Im2col.fill(s, images: 0..<s.batch, rows: 0..<s.rows, from: x, into: cp.baseAddress!, rowStride: s.columns)
        }
    }
}
