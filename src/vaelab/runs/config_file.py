"""``config.json``: the model's own header (class, config) plus the run config and the data."""

from __future__ import annotations

import os
from pathlib import Path

from vaelab.config import RunConfig, from_dict, to_dict, validate
from vaelab.data.preprocess import Preprocessing
from vaelab.errors import CheckpointError, VaelabError, excerpt
from vaelab.io import atomic_write_json, read_json
from vaelab.models.base import MODEL_REGISTRY
from vaelab.runs.layout import CONFIG_FILE


def write_run_config(run_dir: Path, model, cfg: RunConfig, data: dict) -> None:
    """Write ``config.json`` atomically; an OS error becomes one line naming the file."""
    meta = {**model.describe(), "run": to_dict(cfg), "data": data}
    try:
        atomic_write_json(run_dir / CONFIG_FILE, meta)
    except OSError as e:
        raise CheckpointError(
            f"{run_dir / CONFIG_FILE}: could not write the run config ({e.strerror or e})"
        ) from None


def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """The resolved run config saved in a run directory."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    meta = read_json(path, "run config")
    if not isinstance(meta, dict) or "run" not in meta:
        raise CheckpointError(f"{path}: not a vaelab run (no 'run' section)")
    name = meta.get("class")
    if not isinstance(name, str) or name not in MODEL_REGISTRY:
        raise CheckpointError(
            f"{path}: unknown model class {excerpt(name)} "
            f"(known: {', '.join(sorted(MODEL_REGISTRY))})"
        )
    try:
        cfg = validate(from_dict(RunConfig, meta["run"]))  # ranges too, not only types
    except VaelabError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if cfg.model_class != name:  # the model saved is not the one the run trains
        raise CheckpointError(
            f"{path}: holds a {name} but its run trains a {excerpt(cfg.model_class)}; tampered"
        )
    return cfg


def read_data_record(run_dir: str | os.PathLike) -> dict:
    """``config.json``'s ``"data"`` section: how the data was read and prepared ({} if none)."""
    meta = read_json(Path(run_dir) / CONFIG_FILE, "run config")
    data = meta.get("data") if isinstance(meta, dict) else None
    return data if isinstance(data, dict) else {}


def saved_preprocessing(run_dir: str | os.PathLike) -> Preprocessing | None:
    """The preprocessing a run recorded (None for runs made before it was recorded)."""
    record = read_data_record(run_dir).get("preprocessing")
    if record is None:
        return None
    try:
        return Preprocessing.from_json(record)
    except VaelabError as e:
        raise CheckpointError(f"{Path(run_dir) / CONFIG_FILE}: {e}") from None
