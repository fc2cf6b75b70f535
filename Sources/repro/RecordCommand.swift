import ArgumentParser
import Foundation
import ReproData
import ReproRecording
import ReproTensorBoard
import ReproTraining
import ReproVerify

/// `repro record`: train with the notebook's main() options and write one HDF5 record.
struct RecordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Train LeNet-5 on MNIST or SVHN, seeded, and write a complete, replayable HDF5 record.",
        discussion: """
            Defaults are the notebook's "mnist_bn" experiment: 50 epochs, batch 128, lr 0.01, weight decay 1e-6, \
            momentum 0.9, BatchNorm on. Bad input (missing or damaged data, unwritable output, invalid numbers) \
            exits with code 2 and writes nothing.
            """)

    // Every option is optional: a fresh run fills the gaps with the notebook's defaults, a resumed one with
    // the source record's configuration.
    @Option(help: "Mini-batch size (train, validation and test loaders; default 128).") var batchSize: Int?
    @Option(help: "SGD learning rate (default 0.01).") var learningRate: Double?
    @Option(help: "SGD weight decay, L2 added to the gradient (default 1e-6).") var weightDecay: Double?
    @Option(help: "SGD momentum (default 0.9).") var momentum: Double?
    @Option(help: "Number of epochs (default 50).") var epochs: Int?
    @Option(help: "Dataset: mnist (default) or svhn.") var dataset: String?
    @Flag(inversion: .prefixedNo, help: "Use the notebook's BatchNorm layers (default; --no-norm: plain LeNet-5).") var norm: Bool?
    @Option(help: "Run name (default: the dataset, with _bn for BatchNorm: mnist_bn, mnist, svhn_bn, svhn).") var name: String?
    @Option(help: "Seed of every random stream: initialization, split, shuffles (default 0).") var seed: UInt64?
    @Option(help: "Stop after this many optimizer steps (for short goldens).") var maxSteps: Int?
    @Option(help: "Output file (default: runs/<name>.h5).") var output: String?
    @Option(help: "Write a checkpoint every N steps (default: every epoch); step 0 and the last step always.") var checkpointEvery: Int?
    @Option(help: "Evaluate only the first N samples of train, validation and test (default: all, as the notebook).")
    var evaluationLimit: Int?
    @Option(help: "Threads (default 1). Portable kernels give the same bits for any count; blas bits depend on it (recorded).") var threads: Int?
    @Option(help: "Kernels: portable (default: the same bits on every machine and thread count) or blas (OpenBLAS; bits depend on its CPU kernel and threads).")
    var kernels: String?
    @Option(help: "What the record keeps: complete (default: every series at every step) or golden (small enough to commit for long runs: see docs/SCHEMA.md).")
    var profile: String?
    @Option(help: "Steps of each verification window, which starts at a checkpoint (default: up to the next checkpoint).")
    var windowSteps: Int?
    @Option(help: "Directory with the data: MNIST's IDX files (raw or .gz; also DIR/MNIST/raw/) or SVHN's train_32x32.mat and test_32x32.mat (also DIR/SVHN/). Default: Data/mnist or Data/svhn.")
    var dataDir: String?
    @Option(help: "One of the notebook's four experiments: mnist, mnist_bn, svhn or svhn_bn (sets --dataset, --norm/--no-norm and --name).")
    var experiment: String?
    @Flag(inversion: .prefixedNo, help: "Also write TensorBoard event files to runs/<name>/ (default on; the same files 'repro tensorboard' makes from the record).")
    var tensorboard = true
    @Option(help: "Folder of the TensorBoard runs (default: runs, as the notebook's SummaryWriter).") var logdir = "runs"
    @Flag(help: "Train and print, but write no record (to measure the recording overhead).") var noWrite = false
    @Option(help: "Continue the run in this record from its last checkpoint (or --from-step) and write the whole run to --output; only --epochs, --max-steps and --threads may change.")
    var resume: String?
    @Option(help: "With --resume: the checkpoint step to continue from (default: the record's last one within the run).")
    var fromStep: Int?

    /// Turns the options into a run configuration on top of `base`, or says which input is bad. The ranges
    /// are the ones a record may state (`RunConfig.Limits`): whatever record writes, verify can read.
    func validated(base: RunConfig? = nil) throws(BadInput) -> (config: RunConfig, output: String) {
        typealias L = RunConfig.Limits
        func check<V: Comparable>(_ value: V?, _ range: ClosedRange<V>, _ option: String) throws(BadInput) {
            guard let value else { return }
            guard range.contains(value) else { throw BadInput("\(option) must be in \(range.lowerBound)...\(range.upperBound), got \(value)") }
        }
        try check(batchSize, L.batchSize, "--batch-size")
        try check(epochs, L.epochs, "--epochs")
        if let learningRate, !(learningRate.isFinite && learningRate > 0 && learningRate <= L.learningRate.upperBound) {
            throw BadInput("--learning-rate must be a positive number up to \(L.learningRate.upperBound), got \(learningRate)")
        }
        try check(weightDecay, L.weightDecay, "--weight-decay")
        if let momentum, !L.momentum.contains(momentum) { throw BadInput("--momentum must be in [0, 1), got \(momentum)") }
        try check(maxSteps, L.count, "--max-steps")
        try check(checkpointEvery, L.count, "--checkpoint-every")
        try check(evaluationLimit, L.count, "--evaluation-limit")
        try check(windowSteps, L.count, "--window-steps")
        try check(threads, L.threads, "--threads")
        if fromStep != nil && resume == nil { throw BadInput("--from-step goes with --resume") }
        var config = base ?? RunConfig()
        if let experiment {
            // The notebook's four runs. (Its cell "SVHN without BN" calls main(visualization_name="svhn_bn",
            // dataset="svhn", norm=True), a copy-paste slip: repro's svhn is the run without BatchNorm.)
            guard let (dataset, norm): (DatasetName, Bool) = ["mnist": (.mnist, false), "mnist_bn": (.mnist, true),
                                                              "svhn": (.svhn, false), "svhn_bn": (.svhn, true)][experiment] else {
                throw BadInput("unknown experiment '\(experiment)' (available: mnist, mnist_bn, svhn, svhn_bn)")
            }
            if self.dataset != nil || self.norm != nil { throw BadInput("--experiment sets --dataset and --norm; give one or the other") }
            (config.dataset, config.norm, config.name) = (dataset, norm, experiment)
        }
        if let dataset {
            guard let name = DatasetName(rawValue: dataset) else {
                throw BadInput("unknown dataset '\(dataset)' (available: \(DatasetName.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            config.dataset = name
        }
        if let kernels {
            guard let choice = KernelChoice(rawValue: kernels) else {
                throw BadInput("unknown kernels '\(kernels)' (available: \(KernelChoice.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            config.kernels = choice
        }
        if let profile {
            guard let choice = RecordProfile(rawValue: profile) else {
                throw BadInput("unknown profile '\(profile)' (available: \(RecordProfile.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            config.profile = choice
        }
        if let norm { config.norm = norm }
        if base == nil && experiment == nil { config.name = config.dataset.rawValue + (config.norm ? "_bn" : "") }
        if let name { config.name = name }
        guard L.isValidName(config.name) else {
            throw BadInput("--name must be 1 to 64 letters, digits, '.', '_' or '-' (not starting with '.'), got '\(config.name)'")
        }
        if let batchSize { config.batchSize = batchSize }
        if let learningRate { config.learningRate = learningRate }
        if let weightDecay { config.weightDecay = weightDecay }
        if let momentum { config.momentum = momentum }
        if let epochs { config.epochs = epochs }
        if let seed { config.seed = seed }
        if let maxSteps { config.maxSteps = maxSteps }
        if let checkpointEvery { config.checkpointEvery = checkpointEvery }
        if let evaluationLimit { config.evaluationLimit = evaluationLimit }
        if let windowSteps { config.windowSteps = windowSteps }
        if let threads { config.threads = threads }
        return (config, output ?? "runs/\(config.name).h5")
    }

    func run() throws {
        var source: Record?
        if let resume {
            do { source = try Record(path: resume) } catch { try failWithBadInput(error.description) }
        }
        let (config, outputPath): (RunConfig, String)
        do { (config, outputPath) = try validated(base: source?.config) } catch { try failWithBadInput(error.description) }
        let data: ImageDataset
        do { data = try ImageDataset.load(config.dataset, directory: dataDir ?? config.dataset.defaultDirectory) }
        catch { try failWithBadInput(error.description) }
        if let source, config.kernels == .blas,
           TolerancePolicy.fingerprint(kernels: .blas, environment: source.environment)
            != TolerancePolicy.fingerprint(kernels: .blas, environment: EnvironmentFacts(current: .blas)) || config.threads != source.config.threads {
            FileHandle.standardError.write(Data("warning: resuming a blas record on another environment (OpenBLAS kernel, threads or glibc): the bits will differ from the uninterrupted run's\n".utf8))
        }

        let reporter = ConsoleReporter()
        let start = DispatchTime.now()
        do {
            if noWrite {
                let start = try source.map { try RecordReplay($0).resumePoint(at: fromStep ?? $0.plan.checkpointSteps.last!) }
                try Trainer(config: config, data: data).run(observers: [reporter], from: start)
            } else if let source {
                let created = String((ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"] ?? "").prefix(64))
                try Recording.resume(source, config: config, from: fromStep, data: data, to: outputPath,
                                     header: RecordHeader(created: created, reproVersion: ReproVersion.string),
                                     checks: try BatchNormChecks.run(), observers: [reporter],
                                     temporaryFileCreated: Interrupts.removeOnInterrupt)
            } else {
                if output == nil { try? FileManager.default.createDirectory(atPath: "runs", withIntermediateDirectories: true) }
                // Wall-clock time would make two identical runs differ; SOURCE_DATE_EPOCH (the reproducible-builds
                // convention) stamps one deliberately.
                let created = String((ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"] ?? "").prefix(64))
                try Recording.record(config: config, data: data, to: outputPath,
                                     header: RecordHeader(created: created, reproVersion: ReproVersion.string),
                                     checks: try BatchNormChecks.run(), observers: [reporter],
                                     temporaryFileCreated: Interrupts.removeOnInterrupt)
            }
            if tensorboard && !noWrite {
                let events = try TensorBoardExport.write(try Record(path: outputPath), logdir: logdir)
                print("wrote \(events)")
            }
        } catch let failure as TrainingError {
            // Not bad input: the numbers themselves became unusable (exit 1, as drift would be).
            FileHandle.standardError.write(Data("error: training failed, no record written: \(failure)\n".utf8))
            throw ExitCode(1)
        } catch {
            try failWithBadInput("\(error)")
        }
        let seconds = ConsoleReporter.seconds(since: start)
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let perEpoch = reporter.epochSeconds.isEmpty ? 0 : reporter.epochSeconds.reduce(0, +) / Double(reporter.epochSeconds.count)
        print(String(format: "%@ in %.1f s (%.1f s per epoch), peak RSS %d MB",
                     noWrite ? "trained without recording" : "wrote \(outputPath)", seconds, perEpoch, usage.ru_maxrss / 1024))
    }

}

/// Invalid option values, reported with exit code 2 like every other bad input.
struct BadInput: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Ctrl-C and kill (SIGTERM) remove the temporary record before exiting, so the target path never holds a
/// partial file (it is only ever written by rename). kill -9 cannot be caught: it leaves the hidden
/// temporary file, never the target.
enum Interrupts {
    nonisolated(unsafe) static var path: UnsafeMutablePointer<CChar>?

    static func removeOnInterrupt(_ temporaryPath: String) {
        path = strdup(temporaryPath)
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { s in
                if let p = Interrupts.path { unlink(p) }
                _exit(128 + s)
            }
        }
    }
}
