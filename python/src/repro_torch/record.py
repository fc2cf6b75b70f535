"""Reading a repro record (docs/SCHEMA.md) for replay in PyTorch.

A record is opened only after its checksum matches: the 512-byte user block holds
"repro-record sha256=<64 hex>\\n", the SHA-256 of every byte after it. Anything unusable raises
`RecordError` with one line naming the file and what is wrong (the CLI turns it into exit code 2).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

USER_BLOCK = 512
CHECKSUM_PREFIX = b"repro-record sha256="
READABLE_VERSIONS = (4, 5, 6)


class RecordError(Exception):
    """A record that cannot be used; str() is the one-line message."""


def check_bytes(path: str) -> None:
    """The user block's SHA-256 against the bytes after it, before anything parses the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(USER_BLOCK)
            if not head:
                raise RecordError(f"{path}: empty file")
            if head.startswith(b"version https://git-lfs"):
                raise RecordError(f"{path}: a Git LFS pointer, not the record (run git lfs pull)")
            if len(head) < USER_BLOCK or not head.startswith(CHECKSUM_PREFIX):
                raise RecordError(f"{path}: not a repro record (no '{CHECKSUM_PREFIX.decode()}' user block)")
            stated = head[len(CHECKSUM_PREFIX):len(CHECKSUM_PREFIX) + 64].decode("ascii", "replace")
            digest = hashlib.sha256()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RecordError(f"{path}: is a directory") from None
    except OSError as e:
        raise RecordError(f"{path}: cannot be read ({e.strerror})") from None
    if digest.hexdigest() != stated:
        raise RecordError(f"{path}: checksum mismatch (the file is damaged or truncated): stated {stated}, computed {digest.hexdigest()}")


@dataclass(frozen=True)
class Config:
    """`/config`: what determines the numbers."""

    name: str
    dataset: str
    norm: bool
    seed: int
    batch_size: int
    learning_rate: float
    momentum: float
    weight_decay: float
    epochs: int
    max_steps: int
    checkpoint_every: int
    evaluation_limit: int
    profile: str
    kernels: str
    bn_momentum: float
    bn_epsilon: float
    bn_unbiased: bool
    window_steps: int  # ≤ 0: windows reach from checkpoint to checkpoint


def _attribute(attrs: Any, name: str, kind: type, path: str, where: str) -> Any:
    if name not in attrs:
        raise RecordError(f"{path}: {where}@{name}: missing")
    value = attrs[name]
    if kind is str:
        if not isinstance(value, (bytes, np.bytes_)):
            raise RecordError(f"{path}: {where}@{name}: not a string")
        return bytes(value).decode("utf-8")
    if kind is float:
        if not isinstance(value, (np.floating, float)):
            raise RecordError(f"{path}: {where}@{name}: not a float64")
        return float(value)
    if not isinstance(value, (np.integer, int)):
        raise RecordError(f"{path}: {where}@{name}: not an integer")
    return int(value)


