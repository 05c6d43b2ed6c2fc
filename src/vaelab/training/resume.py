"""Whether a run may start or resume in a folder, and what a resumed run may change: settings
that do not alter the parameters' trajectory."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from vaelab.config import DataConfig, RunConfig, to_dict
from vaelab.data.pipeline import DataPipeline
from vaelab.data.sources import IN_MEMORY, absolute_dataset, file_sha256, is_data_path
from vaelab.errors import ConfigError, DataError
from vaelab.runs.config_file import read_run_config, recorded_sha256, saved_preprocessing
from vaelab.runs.layout import CHECKPOINT_FILE, check_new_run_dir, check_resumed_run_dir
from vaelab.runs.load import require_recorded_data

# More or fewer epochs only extends or ends a run (refused for schedules laid out over the
# run's length); the rest changes where or how fast it runs, or what is done after it.
RESUMABLE_CHANGES = (
    "train.epochs",
    "train.threads",
    "train.device",
    "train.checkpoint_every_s",
    "train.checkpoint_every_steps",
    "train.final_eval_k",
    "train.final_eval_n",
    "data.data_dir",
)
_SCHEDULES_OVER_THE_RUN = ("cosine", "burda")


def _flat_keys(d: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in d.items():
        if isinstance(v, dict) and k != "model":
            keys |= _flat_keys(v, f"{prefix}{k}.")
        else:
            keys.add(prefix + k)
    return keys


def _lookup(d: dict, key: str):
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def with_saved_choices(saved: RunConfig, given: RunConfig) -> RunConfig:
    """``given`` with what the run decided from its data when it started (the likelihood)."""
    if "likelihood" in given.model or "likelihood" not in saved.model:
        return given
    return dataclasses.replace(
        given, model={**given.model, "likelihood": saved.model["likelihood"]}
    )


def check_resumable(saved: RunConfig, given: RunConfig, run_dir: Path) -> None:
    """Refuse ``given`` if it differs from the saved run in anything but ``RESUMABLE_CHANGES``."""
    old, new = to_dict(saved), to_dict(with_saved_choices(saved, given))
    schedule = new["train"]["schedule"]
    if old["train"]["epochs"] != new["train"]["epochs"] and schedule in _SCHEDULES_OVER_THE_RUN:
        raise ConfigError(
            f"train.epochs: the {schedule} schedule is laid out over the run's "
            f"{old['train']['epochs']} epochs, so a resumed run cannot change them "
            "(start a new run, or use the constant or step schedule)"
        )
    # the run's own file, moved: allowed, as open_data checks that it holds the same bytes
    moved = os.path.isabs(saved.data.dataset) and is_data_path(given.data.dataset)
    changed = [
        key
        for key in _flat_keys(old) | _flat_keys(new)
        if _lookup(old, key) != _lookup(new, key)
        and key not in RESUMABLE_CHANGES
        and not (key == "data.dataset" and moved)
    ]
    if changed:
        raise ConfigError(
            f"--resume continues {run_dir} as it was configured; these settings differ "
            f"from the saved run: {', '.join(sorted(changed))} (only "
            f"{', '.join(RESUMABLE_CHANGES)} may change)"
        )


def check_start(
    run_dir: Path, cfg: RunConfig, *, resume: bool, overwrite: bool
) -> RunConfig | None:
    """Check, writing nothing, that a run of ``cfg`` may start or resume in ``run_dir``.

    Returns the saved run's config when ``resume`` continues it from its checkpoint; None when
    the run starts (anew, over what ``overwrite`` replaces, or again after a kill before the
    first checkpoint). A folder another process is writing is refused either way.
    """
    if resume and (run_dir / CHECKPOINT_FILE).exists():
        check_resumed_run_dir(run_dir)
        saved = read_run_config(run_dir)
        check_resumable(saved, cfg, run_dir)
        return saved
    check_new_run_dir(run_dir, overwrite=overwrite, resume=resume)
    return None


def open_data(
    run_dir: Path,
    cfg: DataConfig,
    likelihood: str | None,
    device: torch.device,
    tensors: dict[str, torch.Tensor] | None,
    saved: RunConfig | None,
) -> DataPipeline:
    """The run's data. A resumed run (``saved``) keeps the preprocessing it recorded and reads
    the file it was trained on, wherever it is now: the same sha256 (another file has other
    splits), checked before it is read."""
    prep = None
    if saved is not None:
        prep = saved_preprocessing(run_dir)
        require_recorded_data(cfg.dataset, "--dataset")
        recorded = recorded_sha256(run_dir)
        if recorded and is_data_path(cfg.dataset):
            path = Path(cfg.dataset)
            if file_sha256(path) != recorded:
                raise DataError(
                    f"{path} is not the file this run was trained on (its sha256 differs): a "
                    "resumed run must read the same rows; put the original back, or train a "
                    "new run"
                )
    return DataPipeline(cfg, likelihood, device, tensors=tensors, preprocessing=prep)


def check_epochs_left(finished: int, cfg: RunConfig) -> None:
    """A resumed run cannot be given fewer epochs than it has ``finished``."""
    if finished > cfg.train.epochs:
        raise ConfigError(
            f"train.epochs: {cfg.train.epochs} is fewer than the {finished} epochs this run has "
            f"finished; give more than {finished} to train on, or leave --epochs out"
        )


def start_config(
    run_dir: Path, cfg: RunConfig, resume: bool, overwrite: bool, in_memory: bool
) -> tuple[RunConfig, RunConfig | None]:
    """The config a run starts or resumes with, and the saved run's config when it resumes.

    A user's data file is named by its absolute path (the run must work from any folder), and
    a resumed run keeps what it chose from its data; nothing is written (:func:`check_start`).
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    dataset = IN_MEMORY if in_memory else absolute_dataset(cfg.data.dataset)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset=dataset))
    saved = check_start(run_dir, cfg, resume=resume, overwrite=overwrite)
    return (with_saved_choices(saved, cfg) if saved is not None else cfg), saved
