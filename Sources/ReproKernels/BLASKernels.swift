import CBLAS
import RealModule

/// GEMM from OpenBLAS (cblas_sgemm / cblas_dgemm); reductions in the shared fixed order (the protocol's
/// default); exp/log from libm.
///
/// Bits are stable run after run for a fixed OpenBLAS core type (OPENBLAS_CORETYPE) and thread count
/// (`OpenBLAS.setThreadCount`), but change between them, and libm's expf/logf differ between its FMA and SSE2
/// code paths: a record stores all three facts (its `/environment`: OpenBLAS's core name, configuration and thread count).
public struct BLASKernels: Kernels {
    /// Threads of the layers' own parallel work; OpenBLAS's own count is `OpenBLAS.setThreadCount`.
    public let threads: Int
    public init(threads: Int = 1) { self.threads = max(1, threads) }

    @inlinable
    public func gemm<T: KernelScalar>(
        _ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
        alpha: T, a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
        beta: T, c: UnsafeMutablePointer<T>, ldc: Int
    ) {
        let ta = transA == .none ? CblasNoTrans : CblasTrans
        let tb = transB == .none ? CblasNoTrans : CblasTrans
        if T.self == Float.self {
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k),
                        Float(alpha), UnsafeRawPointer(a).assumingMemoryBound(to: Float.self), Int32(lda),
                        UnsafeRawPointer(b).assumingMemoryBound(to: Float.self), Int32(ldb),
                        Float(beta), UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), Int32(ldc))
        } else if T.self == Double.self {
            cblas_dgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k),
                        Double(alpha), UnsafeRawPointer(a).assumingMemoryBound(to: Double.self), Int32(lda),
                        UnsafeRawPointer(b).assumingMemoryBound(to: Double.self), Int32(ldb),
                        Double(beta), UnsafeMutableRawPointer(c).assumingMemoryBound(to: Double.self), Int32(ldc))
        } else {
            preconditionFailure("BLASKernels supports Float and Double only")
        }
    }

    @inlinable public func exp<T: KernelScalar>(_ x: T) -> T { T.exp(x) }
    @inlinable public func log<T: KernelScalar>(_ x: T) -> T { T.log(x) }
}
