/// Every numeric tolerance the engine's checks use, with where its size comes from.
public enum Tolerances {
    /// Central-difference step for Float64 gradient checks. The truncation error is O(eps²·f‴) ≈ 1e-12 and
    /// the rounding error ≈ 1e-16·|f|/eps ≈ 1e-10·|f|; 1e-6 balances the two (torch.autograd.gradcheck's default).
    public static let finiteDifferenceStep = 1e-6
    /// |analytic − numeric| ≤ atol + rtol·|numeric|: torch.autograd.gradcheck's defaults. With the error of the
    /// central difference at ~1e-10·|f| (above), a correct gradient passes with orders of magnitude to spare,
    /// while a wrong term (a missing factor, a wrong divisor m vs m − 1) is off by ≥ 1/m ≈ 1e-3 relative.
    public static let gradientAbsolute = 1e-5
    public static let gradientRelative = 1e-3
}
