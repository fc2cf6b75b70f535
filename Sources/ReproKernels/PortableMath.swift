/// exp and log from +, −, ×, ÷ and exact power-of-two scaling only, so every IEEE-754 machine gives the
/// same bits (libm's results differ between its code paths and versions). Evaluated in Double; a Float
/// result is the Double result rounded once more.
///
/// Accuracy (measured by the tests' dense sweeps against libm in Double): exp within 1 ULP over
/// [−708, 709], log within 1 ULP over positive normal numbers; as Float, within 1 ULP of correctly rounded.
public enum PortableMath {
    // ln 2 split so that k·ln2Hi is exact for |k| < 2^11 (Cody–Waite reduction).
    @usableFromInline static let ln2Hi = 6.93147180369123816490e-01
    @usableFromInline static let ln2Lo = 1.90821492927058770002e-10
    @usableFromInline static let invLn2 = 1.44269504088896338700e+00

    @inlinable
    public static func exp<T: KernelScalar>(_ x: T) -> T {
        if T.self == Float.self { return unsafeBitCast(Float(exp(Double(unsafeBitCast(x, to: Float.self)))), to: T.self) }
        return T(exp(Double(x)))
    }

    @inlinable
    public static func log<T: KernelScalar>(_ x: T) -> T {
        if T.self == Float.self { return unsafeBitCast(Float(log(Double(unsafeBitCast(x, to: Float.self)))), to: T.self) }
        return T(log(Double(x)))
    }

    /// exp(x) = 2^k · exp(r), x = k·ln2 + r, |r| ≤ ln2/2; exp(r) by its Taylor series to r^13/13!
    /// (truncation < 2^−60 relative on that interval), Horner's rule.
    @inlinable
    public static func exp(_ x: Double) -> Double {
        if x.isNaN { return x }
        if x > 709.782712893384 { return .infinity }
        if x < -745.1332191019412 { return 0 }
        let k = (x * invLn2).rounded(.toNearestOrEven)
        let r = (x - k * ln2Hi) - k * ln2Lo
        var poly = 1.0 / 6227020800.0  // 1/13!
        for d in [479001600.0, 39916800.0, 3628800.0, 362880.0, 40320.0, 5040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0] {
            poly = poly * r + 1.0 / d
        }
        return scale(poly, by: Int(k))
    }

    /// log(x) = e·ln2 + log(1 + f), x = 2^e·(1 + f) with 1 + f in [√½, √2). As in fdlibm's __ieee754_log:
    /// s = f/(2 + f), log(1 + f) = f − hfsq + s·(hfsq + R), hfsq = f²/2, R = Σ_{k≥1} 2s^{2k}/(2k + 1)
    /// (to k = 12; truncation < 2^−60 relative), so the leading term f is exact and only corrections round.
    @inlinable
    public static func log(_ x: Double) -> Double {
        if x.isNaN || x < 0 { return .nan }
        if x == 0 { return -.infinity }
        if x == .infinity { return x }
        var m = x, e = 0
        if m < 0x1p-1022 { m *= 0x1p54; e = -54 }  // subnormals: make the exponent field meaningful
        e += Int(m.exponent)
        m = Double(sign: .plus, exponent: 0, significand: m.significand)  // [1, 2)
        if m > 1.4142135623730951 { m *= 0.5; e += 1 }
        let f = m - 1  // exact (Sterbenz)
        let s = f / (2 + f), z = s * s
        var r = 2.0 / 25.0
        for d in stride(from: 23.0, through: 3.0, by: -2.0) { r = r * z + 2.0 / d }
        r = r * z
        let hfsq = 0.5 * f * f, ef = Double(e)
        return ef * ln2Hi - ((hfsq - (s * (hfsq + r) + ef * ln2Lo)) - f)
    }

    /// y·2^k, exact unless the result is subnormal (then one correctly rounded step, still portable).
    @inlinable
    static func scale(_ y: Double, by k: Int) -> Double {
        if k > 1023 { return y * 0x1p1023 * Double(sign: .plus, exponent: k - 1023, significand: 1) }
        if k < -1022 { return y * 0x1p-1022 * Double(sign: .plus, exponent: k + 1022, significand: 1) }
        return y * Double(sign: .plus, exponent: k, significand: 1)
    }
}
