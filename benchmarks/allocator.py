"""Allocator — vaelab with and without keeping freed buffers for reuse (``vaelab._malloc``).

vaelab asks glibc to keep freed buffers below 64 MiB instead of handing them back to the
kernel (which makes every later buffer of that size fault its pages in again). This measures
what that buys on two workloads whose temporaries are tens of MiB:

- ``loglik``: the K=5000 importance-sampled log p(x) of a 784-400-20 Bernoulli VAE (random
  weights: the allocation pattern does not depend on them) on the first ``--n-images``
  binarized test images, in chunks of 2**22 decoder outputs; seconds per image.
- ``iwae-k50``: one epoch of ``configs/iwae/iwae-1layer-k50-fast.yaml`` (the IWAE bound with
  k=50, batch 100) on the first ``--n-train`` binarized training images, through
  ``vaelab.training.Trainer``; milliseconds per step.

The allocator's state belongs to the process, so every run is a fresh spawned process
(``_common.run_isolated``): ``kept`` runs vaelab as shipped; ``glibc-defaults`` marks the
setting as already decided before vaelab can apply it, leaving glibc's own thresholds.
Each pair runs interleaved, ``--reps`` times.

Run: ``python benchmarks/allocator.py [--reps 3] [--threads 1]``. Output: one table per
workload, each followed by a line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

import torch

import _common

REPO = Path(__file__).resolve().parents[1]
IWAE_K50 = REPO / "configs" / "iwae" / "iwae-1layer-k50-fast.yaml"


def _set_allocator(keep: bool) -> None:
    from vaelab import _malloc

    if not keep:
        _malloc._applied = False  # decided already: vaelab leaves glibc's thresholds alone


def loglik(keep: bool, x: torch.Tensor, k: int) -> dict:
    _set_allocator(keep)
    from vaelab import VAE
    from vaelab.evaluation import log_likelihood

    torch.manual_seed(0)
    model = VAE(latent_dim=20, hidden=(400,), activation="relu").eval()
    images = x.reshape(-1, 1, 28, 28)
    log_likelihood(model, images[:1], k=k, max_elements=2**22)  # warm-up, outside the clock
    t0 = time.perf_counter()
    log_likelihood(model, images, k=k, max_elements=2**22)
    return {"s_per_image": (time.perf_counter() - t0) / len(images)}


def iwae_k50_epoch(keep: bool, x: torch.Tensor) -> dict:
    _set_allocator(keep)
    from vaelab.config import resolve
    from vaelab.training import Trainer

    images = x.reshape(-1, 1, 28, 28)
    flags = {"data.binarize": "none", "train.epochs": 1, "train.final_eval_n": 0}
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(
            resolve(IWAE_K50, [], flags),
            Path(d) / "run",
            progress=False,
            log=lambda msg: None,
            tensors={"train": images, "valid": images[:200]},
        )
        trainer.run()
        row = json.loads((Path(d) / "run" / "metrics.jsonl").read_text().splitlines()[0])
    return {"ms_per_step": 1e3 * row["epoch_seconds"] / trainer.steps_per_epoch}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--n-images", type=int, default=10, help="test images for loglik")
    ap.add_argument("--k", type=int, default=5000, help="importance samples (default 5000)")
    ap.add_argument("--n-train", type=int, default=3000, help="training images for iwae-k50")
    ap.add_argument("--data-dir", default=None, help="MNIST IDX folder")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    context = {"threads": args.threads, **_common.environment()}
    test = _common.load_binarized_mnist("test", data_dir=args.data_dir)[: args.n_images]
    train = _common.load_binarized_mnist("train", data_dir=args.data_dir)[: args.n_train]
    workloads = {
        "loglik": (functools.partial(loglik, x=test, k=args.k), "s_per_image"),
        "iwae-k50": (functools.partial(iwae_k50_epoch, x=train), "ms_per_step"),
    }
    for title, (fn, metric) in workloads.items():
        contenders = {
            name: functools.partial(_common.run_isolated, fn, keep, threads=args.threads)
            for name, keep in (("glibc-defaults", False), ("kept", True))
        }
        _common.interleave(
            contenders,
            reps=args.reps,
            reference="glibc-defaults",
            title=f"allocator, {title}",
            primary=metric,
            context={**context, "workload": title},
        )


if __name__ == "__main__":
    main()
