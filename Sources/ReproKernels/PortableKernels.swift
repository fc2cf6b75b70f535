
/// Kernels whose every floating-point operation happens in an order fixed by this code, so results are
/// bit-identical on every IEEE-754 machine, for every thread count:
///
/// - GEMM, op(B) not transposed ("axpy form"): each output is acc = 0; for p in 0..<k { acc = fma(a(i,p), b(p,j), acc) }
///   — one fused multiply-add, one rounding, per term, in increasing p. SIMD runs 16 such outputs side by side
///   (different j), which does not change any single output's order.
/// - GEMM, op(B) transposed ("dot form", rows of op(A) and of B both contiguous in p): each output is a
///   fixed-order dot product — 16 partial sums over p mod 16 (fused), combined by the fixed pairwise tree of
///   `FixedOrderReductions.combine`, then the k mod 16 tail in order (fused).
/// - Both then apply C = r + β·C as: r = acc when α = 1 else α·acc; C = r (β = 0, C is not read), C + r
///   (β = 1), else β·C + r.
/// - Fused multiply-add is explicit (`addProduct`, IEEE 754's fusedMultiplyAdd: one rounding, the same result
///   on every machine) and used exactly where written; Swift never contracts a·b + c on its own. It halves the
///   floating-point instructions of the GEMM. A CPU without FMA instructions
///   gets the same bits from libm's fmaf, much more slowly (see Package.swift: builds target Haswell where
///   the build machine has it).
/// - Convolution: `PortableConvolution`, the same arithmetic as im2col + this GEMM.
/// - Threads split the output columns; every output is computed whole by one thread, so the thread count
///   changes the time, never the bits.
/// - exp and log are `PortableMath` (polynomials of +, −, ×, ÷ only), reductions `FixedOrderReductions`.
public struct PortableKernels: Kernels {
    public let threads: Int
    public init(threads: Int = 1) { self.threads = max(1, threads) }

    @inlinable
    public func gemm<T: KernelScalar>(
        _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
        alpha: T, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        if T.self == Float.self {
            PortableGEMM<Float>.run(transA, transB, m: m, n: n, k: k, alpha: unsafeBitCast(alpha, to: Float.self),
                                    a: cast(a), lda: lda, b: cast(b), ldb: ldb, beta: unsafeBitCast(beta, to: Float.self),
                                    c: cast(c), ldc: ldc, threads: threads)
        } else if T.self == Double.self {
            PortableGEMM<Double>.run(transA, transB, m: m, n: n, k: k, alpha: unsafeBitCast(alpha, to: Double.self),
                                     a: cast(a), lda: lda, b: cast(b), ldb: ldb, beta: unsafeBitCast(beta, to: Double.self),
                                     c: cast(c), ldc: ldc, threads: threads)
        } else {
            PortableGEMM<T>.run(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                                beta: beta, c: c, ldc: ldc, threads: threads)
        }
    }

    @inlinable public func exp<T: KernelScalar>(_ x: T) -> T { PortableMath.exp(x) }
    @inlinable public func log<T: KernelScalar>(_ x: T) -> T { PortableMath.log(x) }
}

/// The GEMM of `PortableKernels`; see there for the order of operations.
@usableFromInline
enum PortableGEMM<T: KernelScalar> {
    @usableFromInline typealias V = SIMD16<T>

    @inlinable
    static func finish(_ acc: T, alpha: T, beta: T, into c: UnsafeMutablePointer<T>) {
        let r = alpha == 1 ? acc : alpha * acc
        if beta == 0 { c.pointee = r } else if beta == 1 { c.pointee = c.pointee + r } else { c.pointee = beta * c.pointee + r }
    }

    // Always inlined: a call passes the 64-byte accumulator through memory, and a k = 16 block (conv2's input
    // gradient) spent ~15% of its time in six such calls.
    @inlinable @inline(__always)
    static func finish(_ acc: V, alpha: T, beta: T, into c: UnsafeMutablePointer<T>) {
        let raw = UnsafeMutableRawPointer(c)
        let r = alpha == 1 ? acc : V(repeating: alpha) * acc
        if beta == 0 {
            raw.storeBytes(of: r, as: V.self)
        } else {
            let old = raw.loadUnaligned(as: V.self)
            raw.storeBytes(of: beta == 1 ? old + r : V(repeating: beta) * old + r, as: V.self)
        }
    }

