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

/// Reinterprets a pointer after a `T.self == Float.self`-style check (or for a bitwise copy of same-size
/// types): the one pointer cast of the engine, used wherever generic code re-enters concrete Float code.
@inlinable
public func cast<T, U>(_ p: UnsafePointer<T>) -> UnsafePointer<U> { UnsafeRawPointer(p).assumingMemoryBound(to: U.self) }
@inlinable
public func cast<T, U>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<U> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: U.self)
}

/// [T](repeating: 0, count:) by memset: through `any Kernels` the generic initializer runs unspecialized,
/// one value-witness call per element. All-zero bits are +0 for Float and Double.
@inlinable
func zeroedArray<T: KernelScalar>(count: Int) -> [T] {
    [T](unsafeUninitializedCapacity: count) { buffer, initialized in
        if count > 0 { UnsafeMutableRawPointer(buffer.baseAddress!).initializeMemory(as: UInt8.self, repeating: 0, count: count * MemoryLayout<T>.stride) }
        initialized = count
    }
}
