import ReproStorage
import ReproTraining

/// How two records' numbers are compared. The one home of every tolerance `repro verify` and
/// `repro compare` use.
public enum ComparisonMode: Sendable, Equatable, CustomStringConvertible {
    /// Bit patterns equal (NaN payloads included); integers equal.
    case exact
    /// |a − b| ≤ absolute + relative·|b| (b = golden); NaN equals only NaN, ±Inf only itself.
    case tolerance(absolute: Double, relative: Double)
    /// |a − b| ≤ factor × the value's round-off envelope (`Envelope`), for a golden that has one; integers,
    /// and values no window covers, bit for bit.
    case envelope(factor: Double)

    public var description: String {
        switch self {
        case .exact: return "exact"
        case let .tolerance(a, r): return "tolerance (atol \(a), rtol \(r))"
        case let .envelope(f): return "round-off envelope (× \(f.shortText))"
        }
    }

    public var isEnvelope: Bool { if case .envelope = self { return true } else { return false } }
}

extension Double {
    /// 8 for 8.0, 0.5 for 0.5.
    public var shortText: String { self == rounded() && abs(self) < 1e15 ? String(Int(self)) : String(self) }
}

public enum TolerancePolicy {
    /// Tolerance for an OpenBLAS golden verified on a different environment (CPU kernel, thread count,
    /// OpenBLAS or glibc version). Sized from the drift measured on the 256-step golden configuration across
    /// OPENBLAS_CORETYPE = Prescott (this machine's default), Haswell, SkylakeX, Cooperlake and Zen with 1 and
    /// 2 threads (docs/determinism.md, "Drift across environments"): every environment differs from the
    /// reference from the first forward pass on, and by step 256 BN batch means near 0 have moved by up to
    /// 0.3 absolute and the loss by up to 15% relative. Against (atol 0.3, rtol 0.5) the worst ratios are
    /// 0.51–0.97, and Cooperlake on 1 thread fails at 1.16 (bn2.batch_mean[0], step 169: 0.014 vs 0.329).
    /// Not widened for it: such a gate only catches changes that move some value by more than 50% already;
    /// training is chaotic, and portable goldens are the real gate.
    public static let crossEnvironmentBLAS = ComparisonMode.tolerance(absolute: 0.3, relative: 0.5)

    /// Whether a recorded value is judged under `mode`. Exactly compared, everything is. Under a tolerance,
    /// everything but the probes' checksums (`/steps/probes/checksum`, `/evaluation/before/probe_checksum`):
    /// a checksum of bits has no distance — any difference in any value changes it arbitrarily, and
    /// environments that legitimately differ change bits from the first BLAS call on. The largest magnitude
    /// (a value of the tensor itself) is judged like every other value; the checksum is still shown.
    public static func judges(_ path: String, under mode: ComparisonMode) -> Bool {
        mode == .exact || hasDistance(path)
    }

    /// Whether a difference in this dataset has a size: not for the probes' checksums nor for the SHA-256
    /// digests of the state at window ends between checkpoints (any change of any bit moves them anywhere).
    public static func hasDistance(_ path: String) -> Bool {
        !RecordSchema.probeChecksumDatasets.contains(path) && !path.hasPrefix(RecordSchema.stateDigests + "/")
    }

    /// The safety factor of the round-off envelope: a value passes within F times its envelope. See
    /// docs/verifying.md, "Round-off envelopes", for the false-alarm rate it was chosen from.
    public static let envelopeSafetyFactor = 8.0

    /// The environment facts that decide whether a blas golden can be compared exactly here.
    public static func fingerprint(kernels: KernelChoice, environment: EnvironmentFacts) -> [String] {
        [kernels.rawValue] + ["openblas_core", "openblas_config", "openblas_threads", "glibc"].map { environment[$0] ?? "?" }
    }

