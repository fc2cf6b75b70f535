import RealModule

/// The scalar types the engine runs in: Float for training, Double for gradient checks.
/// The same generic code serves both, so a Float64 check exercises the code that trains.
/// (Codable because SIMDScalar's vectors are: Float and Double are both.)
public protocol KernelScalar: BinaryFloatingPoint, Real, SIMDScalar, Sendable, Codable
where Self.RawSignificand: FixedWidthInteger {}

extension Float: KernelScalar {}
extension Double: KernelScalar {}
