import ReproKernels

/// A place in one training step's execution order: the data, each layer's forward, the loss, each layer's
/// backward (in backward order), each parameter's update. The model emits these as it runs (`StepTrace`),
/// so the order is the model's own, never a table kept beside it.
public struct TracePoint: Hashable, Sendable, CustomStringConvertible {
    public enum Pass: String, Sendable, CaseIterable {
        case data, forward, loss, backward, update
    }

    public enum Quantity: Hashable, Sendable {
        /// The input images (data pass).
        case images
        /// The targets (data pass), as numbers.
        case labels
        /// A layer's forward output (for a BatchNorm layer with its fused ReLU: after the ReLU).
        case output
        /// A statistic a BatchNorm layer's forward computes, recorded elsewhere in full
        /// (`batch_mean`, `batch_std`, `running_mean`, `running_std`).
        case statistic(String)
        /// The batch loss and accuracy (loss pass), recorded elsewhere.
        case loss, accuracy
        /// The gradient flowing into a layer: ∂L/∂(its output).
        case outputGradient
        /// A parameter's gradient after its layer's backward.
        case parameterGradient(String)
        /// The change of a parameter's values by the optimizer step: new − old.
        case update(String)
    }

    public let pass: Pass
    /// The layer ("conv2", "bn1"), "input" for the data, "loss" for the loss, the parameter for updates.
    public let layer: String
    public let quantity: Quantity

    @inlinable
    public init(_ pass: Pass, _ layer: String, _ quantity: Quantity) {
        self.pass = pass
        self.layer = layer
        self.quantity = quantity
    }

    /// Whether the step's probes summarize this point (the others are recorded in full elsewhere).
    public var isProbed: Bool {
        switch quantity {
        case .statistic, .loss, .accuracy: return false
        default: return true
        }
    }

    /// The stored name of a probe point: "<pass>/<layer>/<quantity>" (docs/SCHEMA.md).
    public var key: String {
        let what: String
        switch quantity {
        case .images: what = "images"
        case .labels: what = "labels"
        case .output: what = "output"
        case .statistic(let name): what = name
        case .loss: what = "loss"
        case .accuracy: what = "accuracy"
        case .outputGradient: what = "output_gradient"
        case .parameterGradient(let name): what = "grad:" + name
        case .update(let name): what = "delta:" + name
        }
        return "\(pass.rawValue)/\(layer)/\(what)"
    }

    /// "forward of conv2: output", "backward of bn1: ∂bn1.weight", "update of fc5.bias: new − old".
    public var description: String {
        switch quantity {
        case .images: return "data: input images"
        case .labels: return "data: labels"
        case .loss: return "loss"
        case .accuracy: return "accuracy"
        case .output: return "forward of \(layer): output"
        case .statistic(let name): return "forward of \(layer): \(name)"
        case .outputGradient: return "backward of \(layer): gradient flowing in (∂L/∂output)"
        case .parameterGradient(let name): return "backward of \(layer): ∂\(name)"
        case .update(let name): return "update of \(name): new − old"
        }
    }
}

/// A probe: Σx and Σx² of a tensor, both accumulated in Float64 from its float32 (or Float64) values in
/// one fixed order: the tensor is cut into chunks of `chunkSize` elements; within a chunk, element i goes
/// into lane i mod 16, each lane sequential, then the lanes by halving (`lanes`); the chunks' results are
/// added in chunk order. The chunks of a large tensor may be summed on several threads (`threads`): each
/// chunk's result is the same, and they are still added in chunk order.
/// Cheap enough for every step, and a change of any value by one ULP changes Σx or Σx² in all but
/// contrived cases (float32 values summed in Float64 are often exact outright).
public struct Probe: Equatable, Sendable {
    public var sum: Double
    public var sumOfSquares: Double

    /// 64 Ki elements (256 KiB of float32): a chunk stays in L2. Part of the documented order (the goldens'
    /// probes depend on it), not a tuning knob.
    public static let chunkSize = 1 << 16

