import ReproKernels

/// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a counter-based
/// generator. Word i of a stream is a pure function of (seed, stream, substream, i), so a seed fixes every
/// bit on every machine and a stream's state is just its position.
///
/// Counter layout: (block index low 32 bits, block index high 32 bits, stream, substream); key = the seed's
/// two 32-bit halves. Each block yields four 32-bit words, consumed in order.
public struct Philox: Sendable, Equatable {
    public let seed: UInt64
    public let stream: UInt32
    public let substream: UInt32
    /// Number of 32-bit words consumed so far: the complete state needed to resume.
    public private(set) var position: UInt64
    @usableFromInline var block: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)

    public init(seed: UInt64, stream: UInt32, substream: UInt32 = 0, position: UInt64 = 0) {
        self.seed = seed
        self.stream = stream
        self.substream = substream
        self.position = position
        if position % 4 != 0 { block = Self.block(seed: seed, stream: stream, substream: substream, index: position / 4) }
    }

    public static func == (a: Philox, b: Philox) -> Bool {
        a.seed == b.seed && a.stream == b.stream && a.substream == b.substream && a.position == b.position
    }

    /// The bare Philox-4x32-10 bijection, exposed for the published known-answer tests.
    public static func philox4x32_10(counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32))
        -> (UInt32, UInt32, UInt32, UInt32)
    {
        var c = counter
        var k = key
        for round in 0..<10 {
            if round > 0 { k.0 &+= 0x9E37_79B9; k.1 &+= 0xBB67_AE85 }
            let p0 = UInt64(0xD251_1F53) * UInt64(c.0)
            let p1 = UInt64(0xCD9E_8D57) * UInt64(c.2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            c = (hi1 ^ c.1 ^ k.0, lo1, hi0 ^ c.3 ^ k.1, lo0)
        }
        return c
    }

    static func block(seed: UInt64, stream: UInt32, substream: UInt32, index: UInt64) -> (UInt32, UInt32, UInt32, UInt32) {
        philox4x32_10(
            counter: (UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32), stream, substream),
            key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
    }

    public mutating func next32() -> UInt32 {
        let offset = Int(position % 4)
        if offset == 0 { block = Self.block(seed: seed, stream: stream, substream: substream, index: position / 4) }
        position += 1
        switch offset {
        case 0: return block.0
        case 1: return block.1
        case 2: return block.2
        default: return block.3
        }
    }

    /// Uniform on [0, 1) with 53 random bits: two words, high word first.
    public mutating func nextUnitDouble() -> Double {
        let hi = UInt64(next32()), lo = UInt64(next32())
        return Double((hi << 32 | lo) >> 11) * 0x1p-53
    }

    /// Uniform integer in 0..<bound without modulo bias (Lemire, "Fast random integer generation in an
    /// interval", 2019), from 32-bit words; bound must be in 1...2^32.
    public mutating func nextBelow(_ bound: Int) -> Int {
        precondition(bound > 0 && UInt64(bound) <= UInt64(UInt32.max) + 1)
        if bound == 1 { return 0 }
        let n = UInt64(bound)
        var m = UInt64(next32()) * n
        var low = m & 0xFFFF_FFFF
        if low < n {
            let threshold = (0x1_0000_0000 - n) % n
            while low < threshold {
                m = UInt64(next32()) * n
                low = m & 0xFFFF_FFFF
            }
        }
        return Int(m >> 32)
    }

    /// Fisher–Yates permutation of 0..<count, drawing j = nextBelow(i + 1) for i from count − 1 down to 1.
    public mutating func permutation(_ count: Int) -> [Int32] {
        var p = (0..<count).map { Int32($0) }
        var i = count - 1
        while i > 0 {
            let j = nextBelow(i + 1)
            p.swapAt(i, j)
            i -= 1
        }
        return p
    }
}

/// The independent streams of one run. Changing how one stream is used cannot move another's numbers.
public enum RandomStream: UInt32, Sendable {
    /// Parameter initialization, layers in state_dict order.
    case initialization = 1
    /// The train/validation split.
    case split = 2
    /// Per-epoch shuffles of the training set; the substream is the epoch index (0-based).
    case shuffle = 3
    /// Test inputs (gradient checks, BN checks); never used by training.
    case testData = 4
}

extension Philox {
    public init(seed: UInt64, _ stream: RandomStream, substream: UInt32 = 0) {
        self.init(seed: seed, stream: stream.rawValue, substream: substream)
    }
}
