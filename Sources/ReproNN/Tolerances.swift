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

    /// The BatchNorm backward check's bound is `derivedBoundFactor` × its own error estimate of the central
    /// difference (ε²·|f‴|/6 + u·F/ε, BatchNormChecks.backwardCheck). The estimate takes typical rounding (u·F
    /// for a compensated sum), not the worst case over F's terms; on the real layer the observed error is 7–15×
    /// below the estimate on the model's shapes, so 10 leaves that margin again while a 1e-6 relative error in
    /// ∂x or ∂γ is still 100× or more above the bound there.
    public static let derivedBoundFactor = 10.0
    /// Units of u·|D| allowed for the analytic gradient's own Float64 rounding (a handful of operations per
    /// element plus the channel sums' pairwise lanes; 64 is generous and still 1e-14 relative).
    public static let analyticRoundingUnits = 64.0
    /// The wide step (× the input scale, or absolute for γ and β) of the five-point third difference that
    /// estimates |f‴|: wide enough that rounding (u·F/h³) stays far below the third derivative it measures.
    public static let thirdDifferenceStep = 0.05
}
