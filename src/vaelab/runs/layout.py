"""The files of a run directory, and the checks before a run starts in one.

* ``vaelab-run.json`` — the marker, written first: format, run id, and the manifest of the
  files vaelab writes in the folder (:mod:`vaelab.runs.ownership`); ``.vaelab-run.lock`` —
  the writer lock (:mod:`vaelab.runs.lock`);
* ``config.json`` — the model class and config (``VAE.load(run)`` works on it), the resolved
  run configuration under ``"run"`` and how the data was prepared under ``"data"``;
* ``model.safetensors`` — the best weights so far (by validation ELBO);
* ``checkpoint.safetensors`` — the full training state, written atomically, for ``--resume``;
* ``metrics.jsonl`` — one JSON line per finished epoch (and ``tensorboard/`` where installed);
* ``eval_test.json``, ``samples.png``, ``reconstructions.png`` after the run, and
  ``report.html`` (``vaelab report``; ``train`` writes it unless ``--no-report``).

Anything else in the folder is the user's and is never removed or written over.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from vaelab.errors import CheckpointError
from vaelab.models.base import CONFIG_FILE, WEIGHTS_FILE
from vaelab.runs import ownership
from vaelab.runs.lock import busy_error, holder
from vaelab.runs.ownership import MARKER

CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval_test.json"
TENSORBOARD_DIR = "tensorboard"
RUN_PICTURES = ("samples.png", "reconstructions.png")
REPORT_FILE = "report.html"  # vaelab.report.build; claimed when first written, like the rest
# What the trainer writes (it claims these names when a run starts or resumes).
TRAINER_FILES = (CONFIG_FILE, WEIGHTS_FILE, CHECKPOINT_FILE, METRICS_FILE)
# A run holding no file of vaelab's but these never reached its first checkpoint (they are
# written first): nothing was trained, and `--resume` may start it again.
START_FILES = (CONFIG_FILE, WEIGHTS_FILE)
# What vaelab wrote into a run folder before runs carried a marker: adopted when such a run
# is resumed from its checkpoint, and the names of its temporary files.
LEGACY_RUN_FILES = (*TRAINER_FILES, EVAL_FILE, *RUN_PICTURES, f"{TENSORBOARD_DIR}/")
RUN_FILES = (*TRAINER_FILES, EVAL_FILE)
# Every name `vaelab train` writes: a user's file by one of these names, not listed in the
# marker, stops a run before it writes anything (it would be refused at its write later).
TRAIN_WRITES = (*TRAINER_FILES, EVAL_FILE, *RUN_PICTURES, REPORT_FILE)

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "EVAL_FILE",
    "METRICS_FILE",
    "REPORT_FILE",
    "RUN_FILES",
    "RUN_PICTURES",
    "TENSORBOARD_DIR",
    "WEIGHTS_FILE",
    "check_new_run_dir",
    "check_resumed_run_dir",
    "claim_default_run_dir",
    "continue_run",
    "start_new_run",
]

_SHOWN = 4  # entries named in a message about a folder's contents


def _listing(paths: list[Path]) -> str:
    names = [p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in paths]
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def check_new_run_dir(run_dir: Path, *, overwrite: bool = False, resume: bool = False) -> None:
    """Refuse to start a run in ``run_dir`` where that could cost anybody a file.

    A fresh start needs a new folder, an empty one, or one holding only vaelab's own marker,
    lock and temporary files. ``overwrite``: also a marked run, whose listed files alone
    will be removed. ``resume`` without a checkpoint: also a marked run that never reached its
    first checkpoint (it holds nothing of vaelab's but :data:`START_FILES`); a run with more
    is refused, saying what it holds. An unmarked folder that is not empty is always refused,
    and so is a folder another process is writing.
    """
    d = Path(run_dir)
    if d.exists() and not d.is_dir():
        raise CheckpointError(f"{d}: exists and is not a directory")
    if not d.is_dir():
        return
    pid = holder(d)
    if pid is not None:
        raise busy_error(d, pid)
    manifest = ownership.read_manifest(d)
    theirs = ownership.foreign_entries(d, manifest, LEGACY_RUN_FILES)
    if manifest is None:
        if not theirs:
            return
        if resume:
            raise CheckpointError(
                f"{d}: has no checkpoint to resume from and is not a vaelab run (no {MARKER}); "
                f"it holds {_listing(theirs)}. Nothing was changed: choose a new or empty "
                "folder for --out"
            )
        if overwrite:
            raise CheckpointError(
                f"{d}: not a vaelab run directory (no {MARKER}); refusing to overwrite it: it "
                f"holds {_listing(theirs)}"
            )
        raise CheckpointError(
            f"{d}: exists and holds files that are not a vaelab run's ({_listing(theirs)}); "
            "choose a new or empty folder for --out"
        )
    ours = ownership.owned_files(d, manifest)
    if overwrite or resume:
        _check_no_clash(theirs)
    if overwrite:
        return
    trained = [p for p in ours if p.name not in START_FILES and not p.name.startswith(".")]
    if resume and trained:
        raise CheckpointError(
            f"{d}: has no {CHECKPOINT_FILE} to resume from; it holds "
            f"{_listing(sorted(ours + theirs))}. Nothing was changed: --overwrite starts the "
            "run again (removing only the files vaelab wrote), or choose another --out"
        )
    if not resume and (ours or theirs):
        raise CheckpointError(
            f"{d}: run directory exists; pass --resume to continue it or --overwrite to replace it"
        )


def _check_no_clash(theirs: list[Path]) -> None:
    clash = [p for p in theirs if p.name in TRAIN_WRITES]
    if clash:
        raise CheckpointError(
            f"{clash[0]}: exists but vaelab did not write it (it is not listed in {MARKER}); "
            "move it away first: vaelab never writes over a file it did not write"
        )


def check_resumed_run_dir(run_dir: Path) -> None:
    """Refuse to resume the run in ``run_dir`` (it has a checkpoint) while another process
    writes it, or while a file of the user's has a name the run will write."""
    d = Path(run_dir)
    pid = holder(d)
    if pid is not None:
        raise busy_error(d, pid)
    manifest = ownership.read_manifest(d)
    if manifest is not None:  # an unmarked run adopts the files of its names when resumed
        _check_no_clash(ownership.foreign_entries(d, manifest))


def start_new_run(run_dir: Path, *, overwrite: bool = False, resume: bool = False) -> None:
    """Start a run in ``run_dir`` (the caller holds its lock): check again, remove the
    previous run's listed files, write a fresh marker, claim the trainer's files."""
    d = Path(run_dir)
    check_new_run_dir(d, overwrite=overwrite, resume=resume)
    d.mkdir(parents=True, exist_ok=True)
    manifest = ownership.read_manifest(d)
    if manifest is not None:
        ownership.remove_owned(d, manifest)
    for stale in ownership.temp_files(d, LEGACY_RUN_FILES):
        stale.unlink()
    ownership.mark_new_run(d)
    ownership.claim(d, TRAINER_FILES)


def continue_run(run_dir: Path) -> None:
    """Claim the trainer's files for a run resumed from its checkpoint (the caller holds its
    lock), marking a run made before runs carried a marker; remove what killed writes left."""
    d = Path(run_dir)
    if ownership.read_manifest(d) is None:
        ownership.adopt(d, LEGACY_RUN_FILES)
    ownership.claim(d, TRAINER_FILES)
    ownership.remove_temp_files(d)


def claim_default_run_dir(parent: str | os.PathLike, stem: str) -> Path:
    """Create ``parent/stem-<date>-<time>`` for a run with no ``--out``, as a new folder.

    The folder is made with an exclusive ``mkdir``: when two runs start in the same second,
    the second gets ``-2`` (then ``-3``, ...), whichever process it is in.
    """
    base = Path(parent) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    Path(parent).mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise CheckpointError(f"{parent}: no free run folder name for {base.name}")
