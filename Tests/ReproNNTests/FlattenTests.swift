import Testing
import ReproKernels
import ReproNN

/// LeNet-5's flatten (PyTorch's x.view(N, −1) on NCHW) and its inverse, threads taking whole channels: every
/// value where the index formula puts it, for any thread count.
@Suite struct FlattenTests {
    @Test(arguments: [[16, 5, 5, 7], [3, 2, 3, 1], [5, 1, 1, 4], [2, 3, 3, 130]])
    func flattenPutsEveryValueWhereViewPutsIt(shape: [Int]) {
        let (c, h, w, n) = (shape[0], shape[1], shape[2], shape[3])
        let values = (0..<(c * n * h * w)).map { Float($0) }  // all distinct
        let map = FeatureMap(channels: c, batch: n, height: h, width: w, data: values)
        // Channel-major activations: sample j's (ch, y, x) at ((ch·N + j)·H + y)·W + x; feature ch·H·W + y·W + x.
        var expected = [Float](repeating: -1, count: values.count)
        for ch in 0..<c { for j in 0..<n { for y in 0..<h { for x in 0..<w {
            expected[((ch * h + y) * w + x) * n + j] = values[((ch * n + j) * h + y) * w + x]
        } } } }
        for threads in [1, 2, 3] {
            let flat = LeNet5<Float>.flatten(map, threads: threads)
            #expect(flat.channels == c * h * w && flat.batch == n)
            #expect(flat.data == expected, "flatten \(shape), threads \(threads)")
            let back = LeNet5<Float>.unflatten(flat, channels: c, height: h, width: w, threads: threads)
            #expect(back.data == values, "unflatten \(shape), threads \(threads)")
        }
    }
}
