import ArgumentParser
import Foundation
import ReproData
import ReproRecording
import ReproTraining
import ReproVerify

/// `repro record`: train with the notebook's main() options and write one HDF5 record.
struct RecordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Train LeNet-5 on MNIST, seeded, and write a complete, replayable HDF5 record.",
        discussion: """
            Defaults are the notebook's "mnist_bn" experiment: 50 epochs, batch 128, lr 0.01, weight decay 1e-6, \
            momentum 0.9, BatchNorm on. Bad input (missing or damaged data, unwritable output, invalid numbers) \
            exits with code 2 and writes nothing.
            """)

    @Option(help: "Mini-batch size (train, validation and test loaders).") var batchSize = 128
    @Option(help: "SGD learning rate.") var learningRate = 0.01
    @Option(help: "SGD weight decay (L2 added to the gradient).") var weightDecay = 1e-6
    @Option(help: "SGD momentum.") var momentum = 0.9
    @Option(help: "Number of epochs.") var epochs = 50
    @Option(help: "Dataset: mnist.") var dataset = "mnist"
    @Flag(inversion: .prefixedNo, help: "Use the notebook's BatchNorm layers (--no-norm: plain LeNet-5).") var norm = true
    @Option(help: "Run name (default: mnist_bn with BN, mnist without).") var name: String?
    @Option(help: "Seed of every random stream (initialization, split, shuffles).") var seed: UInt64 = 0
    @Option(help: "Stop after this many optimizer steps (for short goldens).") var maxSteps: Int?
    @Option(help: "Output file (default: runs/<name>.h5).") var output: String?
    @Option(help: "Write a checkpoint every N steps (default: every epoch); step 0 and the last step always.") var checkpointEvery: Int?
    @Option(help: "Evaluate only the first N samples of train, validation and test (default: all, as the notebook).")
    var evaluationLimit: Int?
    @Option(help: "Threads (recorded). Portable kernels give the same bits for any count; blas bits depend on it.") var threads = 1
    @Option(help: "Kernels: portable (the same bits on every machine and thread count) or blas (OpenBLAS; bits depend on its CPU kernel and threads).")
    var kernels = "portable"
    @Option(help: "Directory with the MNIST IDX files (raw or .gz; also DIR/MNIST/raw/).") var dataDir = "Data/mnist"
    @Flag(help: "Train and print, but write no record (to measure the recording overhead).") var noWrite = false

    /// Turns the options into a run configuration, or says which input is bad. The ranges are the ones a
    /// record may state (`RunConfig.Limits`): whatever record writes, verify can read.
    func validated() throws(BadInput) -> (config: RunConfig, output: String) {
        typealias L = RunConfig.Limits
        func check<V: Comparable>(_ value: V, _ range: ClosedRange<V>, _ option: String) throws(BadInput) {
            guard range.contains(value) else { throw BadInput("\(option) must be in \(range.lowerBound)...\(range.upperBound), got \(value)") }
        }
        try check(batchSize, L.batchSize, "--batch-size")
        try check(epochs, L.epochs, "--epochs")
        guard learningRate.isFinite, learningRate > 0, learningRate <= L.learningRate.upperBound else {
            throw BadInput("--learning-rate must be a positive number up to \(L.learningRate.upperBound), got \(learningRate)")
        }
        try check(weightDecay, L.weightDecay, "--weight-decay")
        guard L.momentum.contains(momentum) else { throw BadInput("--momentum must be in [0, 1), got \(momentum)") }
        if let maxSteps { try check(maxSteps, L.count, "--max-steps") }
        if let checkpointEvery { try check(checkpointEvery, L.count, "--checkpoint-every") }
        if let evaluationLimit { try check(evaluationLimit, L.count, "--evaluation-limit") }
        try check(threads, L.threads, "--threads")
        guard let datasetName = DatasetName(rawValue: dataset) else {
            throw BadInput(dataset == "svhn" ? "--dataset svhn is not supported yet (only mnist)"
                           : "unknown dataset '\(dataset)' (available: \(DatasetName.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let kernelChoice = KernelChoice(rawValue: kernels) else {
            throw BadInput("unknown kernels '\(kernels)' (available: \(KernelChoice.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let runName = name ?? (norm ? "mnist_bn" : "mnist")
        guard L.isValidName(runName) else { throw BadInput("--name must be 1 to 64 letters, digits, '.', '_' or '-' (not starting with '.'), got '\(runName)'") }
        var config = RunConfig()
        config.batchSize = batchSize
        config.learningRate = learningRate
        config.weightDecay = weightDecay
        config.momentum = momentum
        config.epochs = epochs
        config.dataset = datasetName
        config.norm = norm
        config.name = runName
        config.seed = seed
        config.maxSteps = maxSteps
        config.checkpointEvery = checkpointEvery
        config.evaluationLimit = evaluationLimit
        config.threads = threads
        config.kernels = kernelChoice
        return (config, output ?? "runs/\(config.name).h5")
    }

    func run() throws {
        let (config, outputPath): (RunConfig, String)
        do { (config, outputPath) = try validated() } catch { try failWithBadInput(error.description) }
        let data: MNIST
        do { data = try MNIST.load(directory: dataDir) } catch { try failWithBadInput(error.description) }

        let reporter = ConsoleReporter()
        let start = DispatchTime.now()
        do {
            if noWrite {
                try Trainer(config: config, data: data).run(observers: [reporter])
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
