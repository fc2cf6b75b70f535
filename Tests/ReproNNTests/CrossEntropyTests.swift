import Testing
import ReproKernels
import ReproNN

/// The loss split between threads by sample: the same bits as a plain loop over the samples with the same
/// formula (logsumexp with the max subtracted, the portable exp and log, the fixed-order mean), and the
/// same count of correct samples (first maximum on ties, as torch.max), for any thread count.
@Suite struct CrossEntropyTests {
    static func reference(_ z: [Float], classes: Int, n: Int, targets: [Int]) -> (loss: Float, gradient: [Float], correct: Int) {
        var losses = [Float](repeating: 0, count: n), gradient = [Float](repeating: 0, count: classes * n), correct = 0
        for j in 0..<n {
            var best = z[j], arg = 0
            for k in 1..<classes where z[k * n + j] > best { best = z[k * n + j]; arg = k }
            if arg == targets[j] { correct += 1 }
            let e = (0..<classes).map { PortableMath.exp(z[$0 * n + j] - best) }
            var total: Float = 0
            for v in e { total += v }
            losses[j] = best + PortableMath.log(total) - z[targets[j] * n + j]
            for k in 0..<classes { gradient[k * n + j] = (e[k] / total - (k == targets[j] ? 1 : 0)) * (1 / Float(n)) }
        }
        let loss = losses.withUnsafeBufferPointer { FixedOrderReductions.sum($0) } / Float(n)
        return (loss, gradient, correct)
    }

    @Test func lossSplitBetweenThreadsMatchesThePlainLoop() {
        let classes = 10, n = 100
        var rng = Philox(seed: 11, .testData)
        // Small integers: many ties for the maximum. Even samples' target is their first maximum, so a
        // count that took the last one on ties would miss them.
        let z = (0..<(classes * n)).map { _ in Float(rng.nextBelow(4)) - 2 }
        let targets = (0..<n).map { j in
            j % 2 == 0 ? (0..<classes).first { k in (0..<classes).allSatisfy { z[$0 * n + j] <= z[k * n + j] } }! : rng.nextBelow(classes)
        }
        let expected = Self.reference(z, classes: classes, n: n, targets: targets)
        #expect(expected.correct > 0 && expected.correct < n)
        for threads in [1, 2, 3] {
            let r = CrossEntropy.evaluate(logits: FeatureMap(channels: classes, batch: n, data: z), targets: targets,
                                          kernels: PortableKernels(threads: threads))
            #expect(r.loss.bitPattern == expected.loss.bitPattern, "loss, \(threads) threads")
            #expect(r.gradient!.data.map(\.bitPattern) == expected.gradient.map(\.bitPattern), "gradient, \(threads) threads")
            #expect(r.correct == expected.correct, "correct, \(threads) threads")
        }
    }
}
