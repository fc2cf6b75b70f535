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
    public func step() {
        let lr = T(options.learningRate), mu = T(options.momentum), wd = T(options.weightDecay)
        let first = momentumBuffers.isEmpty
        if first { momentumBuffers = parameters.map { [T](repeating: 0, count: $0.count) } }
        for (index, p) in parameters.enumerated() {
            p.value.withUnsafeMutableBufferPointer { v in p.grad.withUnsafeBufferPointer { g in
                momentumBuffers[index].withUnsafeMutableBufferPointer { b in
                    for i in v.indices {
                        let d = g[i] + wd * v[i]
                        b[i] = first ? d : mu * b[i] + d
                        v[i] = v[i] - lr * b[i]
                    }
                }
            } }
        }
    }
}
