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

    @inlinable
    public func step() { _ = step(probing: false) }

    /// The step; with `probing`, also each parameter's update probe (new − old, `Probe(differencesOf:from:)`),
    /// formed as the new values are: no copy of the old ones, no second pass.
    @inlinable
    public func step(probing: Bool) -> [Probe] {
        let lr = T(options.learningRate), mu = T(options.momentum), wd = T(options.weightDecay)
        let first = momentumBuffers.isEmpty
        if first { momentumBuffers = parameters.map { [T](repeating: 0, count: $0.count) } }
        var probes = [Probe]()
        for (index, p) in parameters.enumerated() {
            var before = ProbeLanes(), after = ProbeLanes(), differences = ProbeLanes()
            p.value.withUnsafeMutableBufferPointer { v in p.grad.withUnsafeBufferPointer { g in
                momentumBuffers[index].withUnsafeMutableBufferPointer { b in
                    var i = 0
                    if probing, T.self == Float.self {
                        // Eight lanes doing the scalar loop's operations (the same bits), the probe alongside.
                        typealias V = SIMD8<Float>
                        let vr = UnsafeMutableRawPointer(v.baseAddress!), gr = UnsafeRawPointer(g.baseAddress!)
                        let br = UnsafeMutableRawPointer(b.baseAddress!)
                        let lrv = V(repeating: unsafeBitCast(lr, to: Float.self)), muv = V(repeating: unsafeBitCast(mu, to: Float.self))
                        let wdv = V(repeating: unsafeBitCast(wd, to: Float.self))
                        var largest = SIMD8<Int64>()
                        while i + 8 <= v.count {
                            let o = i &* 4
                            let old = vr.loadUnaligned(fromByteOffset: o, as: V.self)
                            let d = gr.loadUnaligned(fromByteOffset: o, as: V.self) + wdv * old
                            let buf = first ? d : muv * br.loadUnaligned(fromByteOffset: o, as: V.self) + d
                            let new = old - lrv * buf
                            br.storeBytes(of: buf, toByteOffset: o, as: V.self)
                            vr.storeBytes(of: new, toByteOffset: o, as: V.self)
                            before.add(SIMD16(lowHalf: old, highHalf: V()))
                            after.add(SIMD16(lowHalf: new, highHalf: V()))
                            let change = unsafeBitCast(SIMD8<Double>(new) - SIMD8<Double>(old), to: SIMD8<Int64>.self) & Int64.max
                            largest = ProbeLanes.max(largest, change)
                            i &+= 8
                        }
                        differences.add(Double(bitPattern: UInt64(largest.max())))
                    }
                    while i < v.count {
                        let old = v[i]
                        let d = g[i] + wd * old
                        b[i] = first ? d : mu * b[i] + d
                        v[i] = old - lr * b[i]
                        if probing {
                            before.add(old)
                            after.add(v[i])
                            differences.add(Double(v[i]) - Double(old))
                        }
                        i += 1
                    }
                }
            } }
            if probing { probes.append(Probe(checksum: after.probe.checksum &- before.probe.checksum, largest: differences.probe.largest)) }
        }
        return probes
    }
}
