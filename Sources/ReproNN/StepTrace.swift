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

    /// Whether the point's probe also carries a norm (`Probe.norm`): a parameter's gradient and its update,
    /// where a change spread over many elements (a weight decay, a momentum, a scaled ∂γ) may leave the
    /// largest element within round-off for many steps (docs/verifying.md, "Probes").
    public var hasNorm: Bool {
        switch quantity {
        case .parameterGradient, .update: return true
        default: return false
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

/// A probe: two summaries of a tensor that need no order.
/// - `checksum`: the sum of the values' bit patterns as unsigned 32-bit integers, modulo 2^32 (a float64 value
///   adds its two 32-bit halves). Changing any one value changes it (by the difference of the two bit
///   patterns, never a multiple of 2^32); only changes that cancel exactly (+k in one pattern, −k in another)
///   go unnoticed.
/// - `largest`: the largest magnitude, max |x| (a NaN counts as larger than any number), exact — the
///   summary a tolerance judges, where the bits may legitimately differ.
/// Integer addition and max are associative and commutative, so neither depends on the order, the blocking
/// or the thread that takes a value: a kernel folds the probe of the tensor it produces into its own loops
/// (`ProbeLanes`, partials merged in any order), and no value is converted to Float64 (that conversion
/// alone, one instruction per four values, cost more than the 3% of a step a probe may take, measured).
/// Points with `hasNorm` (a parameter's gradient or update: at most a parameter's size) also carry
/// - `norm`: the Euclidean norm √Σx² in Float64 (an update's differences formed in Float64), summed in one
///   fixed order on one thread (`Probe.norm(of:)`), so no thread count changes it: a summary with a distance
///   that every element moves.
public struct Probe: Equatable, Sendable {
    public var checksum: UInt32
    public var largest: Double
    /// The norm of a point with `TracePoint.hasNorm`, else nil.
    public var norm: Double?

    /// Fewer values than this (64 KiB of float32) are probed on one thread. Any split gives the same probe.
    public static let minimumPerThread = 1 << 14

    @inlinable
    public init(checksum: UInt32, largest: Double, norm: Double? = nil) {
        self.checksum = checksum
        self.largest = largest
        self.norm = norm
    }

    /// √Σx², each square and sum in Float64, in one order for every thread count: element i goes to lane
    /// i mod 8, each lane sums its elements in order, and the lanes are added pairwise. For the sizes it
    /// is used on (≤ 48,000 elements: 6,000 terms a lane) the relative error is below 6,000·2⁻⁵³ ≈ 7·10⁻¹³,
    /// far under float32's resolution.
    @inlinable
    public static func norm<T: KernelScalar>(of x: UnsafeBufferPointer<T>) -> Double {
        if T.self == Float.self, let base = x.baseAddress {
            let p = UnsafeRawPointer(base)
            return norm(count: x.count, eights: { widened(p.loadUnaligned(fromByteOffset: 4 &* $0, as: SIMD8<Float>.self)) },
                        term: { Double(p.load(fromByteOffset: 4 &* $0, as: Float.self)) })
        }
        return norm(count: x.count) { Double(x[$0]) }
    }

    /// √Σ(new − old)², each difference formed in Float64 (exact for float32 values within a factor 2²⁹ of
    /// each other), in `norm(of:)`'s order.
    @inlinable
    public static func norm<T: KernelScalar>(differencesOf new: UnsafeBufferPointer<T>, from old: UnsafeBufferPointer<T>) -> Double {
        precondition(new.count == old.count)
        if T.self == Float.self, let n = new.baseAddress, let o = old.baseAddress {
            let pn = UnsafeRawPointer(n), po = UnsafeRawPointer(o)
            func eight(_ p: UnsafeRawPointer, _ i: Int) -> SIMD8<Double> { widened(p.loadUnaligned(fromByteOffset: 4 &* i, as: SIMD8<Float>.self)) }
            func one(_ p: UnsafeRawPointer, _ i: Int) -> Double { Double(p.load(fromByteOffset: 4 &* i, as: Float.self)) }
            return norm(count: new.count, eights: { eight(pn, $0) - eight(po, $0) }, term: { one(pn, $0) - one(po, $0) })
        }
        return norm(count: new.count) { Double(new[$0]) - Double(old[$0]) }
    }

    /// Eight float32 values as Float64, lane by lane (in SGD's update loop `SIMD8<Double>(_:)` stayed a call per
    /// vector; this form converts in registers wherever it is inlined).
    @inlinable @inline(__always)
    public static func widened(_ v: SIMD8<Float>) -> SIMD8<Double> {
        SIMD8(Double(v[0]), Double(v[1]), Double(v[2]), Double(v[3]), Double(v[4]), Double(v[5]), Double(v[6]), Double(v[7]))
    }

    /// The fixed order: `eights(i)` gives terms i ..< i + 8 at once (the same values as `term`, which gives one).
    @inlinable
    static func norm(count: Int, eights: (Int) -> SIMD8<Double>, term: (Int) -> Double) -> Double {
        var lanes = SIMD8<Double>()
        var i = 0
        while i &+ 8 <= count {
            let v = eights(i)
            lanes = lanes + v * v  // product, then sum: never fused, the same bits in every build
            i &+= 8
        }
        for l in 0..<(count &- i) { let t = term(i &+ l); lanes[l] = lanes[l] + t * t }
        let pairs = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
        return pairs.squareRoot()
    }

    /// The same order, eight terms gathered one at a time (Float64 values).
    @inlinable
    static func norm(count: Int, _ term: (Int) -> Double) -> Double {
        norm(count: count, eights: { i in
            var v = SIMD8<Double>()
            for l in 0..<8 { v[l] = term(i &+ l) }
            return v
        }, term: term)
    }

    @inlinable
    public init<T: KernelScalar>(_ x: UnsafeBufferPointer<T>, threads: Int = 1) {
        if T.self == Float.self {
            self = Self.floats(at: UnsafeRawPointer(x.baseAddress), count: x.count, threads: threads)
        } else {
            var lanes = ProbeLanes()
            for v in x { lanes.add(v) }
            self = lanes.probe
        }
    }

    /// The probe of an update, new − old: the checksum of the new values minus that of the old ones (modulo
    /// 2^32), and the largest |new − old|, each difference formed in Float64 (exact for float32 values
    /// within a factor 2^29 of each other).
    /// One value at a time: the definition `SGD.probedStep()` meets as it updates, eight lanes at a time.
    @inlinable
    public init<T: KernelScalar>(differencesOf new: UnsafeBufferPointer<T>, from oldValues: UnsafeBufferPointer<T>) {
        precondition(oldValues.count == new.count)
        var before = ProbeLanes(), after = ProbeLanes(), differences = ProbeLanes()
        for i in new.indices {
            before.add(oldValues[i])
            after.add(new[i])
            differences.add(Double(new[i]) - Double(oldValues[i]))
        }
        self.init(checksum: after.probe.checksum &- before.probe.checksum, largest: differences.probe.largest)
    }

    /// `count` float32 values shared between up to `threads` threads in equal parts of whole sixteens (at
    /// least `minimumPerThread` values each: below that a second thread costs more than it saves), the
    /// partial results merged (in any order: the same probe).
    @inlinable
    static func floats(at base: UnsafeRawPointer?, count: Int, threads: Int) -> Probe {
        let parts = Swift.max(1, Swift.min(threads, count / minimumPerThread))
        var total = ProbeLanes()
        if parts > 1 {
            let perPart = (count / 16 + parts - 1) / parts * 16
            var partials = [ProbeLanes](repeating: ProbeLanes(), count: parts)
            partials.withUnsafeMutableBufferPointer { r in
                nonisolated(unsafe) let r = r, base = base
                Parallel.forEach(parts, threads: parts) { range in
                    for part in range {
                        let upper = part == parts - 1 ? count : Swift.min(count, (part + 1) * perPart)
                        r[part].add(floatsAt: base, Swift.min(count, part * perPart)..<upper)
                    }
                }
            }
            for p in partials { total.merge(p) }
        } else {
            total.add(floatsAt: base, 0..<count)
        }
        return total.probe
    }
}

/// A probe being formed: sixteen lanes of the checksum and of the largest magnitude's bit pattern (the
/// magnitude of a float32 value orders like its pattern with the sign bit cleared, a signed 32-bit integer
/// ≥ 0, so max needs no floating-point comparison). Partials from any split of a tensor merge into the same
/// probe.
public struct ProbeLanes: Sendable {
    @usableFromInline var sum = SIMD16<UInt32>()
    @usableFromInline var top = SIMD16<Int32>()
    /// Float64 terms (Float64 models, update differences): their own checksum halves and largest magnitude.
    @usableFromInline var scalarSum: UInt32 = 0
    @usableFromInline var scalarTop: UInt64 = 0

    @inlinable public init() {}

    /// Sixteen float32 values.
    @inlinable @inline(__always)
    public mutating func add(_ v: SIMD16<Float>) {
        let bits = unsafeBitCast(v, to: SIMD16<UInt32>.self)
        sum &+= bits
        top = Self.max(top, unsafeBitCast(bits & 0x7fff_ffff, to: SIMD16<Int32>.self))
    }

    /// Lane-wise max: a comparison's mask as bits, then a blend, which the compiler turns into the vector max
    /// instruction (`vpmaxsd`). The standard library's `pointwiseMax` was left an out-of-line call per
    /// vector in the probing loops, and a mask's own `replacing(with:where:)` is per-lane code.
    @inlinable @inline(__always)
    static func max<V: SIMD>(_ a: V, _ b: V) -> V where V.Scalar: FixedWidthInteger & SignedInteger {
        let takeB = unsafeBitCast(a .< b, to: V.self)
        return (a & ~takeB) | (b & takeB)
    }

    /// The float32 values at `base` + 4·i for i in `range` (whole sixteens from its start, then the rest).
    @inlinable @inline(__always)
    public mutating func add(floatsAt base: UnsafeRawPointer?, _ range: Range<Int>) {
        guard let base else { return }
        var l = self  // in registers (through self, every addition was stored)
        var i = range.lowerBound
        while i &+ 16 <= range.upperBound {
            l.add(base.loadUnaligned(fromByteOffset: 4 &* i, as: SIMD16<Float>.self))
            i &+= 16
        }
        while i < range.upperBound { l.add(base.load(fromByteOffset: 4 &* i, as: Float.self)); i &+= 1 }
        self = l
    }

    /// The values of a buffer of any type.
    @inlinable
    public mutating func add<T: KernelScalar>(_ x: UnsafeBufferPointer<T>) {
        if T.self == Float.self {
            add(floatsAt: UnsafeRawPointer(x.baseAddress), 0..<x.count)
        } else {
            for v in x { add(v) }
        }
    }

    /// One value of any type (float32 into lane 0, Float64 as its two 32-bit halves).
    @inlinable
    public mutating func add<T: KernelScalar>(_ v: T) {
        if T.self == Float.self {
            let bits = unsafeBitCast(v, to: UInt32.self)
            sum[0] &+= bits
            top[0] = Swift.max(top[0], Int32(bitPattern: bits & 0x7fff_ffff))
        } else {
            let bits = Double(v).bitPattern
            scalarSum &+= UInt32(truncatingIfNeeded: bits) &+ UInt32(truncatingIfNeeded: bits >> 32)
            scalarTop = Swift.max(scalarTop, bits & 0x7fff_ffff_ffff_ffff)
        }
    }

    @inlinable
    public mutating func merge(_ other: ProbeLanes) {
        sum &+= other.sum
        top = Self.max(top, other.top)
        scalarSum &+= other.scalarSum
        scalarTop = Swift.max(scalarTop, other.scalarTop)
    }

    @inlinable
    public var probe: Probe {
        let floatTop = Double(Float(bitPattern: UInt32(bitPattern: top.max())))
        let doubleTop = Double(bitPattern: scalarTop)
        let largest = floatTop.isNaN || doubleTop.isNaN ? Double.nan : Swift.max(floatTop, doubleTop)
        return Probe(checksum: sum.wrappedSum() &+ scalarSum, largest: largest)
    }
}

/// The probes of two tensors a layer forms channel by channel (its input and output; the gradient flowing in
/// and ∂L/∂x): each channel's own, merged at the end, so any split of the channels between threads forms the
/// same two probes.
public struct ChannelProbes {
    @usableFromInline var lanes: [ProbeLanes]
    @usableFromInline let channels: Int

    @inlinable
    public init(channels: Int) {
        self.channels = channels
        lanes = [ProbeLanes](repeating: ProbeLanes(), count: 2 * channels)
    }

    /// Where channel c's two probes are formed.
    public struct Slots: @unchecked Sendable {
        @usableFromInline let base: UnsafeMutablePointer<ProbeLanes>, channels: Int
        @inlinable init(base: UnsafeMutablePointer<ProbeLanes>, channels: Int) { self.base = base; self.channels = channels }
        @inlinable
        public func callAsFunction(_ c: Int) -> (UnsafeMutablePointer<ProbeLanes>, UnsafeMutablePointer<ProbeLanes>) {
            (base + c, base + channels + c)
        }
    }

    /// `body` with the slots of `probes` (nil when there are none to form).
    @inlinable
    public static func with<R>(_ probes: inout ChannelProbes?, _ body: (Slots?) -> R) -> R {
        guard probes != nil else { return body(nil) }
        let channels = probes!.channels
        return probes!.lanes.withUnsafeMutableBufferPointer { body(Slots(base: $0.baseAddress!, channels: channels)) }
    }

    /// The two probes, each channel's merged.
    @inlinable
    public var probes: (Probe, Probe) {
        var first = ProbeLanes(), second = ProbeLanes()
        for c in 0..<channels { first.merge(lanes[c]); second.merge(lanes[channels + c]) }
        return (first.probe, second.probe)
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
        guard !namesOnly else { probes.append(Probe(checksum: 0, largest: 0)); return }
        var probe = Probe(values, threads: threads)
        if point.hasNorm { probe.norm = Probe.norm(of: values) }
        probes.append(probe)
    }

    /// A probe the layer that produced the tensor formed itself (in its own loops; the same probe).
    public func record(_ point: TracePoint, _ probe: Probe) {
        points.append(point)
        probes.append(namesOnly ? Probe(checksum: 0, largest: 0) : probe)
    }

    /// A point whose values are recorded in full elsewhere (BN statistics, the loss): its place only.
    public func mark(_ point: TracePoint) { points.append(point) }

    /// The update pass: for each parameter (in the optimizer's order) the probe of new − old, which the
    /// optimizer formed (`SGD.probedStep()`), with the norm of new − old (`old`: the values before the step).
    public func updated<T: KernelScalar>(_ parameters: [NamedTensor<T>], probes updates: [Probe], old: [[T]]) {
        precondition(updates.count == parameters.count && old.count == parameters.count, "an update probe per parameter")
        for (i, (p, probe)) in zip(parameters, updates).enumerated() {
            let layer = String(p.name.prefix { $0 != "." })  // "conv1" of "conv1.weight"
            points.append(TracePoint(.update, layer, .update(p.name)))
            guard !namesOnly else { probes.append(Probe(checksum: 0, largest: 0)); continue }
            var probe = probe
            probe.norm = p.value.withUnsafeBufferPointer { new in old[i].withUnsafeBufferPointer { Probe.norm(differencesOf: new, from: $0) } }
            probes.append(probe)
        }
    }
}