    @inlinable
    public init(sum: Double, sumOfSquares: Double) {
        self.sum = sum
        self.sumOfSquares = sumOfSquares
    }

    @inlinable
    public init<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, threads: Int = 1) {
        self = T.self == Float.self
            ? Self.accumulate(FloatTerms(x: UnsafeRawPointer(x.baseAddress), count: x.count), threads: threads)
            : Self.accumulate(ScalarTerms(count: x.count) { Double(x[$0]) })
    }

    /// The probe of a BatchNorm layer's unstored output: each y formed from x̂ as the layer would have stored it
    /// (`affineReLU`), in the documented order; the same bits as the probe of the stored output.
    @inlinable
    public init<T: KernelScalar>(_ y: NormalizedOutput<T>, threads: Int = 1) {
        let m = y.normalized.perChannel
        if T.self == Float.self && m % 16 == 0 {
            // Every 16 terms a chunk's lanes take lie in one channel (chunks and channels start at multiples of 16).
            self = y.normalized.data.withUnsafeBufferPointer { x in y.gamma.withUnsafeBufferPointer { g in y.beta.withUnsafeBufferPointer { b in
                Self.accumulate(NormalizedOutputTerms(x: cast(x.baseAddress!), count: x.count, perChannel: m,
                                                      gamma: cast(g.baseAddress!), beta: cast(b.baseAddress!), affine: y.affine),
                                threads: threads)
            } } }
        } else {
            self = Self.accumulate(ScalarTerms(count: y.normalized.data.count) { Double(y.value($0)) })
        }
    }

    /// The probe of `new[i] − old[i]` (formed in Float64), in the same order as the probe of a tensor
    /// holding those differences.
    @inlinable
    public init<T: KernelScalar>(differencesOf new: UnsafeBufferPointer<T>, from old: UnsafeBufferPointer<T>) {
        self.init(differencesOf: new, fromBytes: UnsafeRawBufferPointer(old))
    }

    /// The same, with the old values as the raw bytes of `T`s (the trace keeps its copies as bytes).
    @inlinable
    init<T: KernelScalar>(differencesOf new: UnsafeBufferPointer<T>, fromBytes old: UnsafeRawBufferPointer) {
        precondition(old.count == new.count * MemoryLayout<T>.stride)
        self = T.self == Float.self
            ? Self.accumulate(FloatDifferenceTerms(new: UnsafeRawPointer(new.baseAddress), old: old.baseAddress, count: new.count))
            : Self.accumulate(ScalarTerms(count: new.count) {
                Double(new[$0]) - Double(old.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.stride, as: T.self))
            })
    }

    /// The documented order over any terms: chunks; in a chunk sixteen lanes (lanes 0–7 and 8–15 as two
    /// vectors, so each addition does not wait on the previous one), the n mod 16 tail into its lanes, the
    /// lanes by halving; the chunks' results in order.
    @inlinable
    static func accumulate<Terms: ProbeTerms>(_ terms: Terms, threads: Int = 1) -> Probe {
        let chunks = (terms.count + chunkSize - 1) / chunkSize
        guard threads > 1 && chunks > 1 else {
            var total = Probe(sum: 0, sumOfSquares: 0)
            for chunk in 0..<chunks { total.add(Self.chunk(chunk, of: terms)) }
            return total
        }
        var results = [Probe](repeating: Probe(sum: 0, sumOfSquares: 0), count: chunks)
        results.withUnsafeMutableBufferPointer { r in
            nonisolated(unsafe) let r = r, terms = terms
            Parallel.forEach(chunks, threads: threads) { range in for chunk in range { r[chunk] = Self.chunk(chunk, of: terms) } }
        }
        var total = Probe(sum: 0, sumOfSquares: 0)
        for result in results { total.add(result) }
        return total
    }

    /// The chunks' results added in order.
    @inlinable
    mutating func add(_ chunk: Probe) {
        sum += chunk.sum
        sumOfSquares += chunk.sumOfSquares
    }

    /// One chunk's Σx and Σx²: its lanes, then the lanes by halving.
    @inlinable
    static func chunk<Terms: ProbeTerms>(_ chunk: Int, of terms: Terms) -> Probe {
        let lower = chunk * chunkSize
        let upper = Swift.min(lower + chunkSize, terms.count), full = lower + (upper - lower) / 16 * 16
        var lanes = ProbeLanes()
        terms.addSixteens(lower..<full, to: &lanes)
        // Registers, not arrays: an array here was four heap allocations per chunk.
        var sl = SIMD16(lowHalf: lanes.s0, highHalf: lanes.s1), ql = SIMD16(lowHalf: lanes.q0, highHalf: lanes.q1)
        for i in full..<upper { let v = terms.term(i); sl[(i - lower) & 15] += v; ql[(i - lower) & 15] += v * v }
        return Probe(sum: Self.lanes(sl), sumOfSquares: Self.lanes(ql))
    }

    /// Sixteen lanes to one by halving: l[i] += l[i + 8], then + l[i + 4], + l[i + 2], then l[0] + l[1].
    @inlinable
    static func lanes(_ l: SIMD16<Double>) -> Double {
        let h8 = l.lowHalf + l.highHalf, h4 = h8.lowHalf + h8.highHalf, h2 = h4.lowHalf + h4.highHalf
        return h2[0] + h2[1]
    }
}

