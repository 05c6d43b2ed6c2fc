"""The training-state checkpoint: one safetensors file, written atomically.

Weights, optimizer moments and RNG states are tensors; the counters (:class:`TrainState`) and
the optimizer's hyper-parameters are JSON in the file's metadata. One file means one atomic
rename: a crash leaves the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from vaelab.errors import CheckpointError, excerpt
from vaelab.io import read_safetensors, save_tensors
from vaelab.training.state import TrainState

_META_KEY = "vaelab_training_state"
CHECKPOINT_VERSION = 1


def save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainState
) -> None:
    """Write model, optimizer, ``state`` and its RNG states to ``path`` atomically."""
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        tensors[f"model/{name}"] = t
    opt = optimizer.state_dict()
    for idx, pstate in opt["state"].items():
        for key, value in pstate.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            tensors[f"optim/{idx}/{key}"] = value
    for name, t in state.rng.items():
        tensors[f"rng/{name}"] = t
    meta = {
        "version": CHECKPOINT_VERSION,
        "state": state.to_json(),
        "param_groups": opt["param_groups"],
    }
    try:
        save_tensors(path, tensors, metadata={_META_KEY: json.dumps(meta)})
    except OSError as e:
        raise CheckpointError(
            f"{path}: could not write checkpoint ({e.strerror or e}); the previous checkpoint "
            "is intact"
        ) from None


def generator_states(device: torch.device, data_gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The states a run's random draws continue from: torch's global generator (the
    reparameterization noise), the data generator and, on CUDA, the device's generator."""
    states = {"torch": torch.get_rng_state(), "data": data_gen.get_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_generator_states(
    states: dict[str, torch.Tensor], device: torch.device, data_gen: torch.Generator, path: Path
) -> None:
    """Put back what :func:`generator_states` saved (``path`` names the file in errors)."""
    try:
        torch.set_rng_state(states["torch"])
        data_gen.set_state(states["data"])
        if "cuda" in states and device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda"], device)
    except (RuntimeError, TypeError) as e:
        raise CheckpointError(f"{path}: RNG state invalid ({e}); tampered") from None


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A checkpoint's JSON part and its tensors, checked (never unpickled)."""
    tensors, metadata = read_safetensors(path)
    raw = metadata.get(_META_KEY)
    if raw is None:
        raise CheckpointError(f"{path}: not a vaelab training checkpoint")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version")
    return meta, tensors


# Optimizer settings a checkpoint may hold differently from the run's optimizer: the learning
# rate is set by the schedule before every step, the rest say how the update runs, not what it
# computes. Every other setting (betas, eps, weight decay, maximize, ...) must be the run's, and
# once checked the run's own groups are loaded, so nothing of the file's reaches the update.
_HOW_IT_RUNS = ("lr", "initial_lr", "fused", "foreach", "capturable", "differentiable")
_SQUARES = ("exp_avg_sq", "max_exp_avg_sq")  # second moments: never negative


def _plain(v):
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def _check_param_groups(path: Path, saved, current: list[dict]) -> None:
    if not isinstance(saved, list) or len(saved) != len(current):
        raise CheckpointError(f"{path}: optimizer parameter groups do not fit the run; tampered")
    for group, ours in zip(saved, current, strict=True):
        if not isinstance(group, dict) or "params" not in group:
            raise CheckpointError(f"{path}: optimizer parameter group is not valid; tampered")
        for key, value in ours.items():
            # a setting newer than the torch that wrote the file is simply absent from it
            if key in _HOW_IT_RUNS or key not in group or _plain(group[key]) == _plain(value):
                continue
            raise CheckpointError(
                f"{path}: optimizer setting {key}={excerpt(group[key])} is not the run's "
                f"{excerpt(_plain(value))}; tampered"
            )


def _with_lr(meta: dict, current: list[dict]) -> list[dict]:
    """The run's groups with the checkpoint's learning rate, as it was when saved (the
    schedule sets it again before the next step; a rollback saves it right away)."""
    groups = []
    for saved, ours in zip(meta["param_groups"], current, strict=True):
        lr = saved.get("lr")
        ok = isinstance(lr, float) and math.isfinite(lr) and lr >= 0
        groups.append({**ours, "lr": lr} if ok else ours)
    return groups


def _check_optimizer_state(path: Path, state: dict, params: list[torch.Tensor]) -> None:
    for idx, entries in state.items():
        if idx >= len(params):
            raise CheckpointError(f"{path}: optimizer state for parameter {idx}, which the run's "
                                  f"model (of {len(params)}) does not have; tampered")  # fmt: skip
        for key, v in entries.items():
            where = f"{path}: optimizer state {idx}/{key}"
            if key == "step":
                if v.numel() != 1 or not torch.isfinite(v).all() or v.item() < 0:
                    raise CheckpointError(f"{where} is not a step count; tampered")
                continue
            if v.shape != params[idx].shape:
                raise CheckpointError(
                    f"{where} has shape {list(v.shape)}, its parameter {list(params[idx].shape)}; "
                    "tampered"
                )
            if not torch.isfinite(v).all() or (key in _SQUARES and (v < 0).any()):
                raise CheckpointError(f"{where} holds non-finite or negative values; tampered")


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    epochs: int,
) -> TrainState:
    """Restore model and optimizer in place; return the checked training state with its RNG.

    Everything is checked before it is used: the weights fit the model and are finite (the
    trainer never saves others), the optimizer's settings are the run's and its moments fit
    their parameters, and the counters are in range for a run of ``epochs`` epochs of
    ``steps_per_epoch`` steps.
    """
    meta, tensors = read_checkpoint(path)
    model_state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    bad = [k for k, v in model_state.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise CheckpointError(f"{path}: weight {excerpt(bad[0])} is not finite; tampered")
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the run's model ({first})") from None
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim/"):
            parts = k.split("/", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                raise CheckpointError(f"{path}: unexpected tensor {k!r}; tampered")
            opt_state.setdefault(int(parts[1]), {})[parts[2]] = v
    current = optimizer.state_dict()["param_groups"]
    _check_param_groups(path, meta.get("param_groups"), current)
    _check_optimizer_state(
        path, opt_state, [p for g in optimizer.param_groups for p in g["params"]]
    )
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": _with_lr(meta, current)})
    except (ValueError, KeyError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{path}: optimizer state does not fit ({e})") from None
    if not isinstance(meta.get("state"), dict):
        raise CheckpointError(f"{path}: no training state in the checkpoint; tampered")
    state = TrainState.from_json(
        meta["state"], steps_per_epoch=steps_per_epoch, epochs=epochs, where=str(path)
    )
    state.rng = {k[len("rng/") :]: v for k, v in tensors.items() if k.startswith("rng/")}
    if not {"torch", "data"} <= state.rng.keys():
        raise CheckpointError(f"{path}: RNG state missing; tampered")
    return state
