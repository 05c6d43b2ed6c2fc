"""Open a finished (or running) run directory: its config, best model and data pipeline."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vaelab.config import RunConfig
from vaelab.data.pipeline import DataPipeline
from vaelab.data.sources import FileSource, absolute_dataset
from vaelab.device import resolve_device
from vaelab.errors import DataError
from vaelab.models.base import LatentVariableModel
from vaelab.runs.config_file import read_run_config, recorded_sha256, saved_preprocessing


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    model: LatentVariableModel
    data: DataPipeline
    device: torch.device
    # set when the data file read now is not the one the run was trained on (sha256 differs)
    data_changed: str | None = None


def load_run(
    run_dir: str | Path,
    device: str = "auto",
    data_dir: str | None = None,
    split: str = "test",
    data: str | os.PathLike | None = None,
    with_data: bool = True,
) -> LoadedRun:
    """The run's best model (``model.safetensors``) and its data, prepared as in training.

    ``data_dir`` overrides where a built-in dataset's files are looked up, ``data`` where the
    run's own data file is now (the run may have been made in another folder or on another
    machine). ``with_data=False`` reads no data at all: the pipeline then only prepares rows
    handed to it (:mod:`vaelab.use`), with the preprocessing the run recorded.
    """
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    changes = {}
    if data_dir is not None:
        changes["data_dir"] = data_dir
    if data is not None:
        changes["dataset"] = absolute_dataset(str(data))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **changes))
    dev = resolve_device(device)
    model = LatentVariableModel.load(run_dir, map_location=dev)  # a model vaelab trains
    model.eval()
    prep = saved_preprocessing(run_dir)
    dataset = cfg.data.dataset
    if (with_data or prep is None) and data is None:
        require_recorded_data(dataset)
    if with_data or prep is None:
        pipeline = DataPipeline(
            cfg.data,
            model.config.likelihood,
            dev,
            primary=split,
            preprocessing=prep,
            expect_shape=tuple(model.config.data_shape),
            expected_by=f"the model in {run_dir}",
        )
    else:
        pipeline = DataPipeline.without_data(
            cfg.data, model.config.likelihood, dev, prep, tuple(model.config.data_shape)
        )
    changed = _data_changed(run_dir, pipeline) if with_data else None
    return LoadedRun(run_dir, cfg, model, pipeline, dev, changed)


def require_recorded_data(dataset: str, flag: str = "--data") -> None:
    """A run's own data file or folder (recorded absolute) is still there, or a one-line
    error that says how to point the run at it (with ``flag``)."""
    if os.path.isabs(dataset) and not os.path.exists(dataset):
        raise DataError(
            f"{dataset}: the run's data is not there any more; if it moved, give the new "
            f"place with {flag} PATH"
        )


def _data_changed(run_dir: Path, pipeline: DataPipeline) -> str | None:
    """A one-line warning when the run's data file is not the file it was trained on: its
    90/5/5 split (and so every number on it) is then of other rows. Not an error: a user may
    mean to evaluate an edited or extended file."""
    recorded = recorded_sha256(run_dir)
    source = pipeline.source
    if not recorded or not isinstance(source, FileSource):
        return None
    if source.sha256 == recorded:
        return None
    return (
        f"warning: {source.path} is not the file this run was trained on (its sha256 "
        "differs): the splits, and every number below, are of the file as it is now"
    )
