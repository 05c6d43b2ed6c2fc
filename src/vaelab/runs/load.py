"""Open a finished (or running) run directory: its config, best model and data pipeline."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from vaelab.config import RunConfig
from vaelab.data.pipeline import DataPipeline
from vaelab.device import resolve_device
from vaelab.models.base import LatentVariableModel
from vaelab.runs.config_file import read_run_config, saved_preprocessing


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    model: LatentVariableModel
    data: DataPipeline
    device: torch.device


def load_run(
    run_dir: str | Path,
    device: str = "auto",
    data_dir: str | None = None,
    split: str = "test",
) -> LoadedRun:
    """The run's best model (``model.safetensors``) and its data, prepared as in training.

    ``data_dir`` overrides where the dataset's files are looked up (the run may have been made
    on another machine).
    """
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=data_dir))
    dev = resolve_device(device)
    model = LatentVariableModel.load(run_dir, map_location=dev)  # a model vaelab trains
    model.eval()
    data = DataPipeline(
        cfg.data,
        model.config.likelihood,
        dev,
        primary=split,
        preprocessing=saved_preprocessing(run_dir),
        expect_shape=tuple(model.config.data_shape),
        expected_by=f"the model in {run_dir}",
    )
    return LoadedRun(run_dir=run_dir, cfg=cfg, model=model, data=data, device=dev)
