import ArgumentParser
import ReproData
import ReproTraining
import ReproVerify

// The command line's value types: one parser each (swift-argument-parser's, from the raw values), with
// their choices listed in --help.

extension KernelChoice: ExpressibleByArgument {}
extension RecordProfile: ExpressibleByArgument {}
extension DatasetName: ExpressibleByArgument {}
extension Verifier.RerunFault: ExpressibleByArgument {}
extension BatchNormChecks.Fault: ExpressibleByArgument {}

/// One of the notebook's four experiments: a data set, BatchNorm on or off, and the run's name.
enum Experiment: String, CaseIterable, ExpressibleByArgument {
    case mnist, mnist_bn, svhn, svhn_bn

    var dataset: DatasetName { self == .mnist || self == .mnist_bn ? .mnist : .svhn }
    // The notebook's cell "SVHN without BN" calls main(visualization_name="svhn_bn", dataset="svhn",
    // norm=True), a copy-paste slip: repro's svhn is the run without BatchNorm, as the cell's title says.
    var norm: Bool { self == .mnist_bn || self == .svhn_bn }
}

/// `verify --tolerance`: the one named tolerance.
enum ToleranceName: String, CaseIterable, ExpressibleByArgument {
    case envelope
}

/// `bench --kernels`: one kernel set, or both side by side.
enum BenchKernels: String, CaseIterable, ExpressibleByArgument {
    case portable, blas, both

    var choices: [KernelChoice] {
        switch self {
        case .portable: return [.portable]
        case .blas: return [.blas]
        case .both: return [.portable, .blas]
        }
    }
}

/// `verify --windows`: a count, or every window.
enum WindowCount: ExpressibleByArgument, Equatable {
    case all
    case count(Int)

    init?(argument: String) {
        if argument == "all" { self = .all; return }
        guard let n = Int(argument), n >= 1 else { return nil }
        self = .count(n)
    }

    static var defaultCompletionKind: CompletionKind { .list(["all"]) }
}

extension Shard: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

/// The exit codes every subcommand uses, stated once for `repro --help` and each command's discussion.
enum ExitCodes {
    static let contract = """
        Exit codes (every command): 0 success; 1 the numbers moved (drift, a failing BatchNorm check, a \
        training run whose numbers became unusable); 2 bad input (a missing, damaged or foreign file, data \
        that are not the golden's, a failed write), one line on standard error naming the file, nothing \
        written; 64 a usage error (an unknown option, a value that does not parse or is out of range).
        """
}

/// A range check for `validate()`: a usage error (exit 64) naming the option and its range.
func check<V: Comparable>(_ value: V?, in range: ClosedRange<V>, _ option: String) throws {
    guard let value, !range.contains(value) else { return }
    throw ValidationError("\(option) must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
}
