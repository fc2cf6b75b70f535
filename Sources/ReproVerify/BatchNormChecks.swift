import Foundation
import ReproKernels
import ReproNN
import ReproRecording

/// The BatchNorm verifier: the layer against the reference formula (float32 vs Float64), its gradients
/// against central differences (Float64), its running buffers against the momentum recurrence, and the
/// whole network's gradients. Inputs come from the seeded generator, so every run checks the same numbers.
public enum BatchNormChecks {
    /// A deliberately broken layer, to show each check can fail (negative controls).
    public enum Fault: String, CaseIterable, Sendable {
        case wrongGammaGradient = "wrong-gamma-gradient"
        /// ∂γ one part in a million too large: what a real but small backward error looks like.
        case gammaGradientOnePPM = "gamma-gradient-1e-6"
        /// ∂x one part in a million too large.
        case inputGradientOnePPM = "input-gradient-1e-6"
        case biasedStd = "biased-std"
        case momentumOnNewValue = "momentum-on-new-value"
        case missingOneMinusMomentum = "missing-one-minus-momentum"
    }

    public typealias Row = CheckRow

    public struct Input: Sendable {
        public var name: String
        public var batch: Int, channels: Int, height: Int, width: Int
        public var scale: Double, offset: Double
        public var is2d: Bool { height * width > 1 || height > 1 }
        public var count: Int { batch * channels * height * width }
        var label: String { "\(is2d ? "BN2d" : "BN1d") N=\(batch) C=\(channels)" + (is2d ? " \(height)×\(width)" : "") + " \(name)" }
    }

    /// The model's own shapes at batch 128 (from its layout), small batches, and hard inputs.
    public static let inputs: [Input] = LeNet5<Float>.layout(normalized: true, batchNorm: .notebook).batchNorms.map {
        Input(name: "model \($0.name)", batch: 128, channels: $0.channels, height: $0.height, width: $0.width, scale: 1, offset: 0)
    } + [
        Input(name: "N=2", batch: 2, channels: 3, height: 1, width: 1, scale: 1, offset: 0.5),
        Input(name: "N=3", batch: 3, channels: 4, height: 2, width: 2, scale: 1, offset: 0.5),
        Input(name: "large magnitude", batch: 16, channels: 5, height: 1, width: 1, scale: 1e4, offset: 0),
        Input(name: "large offset", batch: 32, channels: 4, height: 3, width: 3, scale: 1e-2, offset: 1e3),
        Input(name: "nearly constant", batch: 8, channels: 3, height: 2, width: 2, scale: 1e-3, offset: 1),
    ]

    /// Layer options checked for every input: the notebook's, and each option turned off.
    static let variants: [(String, BatchNormOptions)] = [
        ("notebook", .notebook),
        ("affine off", BatchNormOptions(affine: false)),
        ("running stats off", BatchNormOptions(trackRunningStats: false)),
    ]

    // MARK: the reference formula, written here from its definition; it shares no code with the layer

    /// BN(x)ᵢₖ = γₖ (xᵢₖ − μₖ) / √(σ²ₖ + ε) + βₖ on channel-major data [C][m], with μ, σ from the batch
    /// (σ² unbiased or biased) or given.
    static func formula(_ x: [Double], channels: Int, gamma: [Double]?, beta: [Double]?, epsilon: Double, unbiased: Bool,
                        mean given: [Double]? = nil, std givenStd: [Double]? = nil) -> [Double] {
        let m = x.count / channels
        var y = [Double](repeating: 0, count: x.count)
        for c in 0..<channels {
            var sum = 0.0
            for i in 0..<m { sum += x[c * m + i] }
            let mu = given?[c] ?? sum / Double(m)
            var squares = 0.0
            for i in 0..<m { squares += (x[c * m + i] - mu) * (x[c * m + i] - mu) }
            let sigma = givenStd?[c] ?? (squares / Double(unbiased ? m - 1 : m) + epsilon).squareRoot()
            for i in 0..<m { y[c * m + i] = (gamma?[c] ?? 1) * (x[c * m + i] - mu) / sigma + (beta?[c] ?? 0) }
        }
        return y
    }

