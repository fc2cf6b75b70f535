import Foundation
import ReproData
import ReproKernels
import ReproNN
import ReproTraining

/// `repro bench --accuracy`: how far the float32 step is from the same step computed in Float64 by the same
/// generic engine. Along a real training trajectory (seed 0, the embedded MNIST, batch 128, portable
/// kernels), at each of several states the float32 model's state is copied exactly into a Float64 model and
/// both compute forward and backward on the same batch; per parameter tensor the relative L2 error of the
/// float32 gradient, per BN layer the worst batch-statistic error relative to the statistic's largest
/// magnitude. Median and worst over the states: a ReLU or max-pool decision that flips between float32 and
/// float64 makes an occasional state's error large, so the median is the figure to compare.
enum AccuracyBench {
    struct Figures {
        /// Tensor (or "bnK batch statistics") → errors, one per state.
        var errors: [(name: String, values: [Double])] = []
        mutating func add(_ name: String, _ value: Double) {
            if let i = errors.firstIndex(where: { $0.name == name }) { errors[i].values.append(value) } else { errors.append((name, [value])) }
        }
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2 }
        var rows: [(name: String, median: Double, worst: Double)] { errors.map { ($0.name, median($0.values), $0.values.max() ?? 0) } }
    }

    static func run(norm: Bool, states: Int, stride: Int, threads: Int, dataDirectory: String) throws -> Figures {
        let data = try ImageDataset.load(.mnist, directory: dataDirectory)
        let kernels = PortableKernels(threads: threads)
        let model = LeNet5<Float>(normalized: norm, kernels: kernels)
        model.initialize(seed: 0)
        let reference = LeNet5<Double>(normalized: norm, kernels: PortableKernels(threads: threads))
        let sgd = SGD(parameters: model.parameters, options: SGDOptions())
        let (train, _) = DataOrder.trainValidationSplit(count: data.train.count, seed: 0)
        let order = DataOrder.epochOrder(trainIndices: train, epoch: 0, seed: 0)
        let b = 128
        var figures = Figures()
        var step = 0
        for _ in 0..<states {
            let indices = order[(step * b)..<((step + 1) * b)]
            let batch = data.batch(data.train, indices: indices)
            // The same state in Float64 (every float32 value is exact in Float64).
            for (t64, t32) in zip(reference.stateDict, model.stateDict) { t64.value = t32.value.map(Double.init) }
            let x64 = FeatureMap(channels: batch.x.channels, batch: batch.x.batch, height: batch.x.height, width: batch.x.width,
                                 data: batch.x.data.map(Double.init))
            try gradients(model, batch.x, batch.labels)
            try gradients(reference, x64, batch.labels)
            var weightNorm = 1.0
            for (p32, p64) in zip(model.parameters, reference.parameters) {
                var diff = 0.0, norm64 = 0.0
                for (a, r) in zip(p32.grad, p64.grad) { diff += (Double(a) - r) * (Double(a) - r); norm64 += r * r }
                if p32.name.hasSuffix(".weight") || p32.name.hasSuffix(".gamma") { weightNorm = norm64.squareRoot() }
                // A bias followed by BatchNorm has gradient exactly 0 (BN removes the mean): only the absolute
                // error means something there, relative to the layer's weight gradient.
                if p32.name.hasSuffix(".bias"), norm64.squareRoot() < 1e-9 * weightNorm {
                    figures.add(p32.name + " gradient (exactly 0; |error| / |weight grad|)", diff.squareRoot() / weightNorm)
                } else {
                    figures.add(p32.name + " gradient", (diff / max(norm64, .leastNormalMagnitude)).squareRoot())
                }
            }
            for (s32, s64) in zip(model.batchNormStatistics, reference.batchNormStatistics) {
                var worst = 0.0
                for (a, r) in [(s32.batchMean, s64.batchMean), (s32.batchStd, s64.batchStd)] {
                    let scale = r.map(abs).max() ?? 1
                    worst = max(worst, zip(a, r).map { abs(Double($0) - $1) }.max()! / max(scale, .leastNormalMagnitude))
                }
                figures.add(s32.layer + " batch statistics", worst)
            }
            // Advance the float32 trajectory `stride` steps.
            for _ in 0..<stride {
                let i = order[(step * b)..<((step + 1) * b)]
                let xb = data.batch(data.train, indices: i)
                _ = try model.trainStep(xb.x, targets: xb.labels, optimizer: sgd)
                step += 1
            }
        }
        return figures
    }

    static func gradients<T: KernelScalar>(_ net: LeNet5<T>, _ x: FeatureMap<T>, _ labels: [Int]) throws {
        let logits = try net.forward(x, training: true)
        net.backward(CrossEntropy.evaluate(logits: logits, targets: labels, kernels: net.kernels).gradient!)
    }
}
