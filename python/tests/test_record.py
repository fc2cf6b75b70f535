"""Damaged and unusable records are refused with one line naming the file (the CLI's exit code 2)."""
import shutil

import pytest

from repro_torch.orders import rebuild_orders
from repro_torch.record import Record, RecordError


def test_a_golden_opens_with_its_configuration(goldens):
    with Record(goldens["mnist_bn"]) as r:
        assert (r.config.seed, r.config.batch_size, r.config.norm, r.config.max_steps) == (0, 128, True, 256)
        assert r.schema_version == 6 and r.train_samples == 60000


def copy(goldens, tmp_path, name="copy.h5"):
    path = tmp_path / name
    shutil.copy(goldens["mnist"], path)
    return str(path)


def test_one_damaged_byte_is_refused(goldens, tmp_path):
    path = copy(goldens, tmp_path)
    with open(path, "r+b") as f:
        f.seek(100_000)
        byte = f.read(1)
        f.seek(100_000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(RecordError, match=r"copy\.h5: checksum mismatch"):
        Record(path)


def test_truncated_empty_missing_and_foreign_files_are_refused(goldens, tmp_path):
    path = copy(goldens, tmp_path)
    with open(path, "r+b") as f:
        f.truncate(200_000)
    with pytest.raises(RecordError, match="checksum mismatch"):
        Record(path)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(RecordError, match="empty file"):
        Record(str(empty))
    with pytest.raises(RecordError, match="no such file"):
        Record(str(tmp_path / "none.h5"))
    foreign = tmp_path / "foreign.h5"
    foreign.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(1024))
    with pytest.raises(RecordError, match="not a repro record"):
        Record(str(foreign))


def test_a_record_whose_split_another_seed_drew_is_refused(goldens, tmp_path):
    """Well-formed, checksum restamped, but it says the wrong thing: the split is not the seed's."""
    import hashlib

    import h5py

    path = copy(goldens, tmp_path)
    with h5py.File(path, "r+") as f:
        t = f["/data/split/train_indices"]
        t[0], t[1] = t[1], t[0]
    with open(path, "r+b") as f:
        f.seek(512)
        digest = hashlib.sha256(f.read()).hexdigest()
        f.seek(len(b"repro-record sha256="))
        f.write(digest.encode())
    with Record(path) as r:  # the checksum holds again
        with pytest.raises(RecordError, match=r"/data/split: not the split seed 0 draws"):
            rebuild_orders(r)