class Record:
    """A checked record: its configuration, split and epoch orders (or their digests)."""

    def __init__(self, path: str) -> None:
        import h5py

        self.path = path
        self._contains: Dict[str, bool] = {}
        check_bytes(path)
        try:
            self._file = h5py.File(path, "r")
        except OSError as e:
            raise RecordError(f"{path}: not an HDF5 file libhdf5 can open ({e})") from None
        f = self._file
        if _attribute(f.attrs, "format", str, path, "/") != "repro-record":
            raise RecordError(f"{path}: /@format: not 'repro-record'")
        self.schema_version = _attribute(f.attrs, "schema_version", int, path, "/")
        if self.schema_version not in READABLE_VERSIONS:
            raise RecordError(f"{path}: /@schema_version: {self.schema_version}, readable: {', '.join(map(str, READABLE_VERSIONS))}")
        if "config" not in f:
            raise RecordError(f"{path}: /config: missing")
        a = f["config"].attrs
        get = lambda name, kind: _attribute(a, name, kind, path, "/config")  # noqa: E731
        self.config = Config(
            name=get("name", str), dataset=get("dataset", str), norm=bool(get("norm", int)), seed=get("seed", int),
            batch_size=get("batch_size", int), learning_rate=get("learning_rate", float), momentum=get("momentum", float),
            weight_decay=get("weight_decay", float), epochs=get("epochs", int), max_steps=get("max_steps", int),
            checkpoint_every=get("checkpoint_every", int), evaluation_limit=get("evaluation_limit", int),
            profile=get("profile", str), kernels=get("kernels", str), bn_momentum=get("bn_momentum", float),
            bn_epsilon=get("bn_epsilon", float), bn_unbiased=bool(get("bn_unbiased", int)), window_steps=get("window_steps", int))
        if self.config.profile not in ("complete", "golden"):
            raise RecordError(f"{path}: /config@profile: '{self.config.profile}', expected complete or golden")
        self.train_samples = _attribute(f["data"].attrs, "train_samples", int, path, "/data")
        self.fingerprints: Dict[str, str] = {
            k[: -len("_sha256")]: bytes(v).decode() for k, v in f["data"].attrs.items() if k.endswith("_sha256")}
        from .plan import Plan

        c = self.config
        positive = lambda v: v if v > 0 else None  # noqa: E731
        self.plan = Plan(self.train_samples, c.batch_size, c.epochs, positive(c.max_steps), positive(c.checkpoint_every),
                         positive(c.window_steps))
        self.replicas = int(f["envelope"].attrs["replicas"]) if "envelope" in f else None
        points = f["/steps/probes"].attrs.get("points") if "/steps/probes" in f else None
        self.probe_points: List[str] = bytes(points).decode().split("\n") if points is not None else []

    def __contains__(self, dataset: str) -> bool:
        # Asked per step and value: remembered (the file is open read-only, so the answer cannot change).
        known = self._contains.get(dataset)
        if known is None:
            known = self._contains[dataset] = dataset in self._file
        return known

    def dataset(self, path: str):
        if path not in self._file:
            raise RecordError(f"{self.path}: {path}: missing")
        return self._file[path]

    def envelope_codes(self, path: str):
        """The envelope's codes of a dataset (an h5py dataset of uint8), or None."""
        key = "/envelope" + path
        return self._file[key] if key in self._file else None

    def kept(self, step: int) -> bool:
        """Whether the golden keeps step's BatchNorm series and probes (the golden profile: inside windows)."""
        p = self.plan
        if self.config.profile == "complete" or not p.window_steps:
            return True
        start = 0 if step <= 0 else (step - 1) // p.checkpoint_every * p.checkpoint_every
        return start < step <= start + p.window_steps

    def is_checkpoint(self, step: int) -> bool:
        return step in self.plan.checkpoint_steps

    def checkpoint(self, step: int) -> Dict[str, np.ndarray]:
        """The state_dict stored at a checkpoint, in the file's (name) order."""
        group = f"/checkpoints/{step:08d}/model"
        return {name: np.asarray(d[()], dtype=np.float32) for name, d in self.dataset(group).items()}

    def momentum_buffers(self, step: int) -> Dict[str, np.ndarray]:
        group = f"/checkpoints/{step:08d}/optimizer/momentum_buffer"
        return {name: np.asarray(d[()], dtype=np.float32) for name, d in self.dataset(group).items()}

    def array(self, dataset: str, dtype: Optional[str] = None) -> np.ndarray:
        if dataset not in self._file:
            raise RecordError(f"{self.path}: {dataset}: missing")
        values = self._file[dataset][()]
        return values if dtype is None else np.asarray(values, dtype=dtype)

    @property
    def split(self) -> tuple:
        return self.array("/data/split/train_indices", "int32"), self.array("/data/split/val_indices", "int32")

    @property
    def epoch_orders(self) -> Optional[np.ndarray]:
        """[epochs started, n_train] dataset indices (complete profile), else None."""
        return self.array("/data/epoch_order", "int32") if "/data/epoch_order" in self._file else None

    @property
    def epoch_order_digests(self) -> Optional[List[bytes]]:
        """SHA-256 of each epoch's order (golden profile), else None."""
        if "/data/epoch_order_sha256" not in self._file:
            return None
        return [bytes(row) for row in self.array("/data/epoch_order_sha256", "uint8")]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "Record":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