    static func seededValues(_ count: Int, seed: UInt64, substream: UInt32, scale: Double, offset: Double) -> [Double] {
        var rng = Philox(seed: seed, .testData, substream: substream)
        return (0..<count).map { _ in offset + scale * ((0..<4).reduce(0.0) { a, _ in a + rng.nextUnitDouble() } - 2) * 1.7320508075688772 }
    }

    static func makeLayer<T: KernelScalar>(_ input: Input, _ options: BatchNormOptions, fault: Fault?) -> BatchNorm<T> {
        var o = options
        if fault == .biasedStd { o.unbiased.toggle() }
        if fault == .momentumOnNewValue { o.momentum = 1 - o.momentum }
        let bn = BatchNorm<T>("bn", channels: input.channels, options: o, kernels: PortableKernels())
        if let g = bn.gamma { g.value = seededValues(input.channels, seed: 1, substream: 1, scale: 0.3, offset: 1).map { T($0) } }
        if let b = bn.beta { b.value = seededValues(input.channels, seed: 1, substream: 2, scale: 0.3, offset: 0).map { T($0) } }
        return bn
    }

    /// Applies the buffer faults that no option reproduces: running = momentum·running + batch.
    static func afterTrainingForward<T: KernelScalar>(_ bn: BatchNorm<T>, previous: ([T], [T])?, fault: Fault?) {
        guard fault == .missingOneMinusMomentum, let (pm, ps) = previous, let rm = bn.runningMean, let rs = bn.runningStd else { return }
        let k = T(bn.options.momentum)
        for c in 0..<bn.channels { rm.value[c] = k * pm[c] + bn.lastMean[c]; rs.value[c] = k * ps[c] + bn.lastStd[c] }
    }

    // MARK: checks

    /// 1. Forward, float32 layer against the Float64 formula on the same (float32-representable) inputs.
    ///
    /// Error bound, per element, with u = 2⁻²⁴ and K = m/16 + 8 (the longest chain of float32 additions in
    /// the fixed-order sums: m/16 per SIMD lane, 4 tree levels, the tail, one division):
    ///   μ̂ = μ + δμ,    |δμ| ≤ K·u·mean|x|               (a sum of m terms, then /m)
    ///   ŝ = s(1 + δs), |δs| ≤ (K/2 + 3)·u + |δμ|²/s²       (squares summed, /(m−1), +ε, √)
    ///   x̂ = (x − μ̂)/ŝ with two more roundings:  |x̂ − x̂*| ≤ (u·|x − μ| + |δμ|)/s + |x̂|(|δs| + 2u)
    ///   y = x̂·γ + β with two more:              |ŷ − y| ≤ |γ|·|x̂ − x̂*| + u(|x̂γ| + |y|)
    /// The check passes when every |ŷ − y| is within 2× that bound (the factor absorbs second-order terms).
    /// Note the μ term: for inputs whose mean is large against their spread (mean 1e3, std 1e-2) the bound
    /// is large, and so is the real error: float32 BN without a shifted variance is ill-conditioned there.
    static func forwardCheck(_ input: Input, _ options: BatchNormOptions, training: Bool, fault: Fault?) throws -> Row {
        let xd = seededValues(input.count, seed: 7, substream: UInt32(input.count % 1000), scale: input.scale, offset: input.offset)
            .map { Double(Float($0)) }
        let bn: BatchNorm<Float> = makeLayer(input, options, fault: fault)
        var runMean: [Double]? = nil, runStd: [Double]? = nil
        if !training, let rm = bn.runningMean, let rs = bn.runningStd {
            // Eval with running statistics: give the buffers plausible, non-trivial values.
            rm.value = seededValues(input.channels, seed: 3, substream: 3, scale: input.scale, offset: input.offset).map { Float($0) }
            rs.value = seededValues(input.channels, seed: 3, substream: 4, scale: 0.1 * input.scale, offset: 1.5 * input.scale).map { abs(Float($0)) }
            runMean = rm.value.map(Double.init); runStd = rs.value.map(Double.init)
        }
        let x = FeatureMap<Float>(channels: input.channels, batch: input.batch, height: input.height, width: input.width,
                                  data: xd.map { Float($0) })
        let y = try bn.forward(x, training: training).data.map(Double.init)
        let gamma = bn.gamma?.value.map(Double.init), beta = bn.beta?.value.map(Double.init)
        let reference = formula(xd, channels: input.channels, gamma: gamma, beta: beta, epsilon: options.epsilon,
                                unbiased: options.unbiased, mean: runMean, std: runStd)
        let m = x.perChannel, u = 0x1p-24, k = Double(m) / 16 + 8
        var worstRatio = 0.0, worstError = 0.0, boundAtWorst = 0.0
        for c in 0..<input.channels {
            let segment = xd[(c * m)..<((c + 1) * m)]
            let meanAbs = segment.reduce(0) { $0 + abs($1) } / Double(m)
            let mu = runMean?[c] ?? segment.reduce(0, +) / Double(m)
            let s = runStd?[c] ?? (segment.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(options.unbiased ? m - 1 : m) + options.epsilon).squareRoot()
            let dMu = runMean == nil ? k * u * meanAbs : 0
            let dS = runStd == nil ? (k / 2 + 3) * u + (dMu / s) * (dMu / s) : u
            let g = abs(gamma?[c] ?? 1)
            for i in (c * m)..<((c + 1) * m) {
                let xhat = abs(xd[i] - mu) / s
                let bound = 2 * (g * ((u * abs(xd[i] - mu) + dMu) / s + xhat * (dS + 2 * u)) + u * (xhat * g + abs(reference[i])))
                let error = abs(y[i] - reference[i])
                let ratio = error / bound
                if !(ratio <= worstRatio) { worstRatio = ratio; worstError = error; boundAtWorst = bound }
            }
        }
        return Row(caseName: "", check: "forward f32 vs f64 formula (\(training ? "train" : "eval"))",
                   worstError: worstError, bound: boundAtWorst, passed: worstRatio <= 1)
    }

