"""Running vaelab under torchrun in tests: 127.0.0.1 only, gloo, bounded in time.

Every subprocess has a timeout; the data are a small ``.npy`` file of MNIST digits whose
training split ends in a batch of one example, so that one of two ranks has no rows in it
(the stand-in path of ``Shard.rows``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from vaelab.data.builtin import load_split
from vaelab.io import load_tensors

TIMEOUT_S = 240  # one torchrun job, start-up included; the jobs here take ~10 s
N_IMAGES = 2713  # the 90/5/5 split of a .npy: 2441 train = 40 × 61 + 1, 136 valid, 136 test
BATCH = 61  # 41 steps an epoch; the last holds one example
STEPS_PER_EPOCH = 41


def make_digits(path: Path) -> Path:
    """The first ``N_IMAGES`` digits of the built-in mnist-mini, as a uint8 ``.npy``."""
    images = load_split("mnist-mini", "train").images[:N_IMAGES]
    np.save(path, images.numpy())
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(data_home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # gloo binds to the interface of the host name unless told: keep every socket on loopback
    env.update(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", VAELAB_DATA=str(data_home))
    env.pop("VAELAB_DEBUG", None)
    env.update(extra)
    return env


def torchrun_cmd(*args: str, nproc: int = 2, module: bool = True) -> list[str]:
    """``torchrun --nproc-per-node N`` on 127.0.0.1 (a free port), running ``-m vaelab ...``
    or, with ``module=False``, a script."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    cmd += ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    return [*cmd, "-m", "vaelab", *args] if module else [*cmd, *args]


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The final training state's tensors (model, optimizer moments, generators)."""
    return load_tensors(Path(run_dir) / "checkpoint.safetensors")


def relative_difference(a: dict, b: dict, prefix: str = "model/") -> float:
    """‖a − b‖ / ‖a‖ over the tensors whose names start with ``prefix``."""
    keys = [k for k in a if k.startswith(prefix)]
    num = sum(((a[k] - b[k]).double() ** 2).sum() for k in keys) ** 0.5
    den = sum((a[k].double() ** 2).sum() for k in keys) ** 0.5
    return float(num / den)
