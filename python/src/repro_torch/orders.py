"""A record's data order rebuilt from its seed (the Philox port) and checked against what it stores."""
from __future__ import annotations

from typing import List

import numpy as np

from .philox import epoch_order, order_digest, train_validation_split
from .record import Record, RecordError


def epochs_started(record: Record) -> int:
    """The epochs a record's run started: its stored orders or digests, one per epoch."""
    orders = record.epoch_orders
    return len(orders) if orders is not None else len(record.epoch_order_digests or [])


def rebuild_orders(record: Record) -> List[np.ndarray]:
    """The split and every epoch's order, from the record's seed, checked against the record: stored orders
    element for element, digests by SHA-256. Raises RecordError naming the first that differs."""
    seed, n = record.config.seed, record.train_samples
    train, validation = train_validation_split(n, seed)
    stored_train, stored_validation = record.split
    if not np.array_equal(train, stored_train) or not np.array_equal(validation, stored_validation):
        raise RecordError(f"{record.path}: /data/split: not the split seed {seed} draws (another seed or another generator)")
    stored = record.epoch_orders
    digests = record.epoch_order_digests
    orders = []
    for epoch in range(epochs_started(record)):
        order = epoch_order(train, epoch, seed)
        if stored is not None and not np.array_equal(order, stored[epoch]):
            raise RecordError(f"{record.path}: /data/epoch_order[{epoch}]: not the order seed {seed} draws for epoch {epoch}")
        if digests is not None and order_digest(order) != digests[epoch]:
            raise RecordError(f"{record.path}: /data/epoch_order_sha256[{epoch}]: not the digest of the order seed {seed} draws for epoch {epoch}")
        orders.append(order)
    return orders
