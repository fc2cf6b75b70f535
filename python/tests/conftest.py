import os
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
try:  # installed (pip install ./python), as ci/python-tests does; else the source tree
    import repro_torch  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(ROOT, "python", "src"))

GOLDENS = {name: os.path.join(ROOT, "Golden", name + ".h5") for name in ("mnist_bn", "mnist", "mnist_bn_full", "mnist_full")}


@pytest.fixture(scope="session")
def goldens():
    return GOLDENS
