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
            momentum 0.9, BatchNorm on. --like GOLDEN.h5 re-records a golden with its own configuration; \
            --resume RUN.h5 continues a run from a checkpoint.

            """ + ExitCodes.contract)

    // Every option is optional: a fresh run fills the gaps with the notebook's defaults, a resumed one with
    // the source record's configuration.
    @Option(help: "Mini-batch size (train, validation and test loaders; default 128).") var batchSize: Int?
    @Option(help: "SGD learning rate (default 0.01).") var learningRate: Double?
    @Option(help: "SGD weight decay, L2 added to the gradient (default 1e-6).") var weightDecay: Double?
    @Option(help: "SGD momentum (default 0.9).") var momentum: Double?
    @Option(help: "Number of epochs (default 50).") var epochs: Int?
    @Option(help: "Dataset (default mnist).") var dataset: DatasetName?
    @Flag(inversion: .prefixedNo, help: "Use the notebook's BatchNorm layers (default; --no-norm: plain LeNet-5).") var norm: Bool?
    @Option(help: "Run name (default: the dataset, with _bn for BatchNorm: mnist_bn, mnist, svhn_bn, svhn).") var name: String?
    @Option(help: "Seed of every random stream: initialization, split, shuffles (default 0).") var seed: UInt64?
    @Option(help: "Stop after this many optimizer steps (for short goldens).") var maxSteps: Int?
    @Option(help: "Output file (default: runs/<name>.h5; with --like, the golden itself).") var output: String?
    @Option(help: "Write a checkpoint every N steps (default: every epoch); step 0 and the last step always.") var checkpointEvery: Int?
    @Option(help: "Evaluate only the first N samples of train, validation and test (default: all, as the notebook).")
    var evaluationLimit: Int?
    @Option(help: "Threads (default 1). Portable kernels give the same bits for any count; blas bits depend on it (recorded).") var threads: Int?
    @Option(help: "Kernels (default portable: the same bits on every machine and thread count; blas: OpenBLAS, bits depend on its CPU kernel and threads).")
    var kernels: KernelChoice?
    @Option(help: "What the record keeps (default complete: every series at every step; golden: small enough to commit for long runs, see docs/SCHEMA.md).")
    var profile: RecordProfile?
    @Option(help: "Steps of each verification window, which starts at a checkpoint (default: up to the next checkpoint).")
    var windowSteps: Int?
    @Option(help: "Directory with the data: MNIST's IDX files (raw or .gz; also DIR/MNIST/raw/) or SVHN's train_32x32.mat and test_32x32.mat (also DIR/SVHN/). Default: Data/mnist or Data/svhn.")
    var dataDir: String?
    @Option(help: "One of the notebook's four experiments (sets --dataset, --norm/--no-norm and --name).")
    var experiment: Experiment?
    @Flag(inversion: .prefixedNo, help: "Also write TensorBoard event files (default on, off with --like; the same files 'repro tensorboard' makes from the record).")
    var tensorboard: Bool?
    @Option(help: "Folder of the TensorBoard runs, events in <logdir>/<name>/ (default: runs, as the notebook's SummaryWriter; with --output DIR/FILE.h5, DIR).")
    var logdir: String?
    @Flag(help: "Train and print, but write no record (to measure the recording overhead).") var noWrite = false
    @Option(help: "Continue the run in this record from its last checkpoint (or --from-step) and write the whole run to --output; only --epochs, --max-steps and --threads may change.")
    var resume: String?
    @Option(help: "With --resume: the checkpoint step to continue from (default: the record's last one within the run).")
    var fromStep: Int?
    @Option(help: ArgumentHelp("Record a replica of the run under Monte Carlo arithmetic (every kernel result perturbed by its round-off, seeded by N): for measuring round-off envelopes.",
                               visibility: .hidden))
    var roundingReplica: UInt32?
    @Option(help: "Re-record this golden with exactly its configuration (profile, windows, checkpoints, evaluation limit, threads, kernels, seed, data), by default in place (atomically).")
    var like: String?
    @Option(help: ArgumentHelp("Measure the round-off envelope with K replicas of every verification window (0: none). Default \(Self.defaultEnvelopeReplicas) with --profile golden and with --like (or the golden's own K), else 0. See docs/verifying.md.",
                               valueName: "K"))
    var envelope: Int?

    /// Replicas per window of a golden's envelope (docs/verifying.md, "Round-off envelopes"): with 8, 4 of
    /// 10 re-runs under other OpenBLAS kernels left the envelope 8-fold, where a ReLU decision flipped that
    /// no replica flipped; with 16, none of 26 benign re-runs came within 3× of it.
    static let defaultEnvelopeReplicas = 16

    /// The envelope's replicas for this run (0: none).
    func envelopeReplicas(config: RunConfig, source: Record?) -> Int {
        if let envelope { return envelope }
        if let source, like != nil { return source.envelopeReplicas ?? Self.defaultEnvelopeReplicas }
        return config.profile == .golden ? Self.defaultEnvelopeReplicas : 0
    }

    /// The options that change a run's configuration, by name, when given.
    var configurationOptions: [String] {
        [("--batch-size", batchSize != nil), ("--learning-rate", learningRate != nil), ("--weight-decay", weightDecay != nil),
         ("--momentum", momentum != nil), ("--epochs", epochs != nil), ("--dataset", dataset != nil), ("--norm/--no-norm", norm != nil),
         ("--name", name != nil), ("--seed", seed != nil), ("--max-steps", maxSteps != nil), ("--checkpoint-every", checkpointEvery != nil),
         ("--evaluation-limit", evaluationLimit != nil), ("--kernels", kernels != nil), ("--profile", profile != nil),
         ("--window-steps", windowSteps != nil), ("--experiment", experiment != nil)].filter(\.1).map(\.0)
    }

    /// The ranges are the ones a record may state (`RunConfig.Limits`): whatever record writes, verify can read.
    func validate() throws {
        typealias L = RunConfig.Limits
        try check(batchSize, in: L.batchSize, "--batch-size")
        try check(epochs, in: L.epochs, "--epochs")
        if let learningRate, !(learningRate.isFinite && L.learningRate.contains(learningRate)) {
            throw ValidationError("--learning-rate must be a positive number up to \(L.learningRate.upperBound), got \(learningRate)")
        }
        try check(weightDecay, in: L.weightDecay, "--weight-decay")
        if let momentum, !L.momentum.contains(momentum) { throw ValidationError("--momentum must be in [0, 1), got \(momentum)") }
        for (value, option) in [(maxSteps, "--max-steps"), (checkpointEvery, "--checkpoint-every"), (evaluationLimit, "--evaluation-limit"),
                                (windowSteps, "--window-steps")] {
            try check(value, in: L.count, option)
        }
        try check(threads, in: L.threads, "--threads")
        try check(fromStep, in: 0...L.count.upperBound, "--from-step")
        try check(envelope, in: 0...Int(Envelope.maximumReplicas), "--envelope")
        if envelope.map({ $0 > 0 }) ?? false && (noWrite || roundingReplica != nil) {
            throw ValidationError("--envelope measures a record's envelope: it excludes --no-write and --rounding-replica")
        }
        if let name, !L.isValidName(name) {
            throw ValidationError("--name must be 1 to 64 letters, digits, '.', '_' or '-' (not starting with '.'), got '\(name)'")
        }
        if fromStep != nil && resume == nil { throw ValidationError("--from-step goes with --resume") }
        if experiment != nil && (dataset != nil || norm != nil) { throw ValidationError("--experiment sets --dataset and --norm; give one or the other") }
        if let like {
            if resume != nil || noWrite { throw ValidationError("--like re-records a golden: it excludes --resume and --no-write") }
            if let first = configurationOptions.first {
                throw ValidationError("--like takes the whole configuration from \(like): \(first) cannot change it (record without --like for another run)")
            }
        }
    }

    /// The run's configuration: the options on top of `base` (the notebook's defaults, or a resumed run's source).
    func configuration(base: RunConfig?) -> RunConfig {
        var config = base ?? RunConfig()
        if let experiment { (config.dataset, config.norm, config.name) = (experiment.dataset, experiment.norm, experiment.rawValue) }
        if let dataset { config.dataset = dataset }
        if let kernels { config.kernels = kernels }
        if let profile { config.profile = profile }
        if let norm { config.norm = norm }
        if base == nil && experiment == nil { config.name = config.dataset.rawValue + (config.norm ? "_bn" : "") }
        if let name { config.name = name }
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
        return config
    }

    /// Where the TensorBoard events go: --logdir, else the output's folder when --output or --like names
    /// the record's place, else runs/ (the notebook's SummaryWriter).
    func eventsFolder(output: String) -> String {
        if let logdir { return logdir }
        if self.output != nil || like != nil { return URL(fileURLWithPath: output).deletingLastPathComponent().path }
        return "runs"
    }

    func run() throws {
        var source: Record?
        if let path = resume ?? like {
            if like != nil, let version = Record.statedSchemaVersion(path), !RecordSchema.readableVersions.contains(version) {
                try failWithBadInput("\(path): a golden of schema version \(version); this repro records version \(RecordSchema.version) and cannot "
                                     + "re-record from it: record it anew with the options it was made with (h5dump -A -g /config \(path) lists them)")
            }
            do { source = try Record(path: path) } catch { try failWithBadInput(error.description) }
        }
        let config: RunConfig
        if let source, like != nil {
            do { config = try Recording.configuration(like: source, threads: threads) } catch { try failWithBadInput("\(error)") }
        } else {
            config = configuration(base: source?.config)
        }
        let outputPath = output ?? like ?? "runs/\(config.name).h5"
        let data: ImageDataset
        do { data = try ImageDataset.load(config.dataset, directory: dataDir ?? config.dataset.defaultDirectory) }
        catch { try failWithBadInput(error.description) }
        if let source, like != nil {
            for (mine, recorded) in zip(data.fingerprints, source.data.fingerprints) where mine.sha256 != recorded.sha256 {
                try failWithBadInput("\(mine.file): not the data \(source.path) was recorded on (sha256 differs); pass --data-dir")
            }
        }
        if let source, resume != nil, config.kernels == .blas,
           TolerancePolicy.fingerprint(kernels: .blas, environment: source.environment)
            != TolerancePolicy.fingerprint(kernels: .blas, environment: EnvironmentFacts(current: .blas)) || config.threads != source.config.threads {
            FileHandle.standardError.write(Data("warning: resuming a blas record on another environment (OpenBLAS kernel, threads or glibc): the bits will differ from the uninterrupted run's\n".utf8))
        }

        let reporter = ConsoleReporter()
        let start = DispatchTime.now()
        // Wall-clock time would make two identical runs differ; SOURCE_DATE_EPOCH (the reproducible-builds
        // convention) stamps one deliberately. A re-recorded golden keeps its own stamp.
        let created = source.flatMap { like != nil ? $0.header.created : nil }
            ?? String((ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"] ?? "").prefix(64))
        let header = RecordHeader(created: created, reproVersion: ReproVersion.string)
        let replicas = roundingReplica == nil && !noWrite ? envelopeReplicas(config: config, source: source) : 0
        // Replicas are thread-independent with portable kernels: they may use every core.
        let replicaThreads = config.kernels == .portable ? max(config.threads, min(ProcessInfo.processInfo.activeProcessorCount, 8)) : config.threads
        // A portable run's replicas start while it records, on the cores it leaves idle.
        let live = replicas == 0 || config.kernels != .portable || resume != nil ? nil
            : LiveReplicas(config: config, data: data, replicas: replicas, trainCount: DataOrder.trainCount(of: data.train.count),
                           workers: max(0, replicaThreads - config.threads))
        let amend = replicas == 0 ? nil : EnvelopeMeasurement.amending(
            data: data, replicas: replicas, threads: replicaThreads, live: live,
            started: { print("measuring the round-off envelope: \(replicas) replicas of each of \($0) windows") },
            progress: { print("  envelope: window \($0) of \($1) done") })
        do {
            if noWrite {
                let start = try source.map { try RecordReplay($0).resumePoint(at: fromStep ?? $0.plan.checkpointSteps.last!) }
                try Trainer(config: config, data: data).run(observers: [reporter], from: start)
            } else if let source, resume != nil {
                try Recording.resume(source, config: config, from: fromStep, data: data, to: outputPath, header: header,
                                     checks: try BatchNormChecks.run(), observers: [reporter],
                                     temporaryFileCreated: Interrupts.removeOnInterrupt, amending: amend)
            } else {
                if output == nil && like == nil { try? FileManager.default.createDirectory(atPath: "runs", withIntermediateDirectories: true) }
                let hooks: any TrainingHooks = roundingReplica.map { RoundingReplica(seed: config.seed, replica: $0) } ?? NoFault()
                try Recording.record(config: config, data: data, to: outputPath, header: header,
                                     checks: try BatchNormChecks.run(), observers: [reporter] + (live.map { [$0] } ?? []), hooks: hooks,
                                     temporaryFileCreated: Interrupts.removeOnInterrupt, amending: amend)
            }
            if tensorboard ?? (like == nil), !noWrite {
                let events = try TensorBoardExport.write(try Record(path: outputPath), logdir: eventsFolder(output: outputPath))
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
        let what = noWrite ? "trained without recording"
            : like == outputPath ? "re-recorded \(outputPath) in place with its own configuration" : "wrote \(outputPath)"
        print(String(format: "%@ in %.1f s (%.1f s per epoch), peak RSS %d MB", what, seconds, perEpoch, usage.ru_maxrss / 1024))
    }
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
