"""``report.html``: a run's whole story in one file a person can open offline, send and archive.

:func:`build_report` gathers the run (config, metrics, saved evaluation), loads its best model
and its data as in training, and assembles the sections of :mod:`vaelab.report.run_info` and
:mod:`vaelab.report.model_views` into the page of :mod:`vaelab.report.html`. When the run's data
cannot be found (moved, or on another machine), the sections that need it are left out and the
page says why. :func:`write_report` writes it atomically; inside the run folder it first claims
the name in the run's manifest, under the run's writer lock, so ``--overwrite`` removes it with
the rest of the run.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from vaelab._version import __version__
from vaelab.errors import DataError, InvalidArgumentError
from vaelab.io import atomic_write_bytes, read_json
from vaelab.report import model_views, run_info
from vaelab.report.html import Section, page, paragraph
from vaelab.runs.config_file import read_data_record, read_run_config
from vaelab.runs.layout import CONFIG_FILE, EVAL_FILE, REPORT_FILE
from vaelab.runs.load import load_run
from vaelab.runs.lock import run_lock
from vaelab.runs.metrics import MetricsLog
from vaelab.runs.ownership import claim
from vaelab.viz.run_pictures import is_image_shape

SPLIT = "test"


def _split_of(data) -> str | None:
    """The split the pictures use: test, else validation (None: the data holds neither)."""
    for split in (SPLIT, "valid"):
        try:
            data.raw(split)
            return split
        except DataError:
            continue
    return None


def build_report(
    run_dir: str | os.PathLike,
    *,
    data_dir: str | None = None,
    data: str | None = None,
    gaps: dict | None = None,
    compute_gaps: bool = False,
    gaps_n: int = 500,
    gaps_k: int = 5000,
    log: Callable[[str], None] = lambda msg: None,
) -> str:
    """The report's HTML text. ``gaps``: inference gaps computed already (the JSON of
    ``vaelab evaluate --gaps``); ``compute_gaps``: compute them now on ``gaps_n`` test
    examples with ``gaps_k`` importance samples (minutes for an MNIST model)."""
    run_dir = Path(run_dir)
    read_run_config(run_dir)  # a folder that is not a run: one line, before anything else
    meta = read_json(run_dir / CONFIG_FILE, "run config")
    try:
        loaded = load_run(run_dir, device="cpu", data_dir=data_dir, data=data)
        missing = None
    except DataError as e:  # the data moved: what needs no data is still worth a page
        loaded = load_run(run_dir, device="cpu", data_dir=data_dir, data=data, with_data=False)
        missing = str(e)
    record = read_data_record(run_dir)
    metrics = MetricsLog(run_dir).rows()
    evaluation = (
        read_json(run_dir / EVAL_FILE, "evaluation") if (run_dir / EVAL_FILE).is_file() else None
    )
    sections: list[Section] = [
        run_info.run_section(run_dir, meta, record, metrics),
        run_info.curves_section(metrics),
        run_info.evaluation_section(evaluation, run_dir),
    ]
    model, pipeline = loaded.model, loaded.data
    split = None if missing else _split_of(pipeline)
    if split is None:
        why = missing or "the run's data has no test or validation split"
        sections.append(
            Section(
                "data",
                "Model on data",
                paragraph(
                    f"Sections that need the data are left out: {why}. Pass --data-dir or --data "
                    "to say where it is now.",
                    "note",
                ),
            )
        )
    else:
        log(f"report: the model on the {split} split")
        x = pipeline.eval_data(split)
        lat = model_views.encode_split(model, x[: model_views.MAP_POINTS], _labels(pipeline, split))
        sections.append(model_views.latent_section(model, lat, split))
        if is_image_shape(tuple(x.shape[1:])):
            sections += model_views.image_sections(model, x, lat, split)
        elif x.ndim == 2:
            columns = (
                record.get("source", {}).get("columns")
                if isinstance(record.get("source"), dict)
                else None
            )
            sections += model_views.table_sections(model, pipeline, split, columns)
        if compute_gaps:
            from vaelab.evaluation.gaps import gaps_for_split

            log(f"report: inference gaps on {gaps_n} {split} examples (K={gaps_k})")
            gaps = gaps_for_split(model, pipeline, split, n=gaps_n, k=gaps_k)
    if gaps is not None:
        sections.append(run_info.gaps_section(gaps))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return page(
        f"vaelab report: {run_dir.name or run_dir}",
        f"{run_dir} — written {stamp} by vaelab {__version__}",
        sections,
    )


def _labels(pipeline, split):
    labels = pipeline.labels(split)
    return None if labels is None else labels.numpy() if hasattr(labels, "numpy") else labels


def read_gaps(path: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> dict:
    """The JSON ``vaelab evaluate --gaps --json`` printed, checked to hold the gaps (and, given
    ``run_dir``, not to name another run folder that exists)."""
    gaps = read_json(path, "gaps JSON")
    if not isinstance(gaps, dict) or not all(
        isinstance(gaps.get(k), (int, float)) for k in ("approximation_gap", "amortization_gap")
    ):
        raise InvalidArgumentError(
            f"{path}: not the output of `vaelab evaluate --gaps --json` "
            "(no approximation_gap and amortization_gap)"
        )
    other = gaps.get("run")
    if run_dir is not None and isinstance(other, str) and Path(other).is_dir():
        if Path(other).resolve() != Path(run_dir).resolve():
            raise InvalidArgumentError(
                f"{path}: the gaps of the run {other}, not of {run_dir}; compute this run's "
                f"with `vaelab evaluate {run_dir} --gaps --json` or `vaelab report --gaps`"
            )
    return gaps


def write_report(
    run_dir: str | os.PathLike, out: str | os.PathLike | None = None, **kwargs
) -> Path:
    """Build the report of ``run_dir`` and write it to ``out`` (default ``RUN/report.html``),
    atomically. A file inside the run folder is claimed in its manifest first, under the
    run's writer lock (re-entrant: ``vaelab train`` calls this while holding it)."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    if not (run_dir / CONFIG_FILE).is_file():
        read_run_config(run_dir)  # the one-line error for a folder that is not a run
    inside = out.parent.resolve() == run_dir.resolve()
    with run_lock(run_dir) if inside else contextlib.nullcontext():
        if inside:  # claimed before the minutes of work: a refusal comes first
            claim(run_dir, [out.name])
        text = build_report(run_dir, **kwargs).encode("utf-8")
        return atomic_write_bytes(out, text)