    /// 2. Backward in Float64 against central differences, L = Σ w ⊙ y with random w, with a bound derived
    /// from the central difference's own error rather than gradcheck's fixed tolerance.
    ///
    /// BN acts per channel, so the derivative with respect to a coordinate of channel c (an input, or γ_c, β_c)
    /// is that of L_c = Σ_{i∈c} w_i·y_i alone; L_c is summed with Neumaier's compensated summation, so its
    /// computed value is off by about u·F_c, F_c = Σ_{i∈c} |w_i·y_i| (u = 2⁻⁵³), rather than by the n·u·F of a
    /// plain sum over all 602,112 outputs of bn1's shape (which made the old check's floor ~1e-5). The central
    /// difference D(ε) then errs by about ε²·|f‴|/6 (truncation) + u·F_c/ε (rounding of the two evaluations).
    /// Per case, |f‴| is estimated by the five-point third difference at a few coordinates with a wide step, and
    /// ε is chosen to balance the two terms: ε = (3·u·F/|f‴|)^(1/3). The bound of each coordinate is
    /// `Tolerances.derivedBoundFactor` times that error estimate, plus `analyticRoundingUnits`·u·|D| for the
    /// analytic side's own rounding. A 1e-6 relative error in ∂x, ∂γ or ∂β is then far above the bound on every
    /// case that has a gradient (the negative controls `gamma-gradient-1e-6` and `input-gradient-1e-6`).
    static func backwardCheck(_ input: Input, _ options: BatchNormOptions, training: Bool, fault: Fault?) throws -> Row {
        let bn: BatchNorm<Double> = makeLayer(input, options, fault: fault)
        if !training, let rs = bn.runningStd { rs.value = rs.value.map { _ in 1.3 * input.scale } }
        var x = seededValues(input.count, seed: 11, substream: UInt32(input.count % 1000), scale: input.scale, offset: input.offset)
        let w = seededValues(input.count, seed: 12, substream: 0, scale: 1, offset: 0)
        let m = input.count / input.channels
        func map(_ v: [Double]) -> FeatureMap<Double> {
            FeatureMap(channels: input.channels, batch: input.batch, height: input.height, width: input.width, data: v)
        }
        /// L_c by Neumaier's summation, and F_c: the size of what its rounding scales with. Each y_i is
        /// γ·(x_i − μ)/s + β computed in Float64, so its rounding error is a few u times |γ|·(|x_i| + |μ|)/s + |β|
        /// — far more than u·|y_i| when the inputs sit on a large offset (x − μ cancels).
        func channelLoss(_ xs: [Double], _ c: Int) throws -> (value: Double, magnitude: Double) {
            let y = try bn.forward(map(xs), training: training).data
            let mu = abs(bn.lastMean[c]), sd = bn.lastStd[c], g = abs(bn.gamma?.value[c] ?? 1), b = abs(bn.beta?.value[c] ?? 0)
            var sum = 0.0, compensation = 0.0, magnitude = 0.0
            for i in (c * m)..<((c + 1) * m) {
                let term = w[i] * y[i]
                let t = sum + term
                compensation += abs(sum) >= abs(term) ? (sum - t) + term : (term - t) + sum
                sum = t
                magnitude += abs(w[i]) * (g * (abs(xs[i]) + mu) / sd + b)
            }
            return (sum + compensation, magnitude)
        }
        _ = try bn.forward(map(x), training: training)
        var dx = bn.backward(map(w)).data
        if fault == .inputGradientOnePPM { dx = dx.map { $0 * (1 + 1e-6) } }
        var dGamma = bn.gamma?.grad ?? []
        if fault == .wrongGammaGradient { dGamma = dGamma.map { $0 * 1.05 } }
        if fault == .gammaGradientOnePPM { dGamma = dGamma.map { $0 * (1 + 1e-6) } }
        let dBeta = bn.beta?.grad ?? []
        let u = Double.ulpOfOne / 2

        // The coordinates: up to 48 inputs spread over channels (all of them for small cases), then γ and β.
        enum Coordinate { case input(Int), gamma(Int), beta(Int) }
        var rng = Philox(seed: 13, .testData)
        var coordinates = (input.count <= 48 ? Array(0..<input.count) : (0..<48).map { _ in rng.nextBelow(input.count) }).map(Coordinate.input)
        if bn.gamma != nil { coordinates += (0..<input.channels).map(Coordinate.gamma) + (0..<input.channels).map(Coordinate.beta) }
        /// The loss of coordinate k's channel with that coordinate moved by h.
        func shifted(_ coordinate: Coordinate, by h: Double) throws -> (value: Double, magnitude: Double) {
            switch coordinate {
            case .input(let i):
                let saved = x[i]
                x[i] = saved + h
                defer { x[i] = saved }
                return try channelLoss(x, i / m)
            case .gamma(let c), .beta(let c):
                let tensor = { if case .gamma = coordinate { return bn.gamma! } else { return bn.beta! } }()
                let saved = tensor.value[c]
                tensor.value[c] = saved + h
                defer { tensor.value[c] = saved }
                return try channelLoss(x, c)
            }
        }
        func wide(_ coordinate: Coordinate) -> Double {
            if case .input = coordinate { return Tolerances.thirdDifferenceStep * input.scale } else { return Tolerances.thirdDifferenceStep }
        }
        // |f‴| per kind of coordinate, from the five-point third difference at up to 3 coordinates of each kind.
        var thirdDerivative = [String: Double]()
        for (kind, samples) in [("input", coordinates.filter { if case .input = $0 { return true } else { return false } }.prefix(3)),
                                ("parameter", coordinates.filter { if case .input = $0 { return false } else { return true } }.prefix(3))] {
            var worst = 0.0
            for c in samples {
                let h = wide(c)
                let d3 = (try shifted(c, by: 2 * h).value - 2 * shifted(c, by: h).value + 2 * shifted(c, by: -h).value - shifted(c, by: -2 * h).value) / (2 * h * h * h)
                worst = max(worst, abs(d3))
            }
            thirdDerivative[kind] = worst
        }
        var worstRatio = 0.0, worstError = 0.0, worstBound = 0.0, passed = true
        for coordinate in coordinates {
            let kind: String, analytic: Double
            switch coordinate {
            case .input(let i): (kind, analytic) = ("input", dx[i])
            case .gamma(let c): (kind, analytic) = ("parameter", dGamma[c])
            case .beta(let c): (kind, analytic) = ("parameter", dBeta[c])
            }
            let magnitude = try shifted(coordinate, by: 0).magnitude
            let f3 = max(thirdDerivative[kind] ?? 0, .leastNormalMagnitude)
            let scale = wide(coordinate) / Tolerances.thirdDifferenceStep
            let eps = min(max(Foundation.cbrt(3 * u * magnitude / f3), 1e-7 * scale), 0.1 * scale)
            let numeric = (try shifted(coordinate, by: eps).value - shifted(coordinate, by: -eps).value) / (2 * eps)
            let bound = Tolerances.derivedBoundFactor * (eps * eps * f3 / 6 + u * magnitude / eps) + Tolerances.analyticRoundingUnits * u * abs(numeric)
            let error = abs(analytic - numeric)
            let ratio = error / bound
            if !(ratio <= 1) { passed = false }
            if !(ratio <= worstRatio) { (worstRatio, worstError, worstBound) = (ratio, error, bound) }
        }
        return Row(caseName: "", check: "backward vs central differences (\(training ? "train" : "eval"))",
                   worstError: worstError, bound: worstBound, passed: passed)
    }