/// A chunk's sixteen lanes of Σx and Σx² (lanes 0–7 and 8–15 as two vectors, so that each addition does not
/// wait on the previous one).
@usableFromInline
struct ProbeLanes {
    @usableFromInline var s0 = SIMD8<Double>(), s1 = SIMD8<Double>(), q0 = SIMD8<Double>(), q1 = SIMD8<Double>()
    @inlinable init() {}

    /// The next sixteen terms, one into each lane.
    @inlinable @inline(__always)
    mutating func add(_ v0: SIMD8<Double>, _ v1: SIMD8<Double>, squaresAreExact: Bool) {
        s0 += v0
        s1 += v1
        // A float32 value's square is exact in Float64 (48 significant bits), so there a fused
        // multiply-add rounds exactly where product-then-sum does: the same bits, and the additions
        // leave the pipes the conversions also need (1.45× faster, measured). A difference's square
        // is not exact: rounded product, then the sum.
        #if REPRO_TARGET_HASWELL
        if squaresAreExact { q0.addProduct(v0, v0); q1.addProduct(v1, v1) } else { q0 += v0 * v0; q1 += v1 * v1 }
        #else
        q0 += v0 * v0
        q1 += v1 * v1
        #endif
    }
}

/// What a probe sums: term i in Float64 singly (the tail), and a chunk's whole sixteens into its lanes.
@usableFromInline
protocol ProbeTerms {
    var count: Int { get }
    func term(_ i: Int) -> Double
    /// Terms range.lowerBound, +16, … (whole sixteens) into the lanes, in order.
    func addSixteens(_ range: Range<Int>, to lanes: inout ProbeLanes)
}

/// Terms read eight at a time: a sixteen is lanes 0–7, then 8–15.
@usableFromInline
protocol EightTerms: ProbeTerms {
    /// Whether every term's square is exact in Float64 (the terms are float32 values).
    static var squaresAreExact: Bool { get }
    func eight(from i: Int) -> SIMD8<Double>
}

extension EightTerms {
    @inlinable @inline(__always)
    func addSixteens(_ range: Range<Int>, to lanes: inout ProbeLanes) {
        var l = lanes  // in registers (through the inout, every addition was stored)
        var i = range.lowerBound
        while i < range.upperBound {
            l.add(eight(from: i), eight(from: i &+ 8), squaresAreExact: Self.squaresAreExact)
            i &+= 16
        }
        lanes = l
    }
}

/// A float32 tensor's values.
@usableFromInline
struct FloatTerms: EightTerms {
    @usableFromInline let x: UnsafeRawPointer?
    @usableFromInline let count: Int
    @inlinable init(x: UnsafeRawPointer?, count: Int) { self.x = x; self.count = count }
    @inlinable static var squaresAreExact: Bool { true }
    @inlinable func term(_ i: Int) -> Double { Double(x!.load(fromByteOffset: 4 * i, as: Float.self)) }
    @inlinable func eight(from i: Int) -> SIMD8<Double> { SIMD8<Double>(x!.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)) }
}

