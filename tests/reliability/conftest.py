"""Fixtures for the reliability tests: an isolated data folder, no network, a shared
uninterrupted reference run (made by the real ``vaelab train`` in a subprocess), and a
finished tiny run each test gets its own copy of."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.reliability import harness
from tests.reliability.checks import tiny_run


@pytest.fixture(autouse=True)
def _offline_private_data_home(tmp_path, monkeypatch):
    """No test reads the user's dataset cache or reaches the network (in process)."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "vaelab-data"))


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> harness.Reference:
    """One uninterrupted run of ``harness.TRAIN_ARGS`` (fixed seed, CPU, one thread)."""
    root = tmp_path_factory.mktemp("reference")
    return harness.make_reference(root)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A finished one-epoch run (no test evaluation), made once; never changed."""
    return tiny_run(tmp_path_factory.mktemp("finished"), epochs=1)


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    """This test's own copy of the finished run, to break as it likes."""
    return shutil.copytree(finished_run, tmp_path / "run")
