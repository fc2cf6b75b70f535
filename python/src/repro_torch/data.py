"""MNIST as the golden fingerprints it, and the notebook's transform.

The four IDX files are read raw or gzipped, from the folder or torchvision's `MNIST/raw/` below it; each
file's SHA-256 (of the decompressed bytes) must equal the one the golden stores in `/data`.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from typing import Dict

import numpy as np

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DataError(Exception):
    """Missing or wrong data; str() is the one-line message (exit code 2)."""


def _read(folder: str, base: str) -> bytes:
    for directory in (folder, os.path.join(folder, "MNIST", "raw")):
        for name, opener in ((base, open), (base + ".gz", gzip.open)):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                try:
                    with opener(path, "rb") as f:
                        return f.read()
                except (OSError, EOFError) as e:
                    raise DataError(f"{path}: cannot be read ({e})") from None
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: data directory does not exist")
    raise DataError(f"{folder}: no {base} (raw or .gz, here or in MNIST/raw/)")


@dataclass
class MNIST:
    train_images: np.ndarray  # uint8 [60000, 28, 28]
    train_labels: np.ndarray  # uint8 [60000]
    test_images: np.ndarray
    test_labels: np.ndarray
    fingerprints: Dict[str, str]


def load_mnist(folder: str, expected: Dict[str, str]) -> MNIST:
    """The four files, each checked against the golden's fingerprint (`expected`: file → SHA-256)."""
    raw, fingerprints = {}, {}
    for base in FILES:
        data = _read(folder, base)
        fingerprints[base] = hashlib.sha256(data).hexdigest()
        if base in expected and expected[base] != fingerprints[base]:
            raise DataError(f"{folder}: {base} is not the data the golden was recorded on "
                            f"(SHA-256 {fingerprints[base][:16]}…, the golden's {expected[base][:16]}…)")
        magic = int.from_bytes(data[:4], "big")
        if magic not in (0x0801, 0x0803):
            raise DataError(f"{folder}: {base} is not an IDX file (magic {magic:#x})")
        raw[base] = data
    images = lambda b: np.frombuffer(raw[b], dtype=np.uint8, offset=16).reshape(-1, 28, 28)  # noqa: E731
    labels = lambda b: np.frombuffer(raw[b], dtype=np.uint8, offset=8)  # noqa: E731
    return MNIST(images(FILES[0]), labels(FILES[1]), images(FILES[2]), labels(FILES[3]), fingerprints)


def notebook_batch(images: np.ndarray, indices: np.ndarray):
    """ToTensor (pixel/255), zero padding 28→32, three channels, Normalize(0.5, 0.5): float32, as torchvision."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images[np.asarray(indices)].astype(np.float32)).div(255).unsqueeze(1)
    x = F.pad(x, (2, 2, 2, 2), "constant", 0).repeat(1, 3, 1, 1)
    return x.sub(0.5).div(0.5)
