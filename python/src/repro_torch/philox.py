"""repro's random streams (Sources/ReproNN/Philox.swift), ported word for word.

Philox-4x32-10 (Salmon et al., SC 2011) as a counter-based generator: word i of a stream is a function of
(seed, stream, substream, i). Counter = (block index low 32 bits, block index high 32 bits, stream,
substream), key = the seed's two 32-bit halves; each block gives four 32-bit words, consumed in order.
Integers below a bound are drawn by Lemire's multiply-and-reject; permutations by Fisher–Yates from the top.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

MASK32 = 0xFFFFFFFF

# The streams of one run (RandomStream in Philox.swift).
INITIALIZATION = 1
SPLIT = 2
SHUFFLE = 3
TEST_DATA = 4


def philox4x32_10(counter: Tuple[int, int, int, int], key: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """The bare Philox-4x32-10 bijection (for the published known-answer tests)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_ in range(10):
        if round_ > 0:
            k0 = (k0 + 0x9E3779B9) & MASK32
            k1 = (k1 + 0xBB67AE85) & MASK32
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & MASK32, p1 & MASK32, ((p0 >> 32) ^ c3 ^ k1) & MASK32, p0 & MASK32
    return c0, c1, c2, c3


def _blocks(seed: int, stream: int, substream: int, first: int, count: int) -> np.ndarray:
    """Blocks first ..< first + count as 32-bit words, in order (4·count words), computed on numpy arrays."""
    index = np.arange(first, first + count, dtype=np.uint64)
    c0 = index & np.uint64(MASK32)
    c1 = index >> np.uint64(32)
    c2 = np.full(count, stream, dtype=np.uint64)
    c3 = np.full(count, substream, dtype=np.uint64)
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    m32 = np.uint64(MASK32)
    for round_ in range(10):
        if round_ > 0:
            k0 = (k0 + 0x9E3779B9) & MASK32
            k1 = (k1 + 0xBB67AE85) & MASK32
        p0 = np.uint64(0xD2511F53) * c0  # < 2^64: exact in uint64
        p1 = np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0)) & m32, p1 & m32, \
            ((p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1)) & m32, p0 & m32
    return np.stack([c0, c1, c2, c3], axis=1).reshape(-1)


class Philox:
    """One stream of a run: `next32`, `next_below`, `permutation`, as repro draws them."""

    CHUNK = 4096  # blocks computed at a time

    def __init__(self, seed: int, stream: int, substream: int = 0) -> None:
        self.seed, self.stream, self.substream = seed, stream, substream
        self.position = 0  # 32-bit words consumed
        self._words = np.empty(0, dtype=np.uint64)
        self._first_word = 0

    def next32(self) -> int:
        offset = self.position - self._first_word
        if offset >= len(self._words):
            block = self.position // 4
            self._words = _blocks(self.seed, self.stream, self.substream, block, self.CHUNK)
            self._first_word = block * 4
            offset = self.position - self._first_word
        self.position += 1
        return int(self._words[offset])

    def next_below(self, bound: int) -> int:
        """Uniform in 0 ..< bound (1 ≤ bound ≤ 2³²) without modulo bias (Lemire 2019)."""
        if not 1 <= bound <= 1 << 32:
            raise ValueError(f"bound {bound} outside 1...2^32")
        if bound == 1:
            return 0
        m = self.next32() * bound
        low = m & MASK32
        if low < bound:
            threshold = ((1 << 32) - bound) % bound
            while low < threshold:
                m = self.next32() * bound
                low = m & MASK32
        return m >> 32

    def permutation(self, count: int) -> List[int]:
        """Fisher–Yates of 0 ..< count, j = next_below(i + 1) for i from count − 1 down to 1."""
        p = list(range(count))
        for i in range(count - 1, 0, -1):
            j = self.next_below(i + 1)
            p[i], p[j] = p[j], p[i]
        return p


def train_count(n: int) -> int:
    """The notebook's training share of n samples, int(0.8·n + 1)."""
    return int(n * 0.8 + 1)


def train_validation_split(n: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """torch.utils.data.random_split([int(0.8·n + 1), rest]) as repro draws it: indices into the training file."""
    permutation = np.asarray(Philox(seed, SPLIT).permutation(n), dtype=np.int32)
    k = train_count(n)
    return permutation[:k], permutation[k:]


def epoch_order(train_indices: np.ndarray, epoch: int, seed: int) -> np.ndarray:
    """One epoch's order of the training set (substream = the 0-based epoch), as dataset indices."""
    permutation = np.asarray(Philox(seed, SHUFFLE, substream=epoch).permutation(len(train_indices)), dtype=np.int64)
    return np.asarray(train_indices, dtype=np.int32)[permutation]


def order_digest(order: np.ndarray) -> bytes:
    """SHA-256 of an order's little-endian int32 bytes (`/data/epoch_order_sha256`)."""
    import hashlib

    return hashlib.sha256(np.asarray(order, dtype="<i4").tobytes()).digest()
