import ReproStorage
import ReproTraining

/// How two records' numbers are compared. The one home of every tolerance `repro verify` and
/// `repro compare` use.
public enum ComparisonMode: Sendable, Equatable, CustomStringConvertible {
    /// Bit patterns equal (NaN payloads included); integers equal.
    case exact
    /// |a − b| ≤ absolute + relative·|b| (b = golden); NaN equals only NaN, ±Inf only itself.
    case tolerance(absolute: Double, relative: Double)

    public var description: String {
        switch self {
        case .exact: return "exact"
        case let .tolerance(a, r): return "tolerance (atol \(a), rtol \(r))"
        }
    }
}

public enum TolerancePolicy {
    /// Tolerance for an OpenBLAS golden verified on a different environment (CPU kernel, thread count,
    /// OpenBLAS or glibc version). Sized from the drift measured on the 256-step golden configuration across
    /// OPENBLAS_CORETYPE = Prescott (this machine's default), Haswell, SkylakeX, Cooperlake and Zen with 1 and
    /// 2 threads (README, "Drift across environments"): every environment differs from the reference from the
    /// first forward pass on, and by step 256 BN batch means near 0 have moved by up to 0.21 absolute and the
    /// loss by up to 8.8% relative. (atol 0.3, rtol 0.5) passes all ten with worst ratio 0.65 (35% margin);
    /// (0.1, 0.5) fails with 1.71. Such a gate only catches changes that move some value by more than 50%:
    /// training is chaotic, and portable goldens are the real gate.
    public static let crossEnvironmentBLAS = ComparisonMode.tolerance(absolute: 0.3, relative: 0.5)

    /// What a new record stores as its own policy: portable records are compared exactly everywhere;
    /// blas records exactly on the same environment, else with `crossEnvironmentBLAS`.
    public static func store(for config: RunConfig, in writer: HDF5Writer) throws {
        let mode = config.kernels == "portable" ? "exact" : "auto"
        try writer.setAttribute("mode", mode, on: RecordSchema.tolerance)
        if case let .tolerance(a, r) = crossEnvironmentBLAS {
            try writer.setAttribute("absolute", a, on: RecordSchema.tolerance)
            try writer.setAttribute("relative", r, on: RecordSchema.tolerance)
        }
    }

    /// The environment facts that decide whether a blas golden can be compared exactly here.
    public static func fingerprint(kernels: String, environment: [String: String]) -> [String] {
        [kernels] + ["openblas_core", "openblas_config", "openblas_threads", "glibc"].map { environment[$0] ?? "?" }
    }

    /// The mode to apply to `golden` on a run whose environment is `here`, with the reason, unless the
    /// user overrode it.
    public static func resolve(stored: (mode: String, absolute: Double, relative: Double), kernels: String,
                               goldenEnvironment: [String: String], here: [String: String],
                               override: ComparisonMode?) -> (mode: ComparisonMode, reason: String) {
        if let override { return (override, "set on the command line") }
        if stored.mode == "exact" { return (.exact, "\(kernels) kernels: the same bits on every machine") }
        let a = fingerprint(kernels: kernels, environment: goldenEnvironment), b = fingerprint(kernels: kernels, environment: here)
        if a == b { return (.exact, "same environment as the golden (\(a.joined(separator: ", ")))") }
        return (.tolerance(absolute: stored.absolute, relative: stored.relative),
                "environment differs from the golden's (golden: \(a.joined(separator: ", ")); here: \(b.joined(separator: ", ")))")
    }

    /// How weak a tolerance verdict is, in words, for the report.
    public static func weakness(of mode: ComparisonMode) -> String? {
        guard case let .tolerance(a, r) = mode else { return nil }
        return "tolerance verdict: a change that moves every recorded value by less than \(r * 100)% (or \(a) absolute) "
            + "passes unnoticed, and chaotic training can hide small regressions entirely; record goldens with "
            + "--kernels portable for an exact, machine-independent comparison"
    }
}