    /// 3. Running buffers after k training forwards against the recurrence computed here, and eval mode
    /// normalizing with them.
    static func runningBufferCheck(_ input: Input, fault: Fault?) throws -> Row {
        let options = BatchNormOptions.notebook
        let bn: BatchNorm<Double> = makeLayer(input, options, fault: fault)
        let m = input.count / input.channels
        var mean = [Double](repeating: 0, count: input.channels), std = [Double](repeating: 1, count: input.channels)
        var worst = 0.0
        for step in 0..<4 {
            let x = seededValues(input.count, seed: 21, substream: UInt32(step), scale: input.scale * Double(step + 1), offset: input.offset + Double(step))
            let previous = (bn.runningMean!.value, bn.runningStd!.value)
            _ = try bn.forward(FeatureMap(channels: input.channels, batch: input.batch, height: input.height, width: input.width, data: x),
                               training: true)
            afterTrainingForward(bn, previous: previous, fault: fault)
            for c in 0..<input.channels {
                let segment = x[(c * m)..<((c + 1) * m)]
                let mu = segment.reduce(0, +) / Double(m)
                let sd = (segment.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(m - 1)).squareRoot()
                mean[c] = options.momentum * mean[c] + (1 - options.momentum) * mu
                std[c] = options.momentum * std[c] + (1 - options.momentum) * sd
                worst = max(worst, abs(bn.runningMean!.value[c] - mean[c]) / max(abs(mean[c]), 1e-300),
                            abs(bn.runningStd!.value[c] - std[c]) / std[c])
            }
        }
        // Eval uses the buffers.
        let x = seededValues(input.count, seed: 22, substream: 0, scale: input.scale, offset: input.offset)
        let y = try bn.forward(FeatureMap(channels: input.channels, batch: input.batch, height: input.height, width: input.width, data: x),
                               training: false).data
        let reference = formula(x, channels: input.channels, gamma: bn.gamma?.value, beta: bn.beta?.value, epsilon: 0, unbiased: true,
                                mean: mean, std: std)
        for i in y.indices { worst = max(worst, abs(y[i] - reference[i]) / max(abs(reference[i]), 1)) }
        // Float64 recurrences of 4 steps, computed two ways: agreement to ~1e-15; 1e-12 leaves room.
        let bound = 1e-12
        return Row(caseName: "", check: "running buffers vs recurrence, eval uses them", worstError: worst, bound: bound, passed: worst <= bound)
    }

