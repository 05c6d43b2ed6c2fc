"""``config.json``: the model's own header (class, config) plus the run config and the data."""

from __future__ import annotations

import contextlib
import contextvars
import os
import platform
from pathlib import Path

import torch

from vaelab._version import __version__
from vaelab.config import RunConfig, from_dict, to_dict, validate
from vaelab.data.preprocess import Preprocessing
from vaelab.errors import CheckpointError, VaelabError, excerpt
from vaelab.io import atomic_write_json, read_json
from vaelab.models.base import MODEL_REGISTRY
from vaelab.runs.layout import CONFIG_FILE

# The command line of the `vaelab` process writing the run (set by the CLI; None from Python).
_COMMAND: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "vaelab_command", default=None
)
MAX_COMMANDS = 20  # a run resumed more often keeps its first command and the latest ones


@contextlib.contextmanager
def command_line(argv: list[str]):
    """Record ``argv`` in every ``config.json`` written inside the block."""
    token = _COMMAND.set([str(a) for a in argv])
    try:
        yield
    finally:
        _COMMAND.reset(token)


def _provenance(run_dir: Path) -> dict:
    """What wrote the run: the command lines (the first, then each resume that rewrote the
    config) and the versions of vaelab, torch and Python of the latest."""
    commands: list = []
    path = run_dir / CONFIG_FILE
    if path.is_file():
        try:
            old = read_json(path, "run config").get("provenance", {}).get("commands", [])
            commands = [c for c in old if isinstance(c, list)] if isinstance(old, list) else []
        except (VaelabError, AttributeError):
            commands = []  # an unreadable old record is not worth failing the run for
    if (argv := _COMMAND.get()) is not None:
        commands.append(argv)
    if len(commands) > MAX_COMMANDS:
        commands = [commands[0], *commands[-(MAX_COMMANDS - 1) :]]
    return {
        "commands": commands,
        "vaelab": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def write_run_config(run_dir: Path, model, cfg: RunConfig, data: dict) -> None:
    """Write ``config.json`` atomically; an OS error becomes one line naming the file."""
    meta = {
        **model.describe(),
        "run": to_dict(cfg),
        "data": data,
        "provenance": _provenance(run_dir),
    }
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


def recorded_sha256(run_dir: str | os.PathLike) -> str | None:
    """The sha256 of the data file (or folder) the run was trained on, if it recorded one."""
    source = read_data_record(run_dir).get("source")
    return source.get("sha256") if isinstance(source, dict) else None


def saved_preprocessing(run_dir: str | os.PathLike) -> Preprocessing | None:
    """The preprocessing a run recorded (None for runs made before it was recorded)."""
    record = read_data_record(run_dir).get("preprocessing")
    if record is None:
        return None
    try:
        return Preprocessing.from_json(record)
    except VaelabError as e:
        raise CheckpointError(f"{Path(run_dir) / CONFIG_FILE}: {e}") from None
