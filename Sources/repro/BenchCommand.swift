import ArgumentParser
import Foundation
import ReproData
import ReproKernels
import ReproNN
import ReproTraining

/// `repro bench`: milliseconds per training step of the notebook's model, against this machine's sgemm
/// peak measured in the same run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time training steps (forward + backward + SGD) and compare with the measured sgemm peak.",
        discussion: "Build in release mode for meaningful figures: swift run -c release repro bench")

    @Option(help: "Batch size.") var batchSize = 128
    @Option(help: "Timed steps (after the warm-up steps).") var steps = 50
    @Option(help: "Untimed warm-up steps.") var warmup = 5
    @Option(help: "OpenBLAS threads (the bits of a blas run depend on it).") var threads = 2
    @Flag(inversion: .prefixedNo, help: "LeNet-5 with the notebook's BatchNorm.") var norm = true
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @Flag(help: "Also time every layer's forward and backward separately (text output).") var breakdown = false
    @Option(help: "Kernels to time (both: side by side, with their ratio).") var kernels = BenchKernels.both
    @Flag(help: "Instead of timing: the float32 step's error against the same step in Float64, per tensor, along a real trajectory (median and worst over the states).")
    var accuracy = false
    @Option(help: "With --accuracy: the number of training states.") var states = 12
    @Option(help: "With --accuracy: training steps between states.") var stride = 10
    @Option(help: "With --accuracy: the MNIST folder.") var dataDir = "Data/mnist"

    func validate() throws {
        try check(batchSize, in: RunConfig.Limits.batchSize, "--batch-size")
        try check(steps, in: 1...1_000_000, "--steps")
        try check(warmup, in: 0...1_000_000, "--warmup")
        try check(threads, in: RunConfig.Limits.threads, "--threads")
        try check(states, in: 1...10_000, "--states")
        try check(stride, in: 1...1_000_000, "--stride")
    }

    struct Timing {
        var kernels: String
        var median: Double
        var best: Double
    }

    func run() throws {
        if accuracy { return try runAccuracy() }
        OpenBLAS.setThreadCount(threads)
        let peak = Self.measureSgemmPeak()
        Self.letBLASWorkersPark()
        let peakBefore = Self.measureFMAPeak(threads: threads)
        // On a shared virtual machine the cores' capacity can change during the run (two vCPUs on one core
        // halve the 2-thread peak): the peak is measured before and after the timings, and threads × the
        // 1-thread peak is given too, the ceiling of the cores this run asked for.
        let nominalPeak = Double(threads) * Self.measureFMAPeak(threads: 1)
        let n = batchSize
        let flops = Self.stepFlops(batch: n)
        // Portable first: they are record's default, so `ms_per_step` reports them.
        let choices = kernels.choices
        var timings = [Timing]()
        var probeCost: (untraced: Double, traced: Double)?
        var repeatedChannels: Timing?
        for choice in choices {
            let name = choice.rawValue
            let k = Trainer.kernels(choice, threads: threads)
            let net = LeNet5<Float>(normalized: norm, kernels: k)
            net.initialize(seed: 0)
            let sgd = SGD(parameters: net.parameters, options: SGDOptions())
            var rng = Philox(seed: 0, .testData)
            let x = FeatureMap<Float>(channels: 3, batch: n, height: 32, width: 32,
                                      data: (0..<(3 * n * 1024)).map { _ in Float(rng.nextUnitDouble() * 2 - 1) })
            let targets = (0..<n).map { _ in rng.nextBelow(10) }
            for _ in 0..<warmup { _ = try net.trainStep(x, targets: targets, optimizer: sgd) }
            let times = try Self.stepTimes(net, x: x, targets: targets, optimizer: sgd, steps: steps)
            timings.append(Timing(kernels: name, median: times[times.count / 2], best: times[0]))
            if probeCost == nil { probeCost = try Self.probeCost(net, x: x, targets: targets, optimizer: sgd, steps: steps) }
            if choice == .portable {
                // MNIST as the notebook feeds it: one plane repeated to 3 channels (the weight gradient's shortcut).
                let plane = n * 1024, gray = Array(x.data[0..<plane])
                let mnistLike = FeatureMap(channels: 3, batch: n, height: 32, width: 32, data: gray + gray + gray)
                let t = try Self.stepTimes(net, x: mnistLike, targets: targets, optimizer: sgd, steps: steps)
                repeatedChannels = Timing(kernels: name, median: t[t.count / 2], best: t[0])
            }
            if breakdown && !json {
                print("\(name) kernels:")
                try Self.printBreakdown(net, x: x, targets: targets, optimizer: sgd, steps: steps)
            }
            // Before the next kernels' timings or the FMA peak after them.
            if choice == .blas { Self.letBLASWorkersPark() }
        }
        let primary = timings[0]
        let peakAfter = Self.measureFMAPeak(threads: threads)
        let fmaPeak = max(peakBefore, peakAfter)
        let peakMoved = min(peakBefore, peakAfter) < 0.8 * fmaPeak || fmaPeak < 0.8 * nominalPeak
        if json {
            var object: [String: Any] = [
                "batch_size": n, "threads": threads, "norm": norm, "openblas_core": OpenBLAS.coreName, "steps": steps,
                "numeric_build": Self.numericBuild, "fma_peak_gflops": fmaPeak,
                "share_of_fma_peak": flops / (primary.median * 1e-3) / 1e9 / fmaPeak,
                "fma_peak_before_after_gflops": [peakBefore, peakAfter], "nominal_fma_peak_gflops": nominalPeak,
                "share_of_nominal_fma_peak": flops / (primary.median * 1e-3) / 1e9 / nominalPeak,
                "step_mflop": flops / 1e6, "sgemm_peak_gflops": peak, "kernels": primary.kernels,
                "ms_per_step": primary.median, "ms_per_step_best": primary.best,
                "images_per_second": Double(n) / (primary.median * 1e-3),
                "gflops": flops / (primary.median * 1e-3) / 1e9, "share_of_sgemm_peak": flops / (primary.median * 1e-3) / 1e9 / peak,
                "probe_overhead": probeCost.map { $0.traced / $0.untraced - 1 } ?? 0,
            ]
            if let repeatedChannels { object["ms_per_step_repeated_channels"] = repeatedChannels.median }
            for t in timings { object["ms_per_step_\(t.kernels)"] = t.median }
            if timings.count == 2 { object["portable_over_blas"] = timings[0].median / timings[1].median }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("LeNet-5\(norm ? " + BN" : ""), batch \(n), \(threads) thread(s), OpenBLAS core \(OpenBLAS.coreName); sgemm peak measured now: \(String(format: "%.1f", peak)) GFLOP/s")
        print("numeric code built for \(Self.numericBuild); FMA peak measured now: \(String(format: "%.1f", fmaPeak)) GFLOP/s"
              + String(format: " (%.1f before the timings, %.1f after; %d × the 1-thread peak: %.1f)", peakBefore, peakAfter, threads, nominalPeak))
        if peakMoved {
            print("  note: the FMA peak moved during this run or stayed below \(threads) × the 1-thread peak (cores shared by the host): the shares of it are unreliable")
        }
        for t in timings {
            let gflops = flops / (t.median * 1e-3) / 1e9
            print("  " + t.kernels.padding(toLength: 9, withPad: " ", startingAt: 0)
                  + String(format: "%7.2f ms/step (median of %d; best %.2f)  %6.0f images/s  %5.1f GFLOP/s = %4.1f%% of sgemm peak, %4.1f%% of FMA peak",
                           t.median, steps, t.best, Double(n) / (t.median * 1e-3), gflops, 100 * gflops / peak, 100 * gflops / fmaPeak)
                  + String(format: ", %4.1f%% of %d × the 1-thread peak", 100 * gflops / nominalPeak, threads))
        }
        if timings.count == 2 {
            print(String(format: "  portable / blas = %.2f×", timings[0].median / timings[1].median))
        }
        if let repeatedChannels {
            print(String(format: "  portable step on MNIST's input (one plane repeated to 3 channels, as the notebook feeds it): %.2f ms (median; best %.2f)",
                         repeatedChannels.median, repeatedChannels.best))
        }
        if let probeCost {
            print(String(format: "  %@ step with the record's probes: %.2f ms vs %.2f ms without (alternating, medians): %+.1f%%",
                         primary.kernels, probeCost.traced, probeCost.untraced, 100 * (probeCost.traced / probeCost.untraced - 1)))
        }
    }

    /// Milliseconds of `steps` training steps, sorted.
    static func stepTimes(_ net: LeNet5<Float>, x: FeatureMap<Float>, targets: [Int], optimizer: SGD<Float>, steps: Int) throws -> [Double] {
        var times = [Double]()
        for _ in 0..<steps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try net.trainStep(x, targets: targets, optimizer: optimizer)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        return times.sorted()
    }

    /// Median milliseconds of a step without and with the per-step probes a record stores (`StepTrace`),
    /// the two kinds of step alternating so that drifts of the machine's speed hit both alike.
    static func probeCost(_ net: LeNet5<Float>, x: FeatureMap<Float>, targets: [Int], optimizer: SGD<Float>, steps: Int) throws
        -> (untraced: Double, traced: Double) {
        var untraced = [Double](), traced = [Double]()
        let trace = StepTrace(threads: net.kernels.threads)
        for i in 0..<(2 * steps) {
            let probing = i % 2 == 1
            trace.reset()
            net.trace = probing ? trace : nil
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try net.trainStep(x, targets: targets, optimizer: optimizer)
            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            if probing { traced.append(ms) } else { untraced.append(ms) }
        }
        net.trace = nil
        return (untraced.sorted()[steps / 2], traced.sorted()[steps / 2])
    }

    func runAccuracy() throws {
        let figures: AccuracyBench.Figures
        do { figures = try AccuracyBench.run(norm: norm, states: states, stride: stride, threads: threads, dataDirectory: dataDir) }
        catch let error as DataError { FileHandle.standardError.write(Data("error: \(error.description)\n".utf8)); throw ExitCode(2) }
        if json {
            let object: [String: Any] = [
                "norm": norm, "states": states, "stride": stride, "numeric_build": Self.numericBuild,
                "accuracy": Dictionary(uniqueKeysWithValues: figures.rows.map { ($0.name, ["median": $0.median, "worst": $0.worst]) }),
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        print("LeNet-5\(norm ? " + BN" : ""), float32 vs Float64 of the same step, \(states) states \(stride) steps apart (seed 0, MNIST, batch 128, portable kernels)")
        print("  " + "tensor".padding(toLength: 58, withPad: " ", startingAt: 0) + "   median rel. error    worst")
        for r in figures.rows {
            print("  " + r.name.padding(toLength: 58, withPad: " ", startingAt: 0) + String(format: "   %14.2e   %9.2e", r.median, r.worst))
        }
        print("  (gradients: ‖g32 − g64‖/‖g64‖; BN statistics: max |Δ| / max |value| over channels, batch mean and std)")
    }

    /// Median milliseconds of each stage of real training steps, timed by the model's own stage hook (so the
    /// stages are exactly what a step runs, fusions included, and they add up to the step); beside them the
    /// same stages of steps with the record's probes (each stage with the probes it takes), the two kinds of
    /// step alternating.
    static func printBreakdown(_ net: LeNet5<Float>, x: FeatureMap<Float>, targets: [Int], optimizer: SGD<Float>,
                               steps: Int) throws {
        final class Clock: @unchecked Sendable {
            var names: [String] = [], times: [[String: [Double]]] = [[:], [:]], last: UInt64 = 0, probing = 0
        }
        let clock = Clock()
        net.stageDone = { name in
            let now = DispatchTime.now().uptimeNanoseconds
            let key = "\(name)"
            if !clock.names.contains(key) { clock.names.append(key) }
            clock.times[clock.probing][key, default: []].append(Double(now - clock.last) / 1e6)
            clock.last = now
        }
        defer { net.stageDone = nil; net.trace = nil }
        let trace = StepTrace(threads: net.kernels.threads)
        for i in 0..<(2 * max(steps, 5)) {
            clock.probing = i % 2
            trace.reset()
            net.trace = clock.probing == 1 ? trace : nil
            clock.last = DispatchTime.now().uptimeNanoseconds
            _ = try net.trainStep(x, targets: targets, optimizer: optimizer)
        }
        func median(_ kind: Int, _ name: String) -> Double {
            let t = clock.times[kind][name] ?? [0]
            return t.sorted()[t.count / 2]
        }
        let plain = clock.names.map { median(0, $0) }, probed = clock.names.map { median(1, $0) }
        let total = plain.reduce(0, +), totalProbed = probed.reduce(0, +)
        print("  breakdown (median ms of each stage over \(max(steps, 5)) steps; with the record's probes: the same stages of")
        print("  steps that take them, alternating):")
        print("    " + "stage".padding(toLength: 42, withPad: " ", startingAt: 0) + "      ms  share   with probes")
        for (name, (ms, withProbes)) in zip(clock.names, zip(plain, probed)) {
            print("    " + name.padding(toLength: 42, withPad: " ", startingAt: 0)
                  + String(format: " %7.2f  %5.1f%%   %7.2f  %+6.2f", ms, 100 * ms / total, withProbes, withProbes - ms))
        }
        print("    " + "sum".padding(toLength: 42, withPad: " ", startingAt: 0)
              + String(format: " %7.2f          %7.2f  %+6.2f", total, totalProbed, totalProbed - total))
    }

    /// What the numeric code was compiled for (Package.swift picks it from the build machine).
    static var numericBuild: String {
        #if REPRO_TARGET_HASWELL
        return "x86-64 Haswell (AVX2, hardware FMA)"
        #elseif REPRO_TARGET_OTHER
        return "the CPU named by REPRO_TARGET_CPU"
        #elseif arch(x86_64)
        return "x86-64 baseline: the portable kernels' fused multiply-adds run in software (~30× slower; see Package.swift)"
        #else
        return "the host's default"
        #endif
    }

    /// GEMM FLOPs of one step: forward, weight gradients, and input gradients for every layer but conv1.
    static func stepFlops(batch n: Int) -> Double {
        let conv1 = 2.0 * 6 * 75 * Double(n * 784), conv2 = 2.0 * 16 * 150 * Double(n * 100)
        let fc = 2.0 * Double(n) * (400 * 120 + 120 * 84 + 84 * 10)
        return 2 * conv1 + 3 * conv2 + 3 * fc
    }

    /// The arithmetic ceiling of this build on `threads` cores: 16-lane fused multiply-adds into 6 independent
    /// accumulators per thread (no memory traffic), best of 5 runs. No real kernel reaches it; the step's share
    /// of it says how far the code is from the hardware, whatever kernel OpenBLAS picked.
    static func measureFMAPeak(threads: Int) -> Double {
        let iterations = 2_000_000
        var best = Double.infinity
        for _ in 0..<5 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            Parallel.forEach(threads, threads: threads) { parts in
                for part in parts where fmaLoop(iterations, SIMD16(repeating: 1e-9), SIMD16(repeating: Float(part + 1))) < 0 { print("") }
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        return Double(threads * iterations * 6 * 16 * 2) / best / 1e9
    }

    @inline(never)
    static func fmaLoop(_ iterations: Int, _ x: SIMD16<Float>, _ y: SIMD16<Float>) -> Float {
        var a0 = SIMD16<Float>(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0
        for _ in 0..<iterations {
            a0.addProduct(x, y); a1.addProduct(y, x); a2.addProduct(x, y)
            a3.addProduct(y, x); a4.addProduct(x, y); a5.addProduct(y, x)
        }
        return (a0 + a1 + a2 + a3 + a4 + a5).sum()
    }

    /// After a multithreaded call OpenBLAS's workers keep polling for work (with `sched_yield`) for about
    /// 2^28 cycles, ~0.1 s (its THREAD_TIMEOUT), before they sleep: until then they compete with whatever
    /// runs next for the cores — measured here as an FMA peak at half its value and as slower first portable
    /// steps. Waiting well past that keeps a BLAS measurement from leaking into the next one.
    static func letBLASWorkersPark() {
        Thread.sleep(forTimeInterval: 0.5)
    }

    /// Best of several 1024³ sgemm calls: what OpenBLAS reaches on a large square problem with this
    /// thread count, the ceiling to read the step's GFLOP/s against.
    static func measureSgemmPeak() -> Double {
        let s = 1024
        let a = [Float](repeating: 0.5, count: s * s), b = [Float](repeating: 0.25, count: s * s)
        var c = [Float](repeating: 0, count: s * s)
        var best = Double.infinity
        for _ in 0..<6 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                BLASKernels().gemm(.none, .none, m: s, n: s, k: s, alpha: 1, a: ap.baseAddress!, lda: s,
                                   b: bp.baseAddress!, ldb: s, beta: 0, c: cp.baseAddress!, ldc: s)
            } } }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        return 2 * Double(s * s * s) / best / 1e9
    }
}
