"""After training: evaluate the best model on the test split and draw its pictures, once.

``vaelab train`` calls this when the trainer returns, and so does ``vaelab train --resume`` of
a finished run whose evaluation was interrupted: ``eval_test.json`` is written last, so its
presence means the run is complete.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from vaelab.data.pipeline import DataPipeline
from vaelab.data.sources import TensorSource
from vaelab.distributed import SINGLE, World
from vaelab.evaluation.evaluate import evaluate_split
from vaelab.io import atomic_write_json, read_json
from vaelab.models.base import SavableModel
from vaelab.runs.layout import EVAL_FILE, RUN_PICTURES
from vaelab.runs.lock import run_lock
from vaelab.runs.ownership import claim
from vaelab.training.trainer import TrainingInterrupted
from vaelab.viz.run_pictures import write_run_pictures


def finish_run(
    run_dir: str | Path,
    data: DataPipeline,
    *,
    k: int,
    n: int | None,
    progress: bool = False,
    log: Callable[[str], None] = lambda msg: None,
    world: World = SINGLE,
) -> dict | None:
    """The test evaluation of ``run_dir``'s best model (``k`` samples, first ``n`` examples;
    ``n=0`` skips it), written to ``eval_test.json`` with the pictures; None without a test
    split. Under torchrun (``world``) every rank evaluates its share and rank 0 writes, holding
    the run's writer lock and claiming its files first.

    Ctrl-C here loses no training: the run is complete but for this evaluation, and
    ``vaelab train --resume`` does it (the error says so).
    """
    run_dir = Path(run_dir)
    path = run_dir / EVAL_FILE
    if path.exists():
        return read_json(path, "evaluation")
    if n == 0:
        return None
    if isinstance(data.source, TensorSource) and "test" not in data.source.tensors:
        return None  # in-memory data handed over without a test split
    with run_lock(run_dir) if world.writer else contextlib.nullcontext():
        if world.writer:
            claim(run_dir, [EVAL_FILE, *RUN_PICTURES])
        try:
            best = SavableModel.load(run_dir, map_location=data.device)
            log("evaluating the best model on the test split")
            report = evaluate_split(best, data, "test", k=k, n=n, progress=progress, world=world)
            if world.writer:
                write_run_pictures(run_dir, best, data.eval_data("test"))
        except KeyboardInterrupt:
            raise TrainingInterrupted(
                "interrupted during the test evaluation; training is complete and saved, "
                f"finish the evaluation with: vaelab train --resume --out {run_dir}"
            ) from None
        atomic_write_json(path, {"run": str(run_dir), **report})
    if warning := collapse_warning(report, getattr(best, "config", None)):
        log(warning)
    return report


def collapse_warning(report: dict, model_config=None) -> str | None:
    """One line when fewer than a quarter of the latent units are active (posterior collapse:
    the decoder ignores z and every reconstruction is the mean), with what to try; a learned
    per-dimension variance only where the model's Gaussian likelihood has a fixed or a single
    scale (``model_config``: the model's config, when known)."""
    active, total = report.get("active_units"), report.get("latent_dim")
    if active is None or not total or active >= total / 4:
        return None
    tries = ["a KL warm-up (--kl-warmup 10)", "a smaller β (--beta 0.5)"]
    variance = getattr(model_config, "gaussian_variance", None)
    if report.get("likelihood") == "gaussian" and variance in ("fixed", "scalar"):
        tries.append("a learned per-dimension variance (--set model.gaussian_variance=per_dim)")
    tries.append("a smaller --latent-dim")
    return (
        f"warning: only {active} of {total} latent units are active (their posterior means "
        "barely move from one example to another, so the code says little about the data: "
        "posterior collapse, or too little training): try "
        f"{', '.join(tries[:-1])} or {tries[-1]}"
    )
