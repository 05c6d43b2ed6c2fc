import os
from pathlib import Path

import pytest

# vaelab sets a short OpenMP spin before torch is first imported (see vaelab/__init__.py); a
# test module importing torch first would otherwise get libgomp's long spin, and every
# in-process training run then slows several-fold whenever the other core is busy.
import vaelab  # noqa: F401  (for its environment setting, before torch)

# isort: split
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Every test starts from the same RNG state and a small thread count (CI has 2 cores)."""
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture
def shared_mnist() -> Path:
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"shared MNIST not found at {SHARED_MNIST}")
    return SHARED_MNIST
