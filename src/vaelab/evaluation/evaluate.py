"""Evaluate a run's model on a split of its data, prepared exactly as in training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaelab.distributed import SINGLE, World
from vaelab.errors import InvalidArgumentError
from vaelab.evaluation.metrics import evaluate_model
from vaelab.runs.load import load_run


def evaluate_split(
    model,
    data,
    split: str = "test",
    k: int = 5000,
    n: int | None = None,
    batch_size: int | None = None,
    elbo_samples: int = 1,
    progress: bool = False,
    world: World = SINGLE,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``split`` of a :class:`~vaelab.data.pipeline.DataPipeline`.

    The report names the split, the data preparation and the likelihood with the numbers.
    Under torchrun (``world``) the ranks share the work and every rank returns the report.
    """
    x = data.eval_data(split)
    if n is not None:
        if n < 1:
            raise InvalidArgumentError(f"n must be >= 1, got {n}")
        x = x[:n]
    result = evaluate_model(
        model,
        x,
        k=k,
        batch_size=batch_size,
        elbo_samples=elbo_samples,
        dequantized=data.dequantized,
        levels=data.prep.levels or 256,
        seed=data.cfg.eval_seed,
        progress=progress,
        world=world,
    )
    return {**split_header(model, data, split), **result, **in_data_units(result, data)}


def split_header(model, data, split: str) -> dict[str, Any]:
    """What a report's numbers are of: the split, the dataset, its preparation, the likelihood."""
    described = data.describe()
    return {
        "split": split,
        "dataset": described["dataset"],
        "binarization": described["binarization"],
        "dequantized": described["dequantized"],
        "likelihood": model.config.likelihood,
    }


def in_data_units(result: dict[str, Any], data) -> dict[str, Any]:
    """The NLL of the data in its own units (the preprocessing's log-Jacobian added back),
    per example and per dimension; bits/dim only where the data are images."""
    jacobian = data.log_jacobian
    nll = result["nll"] + jacobian
    return {
        "units": data.prep.units,
        "log_jacobian": jacobian,
        "nll_original": nll,
        "nll_per_dim": nll / result["dims"],
        "bits_per_dim": result["bits_per_dim"] if data.bits_per_dim_applies else None,
    }


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    k: int = 5000,
    n: int | None = None,
    batch_size: int | None = None,
    elbo_samples: int = 1,
    device: str = "auto",
    progress: bool = False,
    data_dir: str | None = None,
    world: World = SINGLE,
    data: str | None = None,
) -> dict[str, Any]:
    """Evaluate a run directory's best model on ``split``; the data prepared as in training.

    ``data_dir``: where a built-in dataset's files are; ``data``: where the run's own data file
    is, if it moved."""
    if world.active:
        device = str(world.device)  # this rank's device, chosen from --device when it joined
    run = load_run(run_dir, device=device, data_dir=data_dir, split=split, data=data)
    report = evaluate_split(
        run.model, run.data, split, k, n, batch_size, elbo_samples, progress=progress, world=world
    )
    if run.data_changed:
        report["data_changed"] = run.data_changed
    return {"run": str(run_dir), **report}
