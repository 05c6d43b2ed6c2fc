"""The files of a run directory, and the checks before a run starts in one.

* ``config.json`` — the model class and config (``VAE.load(run)`` works on it), the resolved
  run configuration under ``"run"`` and how the data was prepared under ``"data"``;
* ``model.safetensors`` — the best weights so far (by validation ELBO);
* ``checkpoint.safetensors`` — the full training state, written atomically, for ``--resume``;
* ``metrics.jsonl`` — one JSON line per finished epoch;
* ``eval_test.json``, ``samples.png``, ``reconstructions.png`` after the run.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from vaelab.errors import CheckpointError
from vaelab.models.base import CONFIG_FILE, WEIGHTS_FILE

CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval_test.json"
TENSORBOARD_DIR = "tensorboard"
RUN_FILES = (CONFIG_FILE, WEIGHTS_FILE, CHECKPOINT_FILE, METRICS_FILE, EVAL_FILE)

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "EVAL_FILE",
    "METRICS_FILE",
    "RUN_FILES",
    "TENSORBOARD_DIR",
    "WEIGHTS_FILE",
    "check_new_run_dir",
    "prepare_new_run_dir",
    "stale_temp_files",
]


def stale_temp_files(run_dir: Path) -> list[Path]:
    """Temporary files of atomic writes a crash interrupted (``vaelab.io.atomic_write_bytes``)."""
    if not run_dir.is_dir():
        return []
    return [p for name in RUN_FILES for p in run_dir.glob(f".{name}.*.tmp")]


def check_new_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start a run where one exists, unless ``overwrite`` (and then only over a run)."""
    d = run_dir
    if d.exists() and not d.is_dir():
        raise CheckpointError(f"{d}: exists and is not a directory")
    stale = set(stale_temp_files(d))
    if d.is_dir() and any(p not in stale for p in d.iterdir()):
        if not overwrite:
            raise CheckpointError(
                f"{d}: run directory exists; pass --resume to continue it or --overwrite "
                "to replace it"
            )
        if not any((d / f).exists() for f in (CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE)):
            raise CheckpointError(f"{d}: not a vaelab run directory; refusing to overwrite it")


def prepare_new_run_dir(run_dir: Path) -> None:
    """Empty an old run's files out of the run directory (checked before) and create it."""
    d = run_dir
    if d.is_dir():
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                (d / name).unlink()
        for extra in [*d.glob("*.png"), *stale_temp_files(d)]:
            extra.unlink()
        shutil.rmtree(d / TENSORBOARD_DIR, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
