"""Fixtures for the data tests: the shared MNIST copy, and no network, no real cache folder."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

# tests/data/conftest.py -> the repository root is two levels up; ../shared sits beside it.
REPO = Path(__file__).resolve().parents[2]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"

REAL_URLOPEN = urllib.request.urlopen


@pytest.fixture(scope="session")
def shared_mnist() -> Path:
    """The real MNIST files (re-gzipped, canonical decompressed bytes) kept beside the repo."""
    if not (SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST} (expected ../shared beside the repo)")
    return SHARED_MNIST


@pytest.fixture(autouse=True)
def _offline_and_private_cache(monkeypatch, tmp_path_factory):
    """No test reaches the network or the user's ~/.cache: downloads fail at once (a test that
    needs a working urlopen asks for ``real_urlopen``) and VAELAB_DATA is a fresh folder."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path_factory.mktemp("vaelab_data_home")))


@pytest.fixture
def real_urlopen(monkeypatch):
    """Undo the network block for a test that only reaches file:// URLs or localhost."""
    monkeypatch.setattr(urllib.request, "urlopen", REAL_URLOPEN)
