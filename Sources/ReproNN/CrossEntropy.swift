import ReproKernels

/// Mean over the batch of −log softmax(z)[target], computed as logsumexp(z) − z[target] with the max
/// subtracted first, so no exp overflows.
public struct CrossEntropyResult<T: KernelScalar> {
    public var loss: T
    /// ∂loss/∂logits, feature-major [classes][N]: (softmax − onehot)/N; nil when not asked for.
    public var gradient: FeatureMap<T>?
    /// Number of samples whose first maximal logit is the target (argmax as torch.max: first on ties).
    public var correct: Int

    @inlinable
    public init(loss: T, gradient: FeatureMap<T>?, correct: Int) {
        self.loss = loss; self.gradient = gradient; self.correct = correct
    }
}

public enum CrossEntropy {
    @inlinable
    public static func evaluate<T: KernelScalar>(logits: FeatureMap<T>, targets: [Int], kernels: any Kernels,
                                                 gradient wantGradient: Bool = true) -> CrossEntropyResult<T> {
        let classes = logits.channels, n = logits.batch
        precondition(targets.count == n, "cross-entropy: \(targets.count) targets for \(n) samples")
        var perSample = [T](repeating: 0, count: n)
        var grad = [T](repeating: 0, count: wantGradient ? classes * n : 0)
        var hits = [Int](repeating: 0, count: n)
        for t in targets { precondition(t >= 0 && t < classes, "cross-entropy: target \(t) outside 0..<\(classes)") }
        // Threads take whole samples (each sample's values are its own; the loss is summed after, in its fixed
        // tree): the exps of a batch, ~25 µs, were a serial part of a 2-thread step.
        logits.data.withUnsafeBufferPointer { zp in perSample.withUnsafeMutableBufferPointer { lp in
          grad.withUnsafeMutableBufferPointer { gp in hits.withUnsafeMutableBufferPointer { hp in targets.withUnsafeBufferPointer { tp in
            nonisolated(unsafe) let z = zp.baseAddress!, losses = lp.baseAddress!, g = gp.baseAddress, hit = hp.baseAddress!
            nonisolated(unsafe) let targets = tp.baseAddress!
            Parallel.forEach(n, threads: kernels.threads, minimumPerPart: 32) { samples in
              withUnsafeTemporaryAllocation(of: T.self, capacity: classes) { e in
                for j in samples {
                    let t = targets[j]
                    var best = z[j], arg = 0
                    for k in 1..<classes where z[k * n + j] > best { best = z[k * n + j]; arg = k }
                    hit[j] = arg == t ? 1 : 0
                    var total: T = 0
                    for k in 0..<classes { e[k] = kernels.exp(z[k * n + j] - best); total += e[k] }
                    let logTotal = kernels.log(total), target = z[t * n + j]
                    losses[j] = kernels.elementwiseSum(best + logTotal - target, terms: 3,
                                                       magnitude: abs(best) + abs(logTotal) + abs(target), index: j)
                    if wantGradient, let g {
                        let scale = 1 / T(n)
                        for k in 0..<classes { g[k * n + j] = (e[k] / total - (k == t ? 1 : 0)) * scale }
                    }
                }
              }
            }
          } } }
        } }
        let correct = hits.reduce(0, +)
        let loss = perSample.withUnsafeBufferPointer { kernels.sum($0) } / T(n)
        return CrossEntropyResult(loss: loss, gradient: wantGradient ? FeatureMap(channels: classes, batch: n, data: grad) : nil,
                                  correct: correct)
    }
}