    @inlinable
    static func run(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: T,
                    a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
                    beta: T, c: UnsafeMutablePointer<T>, ldc: Int, threads: Int) {
        // a(i, p) = a[i·rowStride + p·columnStride]
        let aRow = transA == .none ? lda : 1, aColumn = transA == .none ? 1 : lda
        // Column chunks, multiples of 16, one per thread; the split never changes an output's arithmetic.
        // Below ~256 K multiply-adds (fc5's 107 K, ~3 µs) a second thread is not worth its hand-over (~1 µs with
        // `Parallel`'s spinning workers); fc4's 1.3 M are (fc backward ~13% faster on 2 threads).
        let chunks = threads > 1 && n >= 64 && m * n * k >= 1 << 18 ? threads : 1
        let width = ((n + chunks - 1) / chunks + 15) / 16 * 16
        // Each chunk writes a disjoint set of columns of C: sharing the pointers is safe.
        nonisolated(unsafe) let a = a, b = b, c = c
        let work: @Sendable (Int) -> Void = { chunk in
            let j0 = chunk * width, j1 = min(n, j0 + width)
            guard j0 < j1 else { return }
            if transB == .none {
                axpyForm(m: m, columns: j0..<j1, k: k, alpha: alpha, a: a, aRow: aRow, aColumn: aColumn, b: b, ldb: ldb,
                         beta: beta, c: c, ldc: ldc)
            } else {
                dotForm(m: m, columns: j0..<j1, k: k, alpha: alpha, a: a, aRow: aRow, aColumn: aColumn, b: b, ldb: ldb,
                        beta: beta, c: c, ldc: ldc)
            }
        }
        Parallel.forEach(chunks, threads: chunks) { range in range.forEach(work) }
    }

