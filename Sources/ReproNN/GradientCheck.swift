import ReproKernels

/// Central finite differences in Float64 and the gradcheck comparison, shared by the tests and
/// `repro check-bn`.
public struct GradientComparison: Sendable {
    public var compared: Int
    public var failures: Int
    /// Largest |analytic − numeric| and where it was.
    public var worstAbsolute: Double
    public var worstIndex: Int
    /// Largest ratio |analytic − numeric| / (atol + rtol·|numeric|): ≤ 1 passes; its inverse is the margin.
    public var worstRatio: Double
    public var passed: Bool { failures == 0 && compared > 0 }
}

public enum GradientCheck {
    /// (f(x + eps·e_i) − f(x − eps·e_i)) / 2eps for each coordinate i in `indices`; `x` is restored.
    public static func numericGradient(of f: ([Double]) throws -> Double, at x: inout [Double], indices: [Int],
                                       step eps: Double = Tolerances.finiteDifferenceStep) rethrows -> [Double] {
        var out = [Double]()
        out.reserveCapacity(indices.count)
        for i in indices {
            let saved = x[i]
            x[i] = saved + eps
            let plus = try f(x)
            x[i] = saved - eps
            let minus = try f(x)
            x[i] = saved
            out.append((plus - minus) / (2 * eps))
        }
        return out
    }

    /// Central differences of `loss` with respect to entries `indices` of a tensor's values (restored after).
    public static func numericGradient<T: KernelScalar>(of loss: () throws -> Double, wrt tensor: NamedTensor<T>, indices: [Int],
                                                         step eps: Double = Tolerances.finiteDifferenceStep) rethrows -> [Double] {
        try indices.map { i in
            let saved = tensor.value[i]
            tensor.value[i] = saved + T(eps)
            let plus = try loss()
            tensor.value[i] = saved - T(eps)
            let minus = try loss()
            tensor.value[i] = saved
            return (plus - minus) / (2 * eps)
        }
    }

    public static func compare(analytic: [Double], numeric: [Double],
                               absolute: Double = Tolerances.gradientAbsolute,
                               relative: Double = Tolerances.gradientRelative) -> GradientComparison {
        precondition(analytic.count == numeric.count)
        var result = GradientComparison(compared: analytic.count, failures: 0, worstAbsolute: 0, worstIndex: -1, worstRatio: 0)
        for i in analytic.indices {
            let diff = abs(analytic[i] - numeric[i])
            let ratio = diff / (absolute + relative * abs(numeric[i]))
            if !(ratio <= 1) { result.failures += 1 }  // NaN fails
            if !(ratio <= result.worstRatio) { result.worstRatio = ratio; result.worstIndex = i; result.worstAbsolute = diff }
        }
        return result
    }
}