/// A BatchNorm layer's unstored float32 output: y = max(x̂·γ + β, 0) of its channel, sixteen at a time (never
/// across a channel's end: the channel length is a multiple of 16).
@usableFromInline
struct NormalizedOutputTerms: ProbeTerms {
    @usableFromInline let x: UnsafePointer<Float>, gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>
    @usableFromInline let count: Int, perChannel: Int
    @usableFromInline let affine: Bool
    @inlinable init(x: UnsafePointer<Float>, count: Int, perChannel: Int, gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, affine: Bool) {
        self.x = x; self.count = count; self.perChannel = perChannel; self.gamma = gamma; self.beta = beta; self.affine = affine
    }
    @inlinable func term(_ i: Int) -> Double {
        let c = i / perChannel
        return Double(affineReLU(x[i], gamma: gamma[c], beta: beta[c], affine: affine))
    }
    /// x̂·γ + β rounded in float32 as `affineReLU` does, then the ReLU on the exact Float64 values: the same
    /// comparison on the same numbers, so the same terms (on float32 lanes the compiler moved the select
    /// behind the conversion, at ~20 shuffles per 16 terms).
    @inlinable @inline(__always)
    func sixteen(from i: Int, gamma g: SIMD16<Float>, beta b: SIMD16<Float>) -> (SIMD8<Double>, SIMD8<Double>) {
        let h = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        let out = affine ? h * g + b : h
        @inline(__always) func relu(_ v: SIMD8<Double>) -> SIMD8<Double> {
            let cleared = unsafeBitCast(SIMD8<Double>() .>= v, to: SIMD8<UInt64>.self)
            return unsafeBitCast(unsafeBitCast(v, to: SIMD8<UInt64>.self) & ~cleared, to: SIMD8<Double>.self)
        }
        return (relu(SIMD8<Double>(out.lowHalf)), relu(SIMD8<Double>(out.highHalf)))
    }
    /// A channel's stretch at a time, its γ and β loaded once (an integer division per sixteen terms made
    /// this probe 2× slower, measured).
    @inlinable @inline(__always)
    func addSixteens(_ range: Range<Int>, to lanes: inout ProbeLanes) {
        var l = lanes  // in registers (through the inout, every addition was stored)
        var i = range.lowerBound
        while i < range.upperBound {
            let c = i / perChannel, end = Swift.min(range.upperBound, (c + 1) * perChannel)
            let g = SIMD16(repeating: gamma[c]), b = SIMD16(repeating: beta[c])
            while i < end {
                let (v0, v1) = sixteen(from: i, gamma: g, beta: b)
                l.add(v0, v1, squaresAreExact: true)  // float32 values: exact squares
                i &+= 16
            }
        }
        lanes = l
    }
}

/// new − old, formed in Float64, for a float32 parameter and its copy from before the step.
@usableFromInline
struct FloatDifferenceTerms: EightTerms {
    @usableFromInline let new: UnsafeRawPointer?, old: UnsafeRawPointer?
    @usableFromInline let count: Int
    @inlinable init(new: UnsafeRawPointer?, old: UnsafeRawPointer?, count: Int) { self.new = new; self.old = old; self.count = count }
    @inlinable static var squaresAreExact: Bool { false }
    @inlinable func term(_ i: Int) -> Double {
        Double(new!.load(fromByteOffset: 4 * i, as: Float.self)) - Double(old!.load(fromByteOffset: 4 * i, as: Float.self))
    }
    @inlinable func eight(from i: Int) -> SIMD8<Double> {
        SIMD8<Double>(new!.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self))
            - SIMD8<Double>(old!.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self))
    }
}