    /// C[i, j] = Σ_p a(i,p)·B[p, j], p increasing. Register blocks of 6 rows × 16 columns, walked in panels
    /// of 256 columns × all rows, so a panel of B is read from memory once and from cache after that, and C
    /// is written in runs of 1 KiB. (Loop order only changes speed: each output's arithmetic is fixed.)
    @inlinable
    static func axpyForm(m: Int, columns: Range<Int>, k: Int, alpha: T, a: UnsafePointer<T>, aRow: Int, aColumn: Int,
                         b: UnsafePointer<T>, ldb: Int, beta: T, c: UnsafeMutablePointer<T>, ldc: Int) {
        let fullEnd = columns.lowerBound + (columns.count / 16) * 16
        for panel in stride(from: columns.lowerBound, to: fullEnd, by: 256) {
            let panelEnd = min(panel + 256, fullEnd)
            for i in stride(from: 0, to: m, by: 6) {
                for j in stride(from: panel, to: panelEnd, by: 16) {
                    axpyBlock(rows: min(6, m - i), i: i, j: j, k: k, alpha: alpha, a: a, aRow: aRow, aColumn: aColumn,
                              b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
                }
            }
        }
        for jj in fullEnd..<columns.upperBound {
            for i in 0..<m {
                var acc: T = 0
                for p in 0..<k { acc.addProduct(a[i * aRow + p * aColumn], b[p * ldb + jj]) }
                finish(acc, alpha: alpha, beta: beta, into: c + i * ldc + jj)
            }
        }
    }

    /// One register block: rows i..<i+rows (≤ 6) × columns j..<j+16, accumulated over p in increasing order.
    /// The loops walk pointers with wrapping arithmetic: index products with overflow checks cost more
    /// instructions than the multiply-adds themselves.
    @inlinable
    static func axpyBlock(rows: Int, i: Int, j: Int, k: Int, alpha: T, a: UnsafePointer<T>, aRow: Int, aColumn: Int,
                          b: UnsafePointer<T>, ldb: Int, beta: T, c: UnsafeMutablePointer<T>, ldc: Int) {
        let bStep = ldb &* MemoryLayout<T>.stride
        var bp = UnsafeRawPointer(b + j), ap = a + i * aRow
        var acc0 = V(), acc1 = V(), acc2 = V(), acc3 = V(), acc4 = V(), acc5 = V()
        let r1 = aRow, r2 = 2 &* aRow, r3 = 3 &* aRow, r4 = 4 &* aRow, r5 = 5 &* aRow
        // Specialized loops for the common row counts keep the accumulators in registers.
        switch rows {
        case 6:
            for _ in 0..<k {
                let bv = bp.loadUnaligned(as: V.self)
                acc0.addProduct(V(repeating: ap[0]), bv)
                acc1.addProduct(V(repeating: ap[r1]), bv)
                acc2.addProduct(V(repeating: ap[r2]), bv)
                acc3.addProduct(V(repeating: ap[r3]), bv)
                acc4.addProduct(V(repeating: ap[r4]), bv)
                acc5.addProduct(V(repeating: ap[r5]), bv)
                bp += bStep; ap += aColumn
            }
        case 4:
            for _ in 0..<k {
                let bv = bp.loadUnaligned(as: V.self)
                acc0.addProduct(V(repeating: ap[0]), bv)
                acc1.addProduct(V(repeating: ap[r1]), bv)
                acc2.addProduct(V(repeating: ap[r2]), bv)
                acc3.addProduct(V(repeating: ap[r3]), bv)
                bp += bStep; ap += aColumn
            }
        default:
            for _ in 0..<k {
                let bv = bp.loadUnaligned(as: V.self)
                acc0.addProduct(V(repeating: ap[0]), bv)
                if rows > 1 { acc1.addProduct(V(repeating: ap[r1]), bv) }
                if rows > 2 { acc2.addProduct(V(repeating: ap[r2]), bv) }
                if rows > 3 { acc3.addProduct(V(repeating: ap[r3]), bv) }
                if rows > 4 { acc4.addProduct(V(repeating: ap[r4]), bv) }
                bp += bStep; ap += aColumn
            }
        }
        let out = c + i * ldc + j
        finish(acc0, alpha: alpha, beta: beta, into: out)
        if rows > 1 { finish(acc1, alpha: alpha, beta: beta, into: out + ldc) }
        if rows > 2 { finish(acc2, alpha: alpha, beta: beta, into: out + 2 * ldc) }
        if rows > 3 { finish(acc3, alpha: alpha, beta: beta, into: out + 3 * ldc) }
        if rows > 4 { finish(acc4, alpha: alpha, beta: beta, into: out + 4 * ldc) }
        if rows > 5 { finish(acc5, alpha: alpha, beta: beta, into: out + 5 * ldc) }
    }

    /// C[i, j] = the fused dot product of row i of op(A) and row j of B (B stored n × k, op(B) = Bᵀ), in the
    /// lane order and pairwise tree of `FixedOrderReductions`.
    @inlinable
    static func dotForm(m: Int, columns: Range<Int>, k: Int, alpha: T, a: UnsafePointer<T>, aRow: Int, aColumn: Int,
                        b: UnsafePointer<T>, ldb: Int, beta: T, c: UnsafeMutablePointer<T>, ldc: Int) {
        // Rows of op(A) must be contiguous in p; pack them when A is transposed (a copy is exact).
        var packed = [T]()
        var aPtr = a, aStride = aRow
        if aColumn != 1 {
            packed = [T](repeating: 0, count: m * k)
            for i in 0..<m { for p in 0..<k { packed[i * k + p] = a[i * aRow + p * aColumn] } }
            aStride = k
        }
        packed.withUnsafeBufferPointer { pk in
            if aColumn != 1 { aPtr = pk.baseAddress! }
            let blocks = k / 16, stride = MemoryLayout<T>.stride
            // Tiles of 2 rows × 3 columns, then the remaining rows and columns one column at a time below.
            let tiledRows = m / 2 * 2, tiledEnd = columns.lowerBound + columns.count / 3 * 3
            for j in Swift.stride(from: columns.lowerBound, to: tiledEnd, by: 3) {
                for i in Swift.stride(from: 0, to: tiledRows, by: 2) {
                    dotTile(i: i, j: j, k: k, alpha: alpha, a: aPtr, aStride: aStride, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
                }
            }
            for j in columns {
                let tiled = j < tiledEnd
                if tiled && tiledRows == m { continue }
                let bRow = UnsafeRawPointer(b + j * ldb)
                var i = tiled ? tiledRows : 0
                while i < m {
                    let rows = min(4, m - i)
                    var acc0 = V(), acc1 = V(), acc2 = V(), acc3 = V()
                    let r0 = UnsafeRawPointer(aPtr + i * aStride)
                    let rowBytes = aStride * stride
                    for q in 0..<blocks {
                        let offset = q * 16 * stride
                        let bv = bRow.loadUnaligned(fromByteOffset: offset, as: V.self)
                        acc0.addProduct(r0.loadUnaligned(fromByteOffset: offset, as: V.self), bv)
                        if rows > 1 { acc1.addProduct(r0.loadUnaligned(fromByteOffset: rowBytes + offset, as: V.self), bv) }
                        if rows > 2 { acc2.addProduct(r0.loadUnaligned(fromByteOffset: 2 * rowBytes + offset, as: V.self), bv) }
                        if rows > 3 { acc3.addProduct(r0.loadUnaligned(fromByteOffset: 3 * rowBytes + offset, as: V.self), bv) }
                    }
                    let acc = (acc0, acc1, acc2, acc3)
                    for r in 0..<rows {
                        finishDot(r == 0 ? acc.0 : r == 1 ? acc.1 : r == 2 ? acc.2 : acc.3, a: aPtr + (i + r) * aStride,
                                  b: b + j * ldb, k: k, alpha: alpha, beta: beta, into: c + (i + r) * ldc + j)
                    }
                    i += rows
                }
            }
        }
    }

    /// One dot product's end: its 16 lanes combined by the pairwise tree, the k mod 16 tail added in order
    /// (fused), then C = r + β·C.
    @inlinable @inline(__always)
    static func finishDot(_ lanes: V, a: UnsafePointer<T>, b: UnsafePointer<T>, k: Int, alpha: T, beta: T,
                          into c: UnsafeMutablePointer<T>) {
        var total = FixedOrderReductions.combine(lanes)
        for p in (k / 16 * 16)..<k { total.addProduct(a[p], b[p]) }
        finish(total, alpha: alpha, beta: beta, into: c)
    }

    /// Outputs (i, i+1) × (j, j+1, j+2) of `dotForm`, each with the same lanes, tree and tail as there: the
    /// lanes as two 8-lane halves, so that the 6 dot products' 12 accumulators, 3 b vectors and an a vector
    /// fill the 16 AVX2 registers; 5 loads feed 6 multiply-adds (one row at a time, 5 feed 4).
    @inlinable
    static func dotTile(i: Int, j: Int, k: Int, alpha: T, a: UnsafePointer<T>, aStride: Int, b: UnsafePointer<T>, ldb: Int,
                        beta: T, c: UnsafeMutablePointer<T>, ldc: Int) {
        typealias H = SIMD8<T>
        let size = MemoryLayout<T>.stride, blocks = k / 16
        let a0 = UnsafeRawPointer(a + i * aStride), a1 = UnsafeRawPointer(a + (i + 1) * aStride)
        let b0 = UnsafeRawPointer(b + j * ldb), b1 = UnsafeRawPointer(b + (j + 1) * ldb), b2 = UnsafeRawPointer(b + (j + 2) * ldb)
        var l00 = H(), l01 = H(), l02 = H(), l10 = H(), l11 = H(), l12 = H()  // lanes 0–7 of (row, column)
        var h00 = H(), h01 = H(), h02 = H(), h10 = H(), h11 = H(), h12 = H()  // lanes 8–15
        var offset = 0
        for _ in 0..<blocks {
            var u0 = b0.loadUnaligned(fromByteOffset: offset, as: H.self), u1 = b1.loadUnaligned(fromByteOffset: offset, as: H.self)
            var u2 = b2.loadUnaligned(fromByteOffset: offset, as: H.self)
            var x = a0.loadUnaligned(fromByteOffset: offset, as: H.self)
            l00.addProduct(x, u0); l01.addProduct(x, u1); l02.addProduct(x, u2)
            x = a1.loadUnaligned(fromByteOffset: offset, as: H.self)
            l10.addProduct(x, u0); l11.addProduct(x, u1); l12.addProduct(x, u2)
            let upper = offset &+ 8 &* size
            u0 = b0.loadUnaligned(fromByteOffset: upper, as: H.self); u1 = b1.loadUnaligned(fromByteOffset: upper, as: H.self)
            u2 = b2.loadUnaligned(fromByteOffset: upper, as: H.self)
            x = a0.loadUnaligned(fromByteOffset: upper, as: H.self)
            h00.addProduct(x, u0); h01.addProduct(x, u1); h02.addProduct(x, u2)
            x = a1.loadUnaligned(fromByteOffset: upper, as: H.self)
            h10.addProduct(x, u0); h11.addProduct(x, u1); h12.addProduct(x, u2)
            offset &+= 16 &* size
        }
        @inline(__always) func finishOne(_ low: H, _ high: H, _ r: Int, _ col: Int) {
            finishDot(SIMD16(lowHalf: low, highHalf: high), a: a + (i + r) * aStride, b: b + (j + col) * ldb, k: k,
                      alpha: alpha, beta: beta, into: c + (i + r) * ldc + j + col)
        }
        finishOne(l00, h00, 0, 0); finishOne(l01, h01, 0, 1); finishOne(l02, h02, 0, 2)
        finishOne(l10, h10, 1, 0); finishOne(l11, h11, 1, 1); finishOne(l12, h12, 1, 2)
    }
}
