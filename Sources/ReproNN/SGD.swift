import ReproKernels

/// torch.optim.SGD with momentum and weight decay, no dampening, no Nesterov:
///   g = grad + weight_decay·p;  buf = g on the first step, else momentum·buf + g;  p = p − lr·buf
/// applied to every parameter (biases, γ and β included), in the model's parameter order.
public struct SGDOptions: Sendable, Equatable {
    public var learningRate: Double
    public var momentum: Double
    public var weightDecay: Double
    public init(learningRate: Double = 0.01, momentum: Double = 0.9, weightDecay: Double = 1e-6) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
    }
}

public final class SGD<T: KernelScalar> {
    public let options: SGDOptions
    public let parameters: [NamedTensor<T>]
    /// Momentum buffers, one per parameter in `parameters` order; empty until the first step (as PyTorch's
    /// optimizer state is).
    public var momentumBuffers: [[T]]

    public init(parameters: [NamedTensor<T>], options: SGDOptions) {
        self.parameters = parameters
        self.options = options
        momentumBuffers = []
    }

    /// `threads`: a parameter of at least `elementsPerThread` elements per thread is updated in that many
    /// parts at once (fc3.weight's 48,000). Each element's update depends on nothing else, so the parts change
    /// no bit, and the probes need no order.
    @inlinable
    public func step(threads: Int = 1) {
        let rule = startStep()
        inParts(threads: threads) { _, v, g, b, range, _ in rule.update(v, g, b, range) }
    }

    /// `step(threads:)`, also forming each parameter's update probe (new − old, `Probe(differencesOf:from:)`)
    /// as the new values are formed: no copy of the old ones, no second pass; the same bits.
    @inlinable
    public func probedStep(threads: Int = 1) -> [Probe] {
        let rule = startStep(), slots = Swift.max(1, threads)
        var parts = [UpdateProbe](repeating: UpdateProbe(), count: parameters.count * slots)
        parts.withUnsafeMutableBufferPointer { pp in
            nonisolated(unsafe) let pp = pp
            inParts(threads: threads) { index, v, g, b, range, part in rule.probedUpdate(v, g, b, range, into: &pp[index * slots + part]) }
        }
        return parameters.indices.map { index in
            var total = UpdateProbe()
            for part in parts[(index * slots)..<((index + 1) * slots)] { total.merge(part) }
            return total.probe
        }
    }

    /// The step's update rule; the momentum buffers created on the first step (as PyTorch's optimizer state is).
    @inlinable
    func startStep() -> UpdateRule {
        let rule = UpdateRule(options: options, first: momentumBuffers.isEmpty)
        if rule.first { momentumBuffers = parameters.map { [T](repeating: 0, count: $0.count) } }
        return rule
    }

    /// `body(parameter index, value, gradient, momentum buffer, range, part)` for each parameter in order, each
    /// in up to `threads` parts at once.
    @inlinable
    func inParts(threads: Int, _ body: @Sendable (Int, UnsafeMutablePointer<T>, UnsafePointer<T>, UnsafeMutablePointer<T>, Range<Int>, Int) -> Void) {
        for (index, p) in parameters.enumerated() {
            p.value.withUnsafeMutableBufferPointer { v in p.grad.withUnsafeBufferPointer { g in
                momentumBuffers[index].withUnsafeMutableBufferPointer { b in
                    let count = v.count
                    nonisolated(unsafe) let (v, g, b) = (v.baseAddress!, g.baseAddress!, b.baseAddress!)
                    Self.inParts(count, threads: threads) { range, part in body(index, v, g, b, range, part) }
                }
            } }
        }
    }

    /// Below this many elements per thread a parameter is updated on one thread (a parallel call costs ~1 µs).
    public static var elementsPerThread: Int { 16_384 }

    /// `body(range, part)` over 0..<count in up to `threads` parts of whole eights.
    @inlinable
    static func inParts(_ count: Int, threads: Int, _ body: @Sendable (Range<Int>, Int) -> Void) {
        let parts = Swift.max(1, Swift.min(threads, count / elementsPerThread))
        guard parts > 1 else { body(0..<count, 0); return }
        let eights = (count / 8 + parts - 1) / parts
        Parallel.forEach(parts, threads: parts) { range in
            for part in range { body(Swift.min(count, part * 8 * eights)..<(part == parts - 1 ? count : Swift.min(count, (part + 1) * 8 * eights)), part) }
        }
    }

