"""The Philox port against Random123's known answers, two independent implementations of the bijection,
and every order the committed goldens store (or digest), with negative controls."""
import hashlib

import numpy as np
import pytest

from repro_torch import philox
from repro_torch.orders import rebuild_orders
from repro_torch.record import Record, RecordError

KNOWN_ANSWERS = [  # Random123 kat_vectors, philox4x32 10 rounds
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_known_answers(counter, key, expected):
    assert philox.philox4x32_10(counter, key) == expected


def test_vectorized_blocks_equal_the_scalar_bijection():
    seed = 0x1234_5678_9ABC_DEF0
    words = philox._blocks(seed, philox.SHUFFLE, 7, (1 << 32) - 3, 6)  # across the counter's 32-bit carry
    for b in range(6):
        index = (1 << 32) - 3 + b
        expected = philox.philox4x32_10((index & 0xFFFFFFFF, index >> 32, philox.SHUFFLE, 7), (seed & 0xFFFFFFFF, seed >> 32))
        assert tuple(int(w) for w in words[4 * b: 4 * b + 4]) == expected


def test_words_continue_across_chunks():
    a = philox.Philox(5, philox.SHUFFLE, 2)
    words = [a.next32() for _ in range(4 * philox.Philox.CHUNK + 9)]
    b = philox._blocks(5, philox.SHUFFLE, 2, 0, philox.Philox.CHUNK + 3)
    assert words == [int(w) for w in b[: len(words)]]


def test_next_below_is_lemires_and_unbiased():
    r = philox.Philox(3, philox.TEST_DATA)
    counts = [0, 0, 0]
    for _ in range(30000):
        counts[r.next_below(3)] += 1
    assert all(abs(c - 10000) < 410 for c in counts)  # binomial sd ≈ 82: a 5-sd band
    with pytest.raises(ValueError):
        r.next_below(0)


@pytest.mark.parametrize("name", ["mnist_bn", "mnist"])
def test_every_order_of_the_short_goldens(goldens, name):
    with Record(goldens[name]) as record:
        assert record.epoch_orders is not None  # complete profile: the orders themselves
        orders = rebuild_orders(record)
        assert len(orders) == len(record.epoch_orders) >= 1
        assert all(np.array_equal(o, s) for o, s in zip(orders, record.epoch_orders))


@pytest.mark.parametrize("name", ["mnist_bn_full", "mnist_full"])
def test_every_digest_of_the_full_length_goldens(goldens, name):
    with Record(goldens[name]) as record:
        assert record.epoch_order_digests is not None and len(record.epoch_order_digests) == 50
        orders = rebuild_orders(record)
        assert [hashlib.sha256(o.astype("<i4").tobytes()).digest() for o in orders] == record.epoch_order_digests


def test_negative_controls_another_seed_or_a_biased_draw_is_told_apart(goldens):
    with Record(goldens["mnist_bn"]) as record:
        train, _ = record.split
        stored = record.epoch_orders[0]
        assert not np.array_equal(philox.epoch_order(train, 0, record.config.seed + 1), stored)
        assert not np.array_equal(philox.epoch_order(train, 1, record.config.seed), stored)

        class Modulo(philox.Philox):  # the obvious biased draw: next32 mod bound
            def next_below(self, bound):
                return self.next32() % bound

        biased = np.asarray(Modulo(record.config.seed, philox.SHUFFLE, 0).permutation(len(train)))
        assert not np.array_equal(np.asarray(train)[biased], stored)