    /// The mode to apply to a golden on a run whose environment is `here`, with the reason, unless the
    /// user overrode it.
    /// `hasEnvelope`: the golden carries one. `otherKernels`: the re-run uses the other kernel set than the
    /// golden's (`verify --kernels`).
    public static func resolve(stored: StoredPolicy, kernels: KernelChoice, goldenEnvironment: EnvironmentFacts,
                               here: EnvironmentFacts, override: ComparisonMode?, hasEnvelope: Bool = false,
                               otherKernels: KernelChoice? = nil) -> (mode: ComparisonMode, reason: String) {
        let envelope = ComparisonMode.envelope(factor: envelopeSafetyFactor)
        if let override {
            if override.isEnvelope && !hasEnvelope {
                return (.exact, "--tolerance envelope was asked for, but the golden has no round-off envelope (re-record it with "
                        + "repro record --like): compared bit for bit")
            }
            return (override, "set on the command line")
        }
        if let otherKernels, otherKernels != kernels {
            let why = "re-run with \(otherKernels) kernels, the golden has \(kernels)"
            if hasEnvelope { return (envelope, why + ": judged by the golden's round-off envelope") }
            return (.tolerance(absolute: stored.absolute, relative: stored.relative), why + "; the golden has no round-off envelope")
        }
        if stored.mode == .exact { return (.exact, "\(kernels) kernels: the same bits on every machine") }
        let a = fingerprint(kernels: kernels, environment: goldenEnvironment), b = fingerprint(kernels: kernels, environment: here)
        if a == b { return (.exact, "same environment as the golden (\(a.joined(separator: ", ")))") }
        let why = "environment differs from the golden's (golden: \(a.joined(separator: ", ")); here: \(b.joined(separator: ", ")))"
        if hasEnvelope { return (envelope, why) }
        return (.tolerance(absolute: stored.absolute, relative: stored.relative), why + "; the golden has no round-off envelope")
    }

    /// How weak a tolerance verdict is, in words, for the report.
    public static func weakness(of mode: ComparisonMode) -> String? {
        guard case let .tolerance(a, r) = mode else { return nil }
        return "tolerance verdict: a change that moves every recorded value by less than \(r * 100)% (or \(a) absolute) "
            + "passes unnoticed, and chaotic training can hide small regressions entirely; record goldens with "
            + "--kernels portable for an exact, machine-independent comparison"
    }
}

/// `/tolerance`: the policy a record asks verify to apply to it. Portable records say `exact` (the same bits
/// everywhere); blas records say `auto` (exact on the same environment, else the stored tolerance).
public struct StoredPolicy: Equatable, Sendable {
    public enum Mode: String, Sendable { case exact, auto }
    public var mode: Mode
    public var absolute: Double
    public var relative: Double

    /// What a new record with `kernels` stores.
    public init(for kernels: KernelChoice) {
        mode = kernels == .portable ? .exact : .auto
        guard case let .tolerance(a, r) = TolerancePolicy.crossEnvironmentBLAS else { preconditionFailure("a tolerance") }
        absolute = a
        relative = r
    }

    func write(to w: HDF5Writer) throws {
        try w.setAttribute("mode", mode.rawValue, on: RecordSchema.tolerance)
        try w.setAttribute("absolute", absolute, on: RecordSchema.tolerance)
        try w.setAttribute("relative", relative, on: RecordSchema.tolerance)
    }

    /// The mode must be the one the record's kernels imply; the tolerance any finite non-negative pair
    /// (a record keeps the policy it was made with).
    init(parsing attributes: [(name: String, value: AttributeValue)], kernels: KernelChoice) throws(SchemaViolation) {
        var p = AttributeParser(object: RecordSchema.tolerance, attributes: attributes)
        mode = Mode(rawValue: try p.string("mode", oneOf: [StoredPolicy(for: kernels).mode.rawValue]))!
        absolute = try p.float64("absolute", in: 0...Double.greatestFiniteMagnitude)
        relative = try p.float64("relative", in: 0...Double.greatestFiniteMagnitude)
        try p.finish()
    }
}
