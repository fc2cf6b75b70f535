/// An independent, deliberately naive Float64 LeNet-5 forward pass in PyTorch's NCHW layout, sharing no
/// code with the engine: direct convolution loops, BN straight from the notebook's formula, log-softmax
/// by definition. Used to check the engine's loss and, through finite differences, its gradients.
struct ReferenceLeNet {
    var params: [String: [Double]]
    var normalized: Bool

    static func conv(_ x: [Double], n: Int, c: Int, h: Int, w: Int, weight: [Double], bias: [Double], oc: Int, k: Int) -> [Double] {
        let oh = h - k + 1, ow = w - k + 1
        var y = [Double](repeating: 0, count: n * oc * oh * ow)
        for b in 0..<n { for o in 0..<oc { for r in 0..<oh { for q in 0..<ow {
            var s = bias[o]
            for ci in 0..<c { for i in 0..<k { for j in 0..<k {
                s += weight[((o * c + ci) * k + i) * k + j] * x[((b * c + ci) * h + r + i) * w + q + j]
            } } }
            y[((b * oc + o) * oh + r) * ow + q] = s
        } } } }
        return y
    }

    /// Notebook BN in training mode: per channel over (N, H, W), unbiased std, no epsilon, γ = 1, β = 0 here
    /// unless given.
    static func batchNorm(_ x: [Double], n: Int, c: Int, hw: Int, gamma: [Double], beta: [Double]) -> [Double] {
        var y = x
        for ch in 0..<c {
            var vals = [Double]()
            for b in 0..<n { for s in 0..<hw { vals.append(x[(b * c + ch) * hw + s]) } }
            let mean = vals.reduce(0, +) / Double(vals.count)
            let std = (vals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(vals.count - 1)).squareRoot()
            for b in 0..<n { for s in 0..<hw {
                let i = (b * c + ch) * hw + s
                y[i] = (x[i] - mean) / std * gamma[ch] + beta[ch]
            } }
        }
        return y
    }

    static func reluPool(_ x: [Double], n: Int, c: Int, h: Int, w: Int) -> [Double] {
        var y = [Double](repeating: 0, count: n * c * (h / 2) * (w / 2))
        for p in 0..<(n * c) { for r in 0..<(h / 2) { for q in 0..<(w / 2) {
            let v = [x[p * h * w + 2 * r * w + 2 * q], x[p * h * w + 2 * r * w + 2 * q + 1],
                     x[p * h * w + (2 * r + 1) * w + 2 * q], x[p * h * w + (2 * r + 1) * w + 2 * q + 1]]
            y[(p * (h / 2) + r) * (w / 2) + q] = max(v.max()!, 0)
        } } }
        return y
    }

    static func linear(_ x: [Double], n: Int, inF: Int, weight: [Double], bias: [Double], outF: Int) -> [Double] {
        var y = [Double](repeating: 0, count: n * outF)
        for b in 0..<n { for o in 0..<outF {
            var s = bias[o]
            for i in 0..<inF { s += weight[o * inF + i] * x[b * inF + i] }
            y[b * outF + o] = s
        } }
        return y
    }

    /// Mean cross-entropy of the training-mode forward on NCHW input [n, 3, 32, 32].
    func loss(_ x: [Double], n: Int, targets: [Int]) -> Double {
        let p = params
        var a = Self.conv(x, n: n, c: 3, h: 32, w: 32, weight: p["conv1.weight"]!, bias: p["conv1.bias"]!, oc: 6, k: 5)
        if normalized { a = Self.batchNorm(a, n: n, c: 6, hw: 784, gamma: p["bn1.gamma"]!, beta: p["bn1.beta"]!) }
        a = Self.reluPool(a, n: n, c: 6, h: 28, w: 28)
        a = Self.conv(a, n: n, c: 6, h: 14, w: 14, weight: p["conv2.weight"]!, bias: p["conv2.bias"]!, oc: 16, k: 5)
        if normalized { a = Self.batchNorm(a, n: n, c: 16, hw: 100, gamma: p["bn2.gamma"]!, beta: p["bn2.beta"]!) }
        a = Self.reluPool(a, n: n, c: 16, h: 10, w: 10)   // NCHW flattened per sample = PyTorch's view(N, -1)
        a = Self.linear(a, n: n, inF: 400, weight: p["fc3.weight"]!, bias: p["fc3.bias"]!, outF: 120)
        if normalized { a = Self.batchNorm(a, n: n, c: 120, hw: 1, gamma: p["bn3.gamma"]!, beta: p["bn3.beta"]!) }
        a = a.map { max($0, 0) }
        a = Self.linear(a, n: n, inF: 120, weight: p["fc4.weight"]!, bias: p["fc4.bias"]!, outF: 84)
        if normalized { a = Self.batchNorm(a, n: n, c: 84, hw: 1, gamma: p["bn4.gamma"]!, beta: p["bn4.beta"]!) }
        a = a.map { max($0, 0) }
        a = Self.linear(a, n: n, inF: 84, weight: p["fc5.weight"]!, bias: p["fc5.bias"]!, outF: 10)
        var total = 0.0
        for b in 0..<n {
            let z = Array(a[(b * 10)..<(b * 10 + 10)])
            let m = z.max()!
            let lse = m + Foundation.log(z.map { Foundation.exp($0 - m) }.reduce(0, +))
            total += lse - z[targets[b]]
        }
        return total / Double(n)
    }
}

import Foundation
