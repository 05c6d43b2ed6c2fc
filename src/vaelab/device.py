"""Which device a command runs on, and the autocast precision of the networks."""

from __future__ import annotations

import contextlib

import torch

from vaelab.errors import ConfigError, excerpt


def resolve_device(name: str, key: str = "device") -> torch.device:
    """``auto``: CUDA when available, else the CPU. A CUDA device that is not there is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):  # torch's parse errors differ by version
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{key}: must be auto, cpu, cuda or cuda:N, got {excerpt(name)}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}: {name} requested but CUDA is not available")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            # torch would accept the name and fail at the first tensor with a traceback
            raise ConfigError(
                f"{key}: {name} requested but this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    return device


def autocast(device: torch.device, precision: str):
    """A factory of autocast contexts for ``precision`` (``fp32``: a no-op)."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)