    /// torch.optim.SGD's update of one element, as the notebook's PyTorch computes it in float32 (product, then
    /// sum: never fused).
    @usableFromInline
    struct UpdateRule: Sendable {
        @usableFromInline let lr: T, mu: T, wd: T
        @usableFromInline let first: Bool
        @inlinable init(options: SGDOptions, first: Bool) {
            lr = T(options.learningRate); mu = T(options.momentum); wd = T(options.weightDecay); self.first = first
        }

        @inlinable
        func update(_ v: UnsafeMutablePointer<T>, _ g: UnsafePointer<T>, _ b: UnsafeMutablePointer<T>, _ range: Range<Int>) {
            for i in range {
                let d = g[i] + wd * v[i]
                b[i] = first ? d : mu * b[i] + d
                v[i] = v[i] - lr * b[i]
            }
        }

        /// The same, with the probe: for float32 eight lanes each doing `update`'s operations, the rest one at
        /// a time.
        @inlinable
        func probedUpdate(_ v: UnsafeMutablePointer<T>, _ g: UnsafePointer<T>, _ b: UnsafeMutablePointer<T>, _ range: Range<Int>,
                          into result: inout UpdateProbe) {
            var probe = result  // in registers (through the inout, every addition was stored)
            defer { result = probe }
            var i = range.lowerBound
            if T.self == Float.self {
                typealias V = SIMD8<Float>
                let vr = UnsafeMutableRawPointer(v), gr = UnsafeRawPointer(g), br = UnsafeMutableRawPointer(b)
                let lrv = V(repeating: unsafeBitCast(lr, to: Float.self)), muv = V(repeating: unsafeBitCast(mu, to: Float.self))
                let wdv = V(repeating: unsafeBitCast(wd, to: Float.self))
                var largest = SIMD8<Int64>()
                /// Eight elements at i: their update, stored, and the largest |new − old| so far.
                func eight(_ i: Int) -> (old: V, new: V) {
                    let o = i &* 4
                    let old = vr.loadUnaligned(fromByteOffset: o, as: V.self)
                    let d = gr.loadUnaligned(fromByteOffset: o, as: V.self) + wdv * old
                    let buf = first ? d : muv * br.loadUnaligned(fromByteOffset: o, as: V.self) + d
                    let new = old - lrv * buf
                    br.storeBytes(of: buf, toByteOffset: o, as: V.self)
                    vr.storeBytes(of: new, toByteOffset: o, as: V.self)
                    // |new − old| in Float64, as bits: they order like the magnitudes.
                    let change = unsafeBitCast(Probe.widened(new) - Probe.widened(old), to: SIMD8<Int64>.self) & Int64.max
                    largest = ProbeLanes.max(largest, change)
                    return (old, new)
                }
                // Sixteen at a time, so the probes' sixteen lanes are all used.
                while i + 16 <= range.upperBound {
                    let (old0, new0) = eight(i), (old1, new1) = eight(i &+ 8)
                    probe.before.add(SIMD16(lowHalf: old0, highHalf: old1))
                    probe.after.add(SIMD16(lowHalf: new0, highHalf: new1))
                    i &+= 16
                }
                while i + 8 <= range.upperBound {
                    let (old, new) = eight(i)
                    probe.before.add(SIMD16(lowHalf: old, highHalf: V()))
                    probe.after.add(SIMD16(lowHalf: new, highHalf: V()))
                    i &+= 8
                }
                probe.differences.add(Double(bitPattern: UInt64(largest.max())))
            }
            while i < range.upperBound {
                let old = v[i]
                let d = g[i] + wd * old
                b[i] = first ? d : mu * b[i] + d
                v[i] = old - lr * b[i]
                probe.before.add(old)
                probe.after.add(v[i])
                probe.differences.add(Double(v[i]) - Double(old))
                i += 1
            }
        }
    }

    /// A part of an update probe: the old and new values' probes and the differences'.
    @usableFromInline
    struct UpdateProbe: Sendable {
        @usableFromInline var before = ProbeLanes(), after = ProbeLanes(), differences = ProbeLanes()
        @inlinable init() {}
        @inlinable mutating func merge(_ other: UpdateProbe) {
            before.merge(other.before); after.merge(other.after); differences.merge(other.differences)
        }
        @inlinable var probe: Probe {
            Probe(checksum: after.probe.checksum &- before.probe.checksum, largest: differences.probe.largest)
        }
    }
}
