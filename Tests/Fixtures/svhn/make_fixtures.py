"""Writes the SVHN .mat fixtures repro's reader is tested on, with independent writers: SciPy's savemat
(MAT level 5, uncompressed and compressed) and hdf5storage (MAT 7.3, which is HDF5 with MATLAB's header).
Also writes what torchvision's SVHN class makes of them, as raw bytes the Swift tests compare with:
expected_<split>.bin = images in torchvision's order, np.transpose(X, (3, 2, 0, 1)) (N x 3 x 32 x 32 uint8),
then the labels with 10 mapped to 0 (N uint8).

Run once from this folder (python3 make_fixtures.py); needs numpy, scipy, hdf5storage. The outputs are committed.
"""
import os

import hdf5storage
import numpy as np
import scipy.io

rng = np.random.default_rng(20261126)
sizes = {"train": 7, "test": 3}
for split, n in sizes.items():
    # Smooth images plus a little noise: small files that still tell every axis apart.
    i, j, c, k = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), np.arange(n), indexing="ij")
    X = ((i * 5 + j * 3 + c * 60 + k * 17 + rng.integers(0, 4, size=i.shape)) % 256).astype(np.uint8)  # 32x32x3xN, as SVHN
    y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)  # 1..10; SVHN stores digit 0 as 10
    y[0, 0] = 10  # make sure the 10 -> 0 mapping is exercised
    name = f"{split}_32x32.mat"
    for folder, write in [
        ("v5", lambda p: scipy.io.savemat(p, {"X": X, "y": y}, do_compression=False)),
        ("v5-compressed", lambda p: scipy.io.savemat(p, {"X": X, "y": y}, do_compression=True)),
        ("v7.3", lambda p: hdf5storage.savemat(p, {"X": X, "y": y}, format="7.3", matlab_compatible=True)),
    ]:
        os.makedirs(folder, exist_ok=True)
        write(os.path.join(folder, name))
    # torchvision.datasets.SVHN: data = np.transpose(X, (3, 2, 0, 1)); labels = y.squeeze(), 10 -> 0.
    images = np.transpose(X, (3, 2, 0, 1)).copy()
    labels = y.astype(np.int64).squeeze(1)
    np.place(labels, labels == 10, 0)
    with open(f"expected_{split}.bin", "wb") as f:
        f.write(images.tobytes())
        f.write(labels.astype(np.uint8).tobytes())
