import Testing
import ReproNN

@Suite struct PhiloxTests {
    // Known-answer vectors from the Random123 distribution (kat_vectors, philox4x32 10 rounds).
    @Test func knownAnswers() {
        let zero = Philox.philox4x32_10(counter: (0, 0, 0, 0), key: (0, 0))
        #expect([zero.0, zero.1, zero.2, zero.3] == [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        let ones = Philox.philox4x32_10(counter: (.max, .max, .max, .max), key: (.max, .max))
        #expect([ones.0, ones.1, ones.2, ones.3] == [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
        let pi = Philox.philox4x32_10(counter: (0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344),
                                      key: (0xa409_3822, 0x299f_31d0))
        #expect([pi.0, pi.1, pi.2, pi.3] == [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1])
    }

    @Test func resumesFromPosition() {
        var a = Philox(seed: 42, .shuffle, substream: 3)
        for _ in 0..<7 { _ = a.next32() }
        var b = Philox(seed: 42, stream: RandomStream.shuffle.rawValue, substream: 3, position: a.position)
        for _ in 0..<9 { #expect(a.next32() == b.next32()) }
    }

    @Test func streamsAreIndependent() {
        var a = Philox(seed: 1, .initialization), b = Philox(seed: 1, .shuffle)
        #expect((0..<8).map { _ in a.next32() } != (0..<8).map { _ in b.next32() })
    }

    @Test func permutationIsAPermutation() {
        var r = Philox(seed: 7, .shuffle)
        let p = r.permutation(1000)
        #expect(Set(p).count == 1000 && p.min() == 0 && p.max() == 999)
        #expect(p != (0..<1000).map { Int32($0) })
    }

    @Test func boundedIntegersAreUnbiasedEnough() {
        var r = Philox(seed: 3, .testData)
        var counts = [Int](repeating: 0, count: 3)
        for _ in 0..<30000 { counts[r.nextBelow(3)] += 1 }
        // Binomial sd ≈ 82: a 5-sd band.
        for c in counts { #expect(abs(c - 10000) < 410) }
    }
}