    /// 4. LeNet-5 with BN in Float64 on a batch of 4: central differences on ≥ 200 coordinates spread over
    /// every parameter tensor and the input.
    static func wholeNetworkCheck(fault: Fault?) throws -> Row {
        let net = LeNet5<Double>(normalized: true, batchNorm: fault == .biasedStd ? BatchNormOptions(unbiased: false) : .notebook,
                                 kernels: PortableKernels())
        net.initialize(seed: 5)
        let n = 4, targets = [1, 4, 9, 4]
        var x = seededValues(3 * n * 1024, seed: 31, substream: 0, scale: 1, offset: 0)
        let loss = { (xs: [Double]) throws -> Double in
            let logits = try net.forward(FeatureMap(channels: 3, batch: n, height: 32, width: 32, data: xs), training: true)
            return CrossEntropy.evaluate(logits: logits, targets: targets, kernels: net.kernels, gradient: false).loss
        }
        let logits = try net.forward(FeatureMap(channels: 3, batch: n, height: 32, width: 32, data: x), training: true)
        let ce = CrossEntropy.evaluate(logits: logits, targets: targets, kernels: net.kernels)
        let dx = net.backward(ce.gradient!, inputGradient: true)!.data
        var analytic = [Double](), numeric = [Double]()
        var rng = Philox(seed: 32, .testData)
        for p in net.parameters {
            var grad = p.grad
            if fault == .wrongGammaGradient, p.name.hasSuffix("gamma") { grad = grad.map { $0 * 1.05 } }
            let picks = (0..<min(p.count, 12)).map { _ in rng.nextBelow(p.count) }
            analytic += picks.map { grad[$0] }
            numeric += try GradientCheck.numericGradient(of: { try loss(x) }, wrt: p, indices: picks)
        }
        let picks = (0..<40).map { _ in rng.nextBelow(x.count) }
        analytic += picks.map { dx[$0] }
        numeric += try GradientCheck.numericGradient(of: loss, at: &x, indices: picks)
        let result = GradientCheck.compare(analytic: analytic, numeric: numeric)
        let bound = Tolerances.gradientAbsolute + Tolerances.gradientRelative * abs(numeric[max(result.worstIndex, 0)])
        return Row(caseName: "LeNet-5 + BN, N=4, \(analytic.count) coordinates", check: "whole network vs central differences",
                   worstError: result.worstAbsolute, bound: bound, passed: result.passed && analytic.count >= 200)
    }

