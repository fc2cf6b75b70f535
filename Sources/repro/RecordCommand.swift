import ArgumentParser
import Foundation
import ReproData
import ReproNN
import ReproStorage
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

    /// Turns the options into a run configuration, or says which input is bad.
    func validated() throws(BadInput) -> RunConfig {
        guard batchSize >= 2 else { throw BadInput("--batch-size must be at least 2 (BatchNorm needs two samples), got \(batchSize)") }
        guard epochs >= 1 else { throw BadInput("--epochs must be positive, got \(epochs)") }
        guard learningRate.isFinite, learningRate > 0 else { throw BadInput("--learning-rate must be a positive number, got \(learningRate)") }
        guard weightDecay.isFinite, weightDecay >= 0 else { throw BadInput("--weight-decay must be non-negative, got \(weightDecay)") }
        guard momentum.isFinite, momentum >= 0, momentum < 1 else { throw BadInput("--momentum must be in [0, 1), got \(momentum)") }
        guard maxSteps.map({ $0 >= 1 }) ?? true else { throw BadInput("--max-steps must be positive") }
        guard checkpointEvery.map({ $0 >= 1 }) ?? true else { throw BadInput("--checkpoint-every must be positive") }
        guard evaluationLimit.map({ $0 >= 1 }) ?? true else { throw BadInput("--evaluation-limit must be positive") }
        guard threads >= 1, threads <= 256 else { throw BadInput("--threads must be between 1 and 256, got \(threads)") }
        guard dataset == "mnist" else {
            throw BadInput(dataset == "svhn" ? "--dataset svhn is not supported yet (only mnist)" : "unknown dataset '\(dataset)' (available: mnist)")
        }
        guard Trainer.kernelNames.contains(kernels) else {
            throw BadInput("unknown kernels '\(kernels)' (available: \(Trainer.kernelNames.joined(separator: ", ")))")
        }
        var config = RunConfig()
        config.batchSize = batchSize
        config.learningRate = learningRate
        config.weightDecay = weightDecay
        config.momentum = momentum
        config.epochs = epochs
        config.dataset = dataset
        config.norm = norm
        config.name = name ?? (norm ? "mnist_bn" : "mnist")
        config.seed = seed
        config.maxSteps = maxSteps
        config.checkpointEvery = checkpointEvery
        config.evaluationLimit = evaluationLimit
        config.threads = threads
        config.kernels = kernels
        config.dataDirectory = dataDir
        config.output = output ?? "runs/\(config.name).h5"
        return config
    }

    func run() throws {
        let config: RunConfig
        do { config = try validated() } catch { try failWithBadInput(error.description) }
        let data: MNIST
        do { data = try MNIST.load(directory: config.dataDirectory) } catch { try failWithBadInput(error.description) }

        let reporter = ConsoleReporter()
        let start = DispatchTime.now()
        do {
            if noWrite {
                try Trainer(config: config, data: data).run(observers: [reporter])
            } else {
                if output == nil { try? FileManager.default.createDirectory(atPath: "runs", withIntermediateDirectories: true) }
                // Wall-clock time would make two identical runs differ; SOURCE_DATE_EPOCH (the reproducible-builds
                // convention) stamps one deliberately.
                let created = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"] ?? ""
                try Verifier.record(config: config, data: data, to: config.output, reproVersion: ReproVersion.string,
                                    created: created, observers: [reporter],
                                    temporaryFileCreated: Interrupts.removeOnInterrupt)
            }
        } catch {
            try failWithBadInput("\(error)")
        }
        let seconds = ConsoleReporter.seconds(since: start)
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let perEpoch = reporter.epochSeconds.isEmpty ? 0 : reporter.epochSeconds.reduce(0, +) / Double(reporter.epochSeconds.count)
        print(String(format: "%@ in %.1f s (%.1f s per epoch), peak RSS %d MB",
                     noWrite ? "trained without recording" : "wrote \(config.output)", seconds, perEpoch, usage.ru_maxrss / 1024))
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
