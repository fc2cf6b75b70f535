/// Kernel methods are generic over the scalar, but layers call them through `any Kernels`, where Swift runs
/// the unspecialized generic body (about 50× slower for SIMD loops). These helpers re-enter concrete Float or
/// Double code, which the compiler specializes, at the cost of one type comparison per call.
@inlinable
func specialized<T: KernelScalar>(
    _ x: UnsafeBufferPointer<T>,
    float: (UnsafeBufferPointer<Float>) -> Float,
    double: (UnsafeBufferPointer<Double>) -> Double,
    generic: (UnsafeBufferPointer<T>) -> T
) -> T {
    if T.self == Float.self {
        return unsafeBitCast(float(unsafeBitCast(x, to: UnsafeBufferPointer<Float>.self)), to: T.self)
    } else if T.self == Double.self {
        return unsafeBitCast(double(unsafeBitCast(x, to: UnsafeBufferPointer<Double>.self)), to: T.self)
    }
    return generic(x)
}

extension FixedOrderReductions {
    /// `sum` entered through concrete Float/Double code (see `specialized`).
    @inlinable
    public static func sumSpecialized<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) -> T {
        specialized(x, float: { sum($0) }, double: { sum($0) }, generic: { sum($0) })
    }

    @inlinable
    public static func sumOfSquaredDeviationsSpecialized<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, from center: T) -> T {
        specialized(x, float: { sumOfSquaredDeviations($0, from: unsafeBitCast(center, to: Float.self)) },
                    double: { sumOfSquaredDeviations($0, from: unsafeBitCast(center, to: Double.self)) },
                    generic: { sumOfSquaredDeviations($0, from: center) })
    }

    @inlinable
    public static func dotSpecialized<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>) -> T {
        specialized(x, float: { dot($0, unsafeBitCast(y, to: UnsafeBufferPointer<Float>.self)) },
                    double: { dot($0, unsafeBitCast(y, to: UnsafeBufferPointer<Double>.self)) },
                    generic: { dot($0, y) })
    }
}