    /// Every check on every case. `fault` breaks the layer on purpose (negative controls).
    public static func run(fault: Fault? = nil) throws -> [Row] {
        var rows = [Row]()
        for input in inputs {
            for (variantName, options) in variants {
                // The big model shapes run the notebook variant only: the options change nothing about size.
                if input.batch == 128 && variantName != "notebook" { continue }
                for training in [true, false] {
                    if !training && !options.trackRunningStats && variantName != "running stats off" { continue }
                    var r = try forwardCheck(input, options, training: training, fault: fault)
                    r.caseName = "\(input.label), \(variantName)"
                    rows.append(r)
                    var b = try backwardCheck(input, options, training: training, fault: fault)
                    b.caseName = r.caseName
                    rows.append(b)
                }
            }
            var running = try runningBufferCheck(input, fault: fault)
            running.caseName = "\(input.label), notebook"
            rows.append(running)
        }
        rows.append(try wholeNetworkCheck(fault: fault))
        rows += textbookComparison()
        return rows
    }

    /// Information, not a check: how far the notebook's BN (unbiased σ, ε = 0) is from the textbook one
    /// (biased σ², ε = 1e-5), as the largest |Δy| relative to max |y|, per input.
    static func textbookComparison() -> [Row] {
        inputs.map { input in
            let x = seededValues(input.count, seed: 7, substream: 9, scale: input.scale, offset: input.offset)
            let a = formula(x, channels: input.channels, gamma: nil, beta: nil, epsilon: 0, unbiased: true)
            let b = formula(x, channels: input.channels, gamma: nil, beta: nil, epsilon: 1e-5, unbiased: false)
            let d = zip(a, b).map { abs($0 - $1) }.max()! / a.map(abs).max()!
            return Row(caseName: input.label, check: "info: notebook vs textbook BN, max|Δy|/max|y|", worstError: d,
                       bound: .infinity, passed: true)
        }
    }

    public static func table(_ rows: [Row]) -> String {
        let checks = rows.filter { $0.bound.isFinite }
        var lines = ["BatchNorm checks: \(checks.filter(\.passed).count) of \(checks.count) pass"]
        lines.append("  " + "case".padding(toLength: 52, withPad: " ", startingAt: 0) + " " + "check".padding(toLength: 48, withPad: " ", startingAt: 0)
                     + "  worst error        bound  verdict")
        for r in rows {
            lines.append("  " + r.caseName.padding(toLength: 52, withPad: " ", startingAt: 0) + " "
                         + r.check.padding(toLength: 48, withPad: " ", startingAt: 0)
                         + String(format: "  %11.3e  ", r.worstError) + (r.bound.isFinite ? String(format: "%11.3e  ", r.bound) : "          -  ") + (r.bound.isFinite ? (r.passed ? "pass" : "FAIL") : "info"))
        }
        return lines.joined(separator: "\n")
    }

    public static func json(_ rows: [Row]) -> [[String: Any]] {
        rows.map { r in
            var o: [String: Any] = ["case": r.caseName, "check": r.check, "worst_error": r.worstError, "passed": r.passed]
            if r.bound.isFinite { o["bound"] = r.bound }
            return o
        }
    }
}