/// Any other terms (Float64 models, the tests), one at a time.
@usableFromInline
struct ScalarTerms: EightTerms {
    @usableFromInline let count: Int
    @usableFromInline let value: (Int) -> Double
    @inlinable init(count: Int, _ value: @escaping (Int) -> Double) { self.count = count; self.value = value }
    @inlinable static var squaresAreExact: Bool { false }
    @inlinable func term(_ i: Int) -> Double { value(i) }
    @inlinable func eight(from i: Int) -> SIMD8<Double> {
        var v = SIMD8<Double>()
        for l in 0..<8 { v[l] = value(i + l) }
        return v
    }
}

/// Collects one step's trace: the points the model passes, in order, and the probe of each probed point.
/// Set `LeNet5.trace` to one for the steps whose probes are wanted; nil costs nothing.
public final class StepTrace {
    public private(set) var points: [TracePoint] = []
    /// One per probed point, in `points` order (the unprobed points have none).
    public private(set) var probes: [Probe] = []
    /// Only the order of points, no sums (the layout's dry run).
    public let namesOnly: Bool
    /// Threads that may share a large tensor's chunks (the kernels' count: the same bits for any).
    public let threads: Int

    public init(namesOnly: Bool = false, threads: Int = 1) {
        self.namesOnly = namesOnly
        self.threads = max(1, threads)
    }

    /// Empties the trace for the next step.
    public func reset() {
        points.removeAll(keepingCapacity: true)
        probes.removeAll(keepingCapacity: true)
    }

    @inlinable
    public func probe<T: KernelScalar>(_ point: TracePoint, _ values: [T]) {
        values.withUnsafeBufferPointer { probe(point, $0) }
    }

    public func probe<T: KernelScalar>(_ point: TracePoint, _ values: UnsafeBufferPointer<T>) {
        points.append(point)
        probes.append(namesOnly ? Probe(sum: 0, sumOfSquares: 0) : Probe(values, threads: threads))
    }

    /// A BatchNorm layer's unstored output, probed as if stored (`Probe(_: NormalizedOutput)`).
    public func probe<T: KernelScalar>(_ point: TracePoint, _ output: NormalizedOutput<T>) {
        points.append(point)
        probes.append(namesOnly ? Probe(sum: 0, sumOfSquares: 0) : Probe(output, threads: threads))
    }

    /// A point whose values are recorded in full elsewhere (BN statistics, the loss): its place only.
    public func mark(_ point: TracePoint) { points.append(point) }

    /// Keeps the parameters' values before the optimizer step, for the update probes (copies in their own
    /// type, exact, in buffers kept from step to step: no allocation in the step).
    public func parametersWillUpdate<T: KernelScalar>(_ parameters: [NamedTensor<T>]) {
        if parametersBefore.count != parameters.count || zip(parametersBefore, parameters).contains(where: { $0.count != $1.count * MemoryLayout<T>.stride }) {
            parametersBefore = parameters.map { [UInt8](repeating: 0, count: $0.count * MemoryLayout<T>.stride) }
        }
        for (i, p) in parameters.enumerated() {
            p.value.withUnsafeBytes { v in parametersBefore[i].withUnsafeMutableBytes { old in old.copyMemory(from: v) } }
        }
    }

    /// The update pass: for each parameter (in the optimizer's order) the probe of new − old, each
    /// difference formed in Float64 (exact for float32 values within a factor 2^29 of each other).
    public func parametersUpdated<T: KernelScalar>(_ parameters: [NamedTensor<T>]) {
        precondition(parametersBefore.count == parameters.count, "parametersUpdated without parametersWillUpdate")
        for (i, p) in parameters.enumerated() {
            let layer = String(p.name.prefix { $0 != "." })  // "conv1" of "conv1.weight"
            points.append(TracePoint(.update, layer, .update(p.name)))
            probes.append(namesOnly ? Probe(sum: 0, sumOfSquares: 0)
                          : p.value.withUnsafeBufferPointer { v in
                              parametersBefore[i].withUnsafeBytes { Probe(differencesOf: v, fromBytes: $0) }
                          })
        }
    }
    private var parametersBefore: [[UInt8]] = []
}
