"""W1 — training throughput: one epoch of the pytorch/examples workload, images per second.

Workload (identical for every contender): the 784-400-20 MLP VAE with a Bernoulli decoder,
Adam(lr 1e-3), batch 128, one epoch over the first 55,000 MNIST training images, statically
binarized once with a fixed seed (``_common.load_binarized_mnist``; the same tensor is
handed to every contender), torch threads = ``--threads`` (default 2).

Contenders, run interleaved (A, B, C, A, B, C, ...) in this one process:

- ``pytorch-examples``: the loop of pytorch/examples ``vae/main.py``, re-implemented in
  ``_peers.py`` (DataLoader over an in-memory TensorDataset, ``loss.item()`` per batch);
- ``pythae``: Pythae 0.1.2's ``TrainingPipeline``/``BaseTrainer`` on a ``pythae.models.VAE``
  with the same networks; the clock covers its batch loop only (see ``_peers.pythae_train``);
- ``vaelab``: `vaelab train`'s trainer (:data:`vaelab_contender`), float32;
- ``vaelab-bf16``: the same with ``--precision bf16`` (bf16 matrix products; weights, the
  likelihood, the KL and the gradients handed to Adam in float32).

Also printed: the machine's float32 matmul peak measured here with torch, and each
contender's fraction of it: train FLOPs per image (3 × forward, 2 FLOPs per MAC, ≈ 3.91
MFLOP) × images/s ÷ peak.

Run: ``python benchmarks/w1_train_throughput.py [--reps 3] [--quick] [--threads 2]``.
Output: a table of medians, then one line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable

import torch

import _common
import _peers
import _vaelab

#: The vaelab contender (`_vaelab.train_factory`): ``f(data, args) -> run`` where ``data`` is the
#: binarized training tensor (N, 784) float32 that the peers get, ``args`` the parsed
#: command line (``args.batch_size``, ``args.lr``, ``args.seed``, ``args.threads``), and
#: ``run()`` trains a *fresh* model for one epoch with vaelab's fast trainer and returns at
#: least ``{"images_per_s": ..., "seconds": ..., "train_loss": mean −ELBO per image}``,
#: timing the epoch only (model construction outside the clock). ``None`` = not run.
vaelab_contender: Callable[[torch.Tensor, argparse.Namespace], Callable[[], dict]] | None = (
    _vaelab.train_factory
)


def _examples_run(data: torch.Tensor, args: argparse.Namespace) -> dict:
    out = _peers.examples_train_epoch(data, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    del out["model"]
    gc.collect()
    return out


def _pythae_run(data: torch.Tensor, args: argparse.Namespace) -> dict:
    model = _peers.build_pythae_vae(seed=args.seed)
    out = _peers.pythae_train(model, data, epochs=1, batch_size=args.batch_size, lr=args.lr)
    result = {
        "images_per_s": out["images_per_s"],
        "seconds": out["seconds"],
        "train_loss": out["train_loss"],
        # the whole pipeline call: data checks, sanity forward, epoch, final save
        "seconds_pipeline": out["seconds_total"],
    }
    del out, model
    gc.collect()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="discarded rounds first (default 1)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="10,000 images, 1 rep, no warm-up")
    ap.add_argument("--n-train", type=int, default=_common.N_TRAIN, help="training images")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1, help="model/shuffle seed (default 1)")
    ap.add_argument("--data-seed", type=int, default=0, help="binarization seed (default 0)")
    ap.add_argument("--data-dir", default=None, help="MNIST IDX folder")
    ap.add_argument("--reference", default="pytorch-examples", help="contender ratios refer to")
    ap.add_argument("--no-pythae", action="store_true", help="skip the Pythae contender")
    ap.add_argument("--no-bf16", action="store_true", help="skip vaelab's bf16 variant")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_train, args.reps, args.warmup = min(args.n_train, 10_000), 1, 0
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    _peers.quiet_pythae()
    busy_before = _common.check_machine_quiet()
    peak = _common.measure_matmul_peak(threads=args.threads)
    print(
        f"matmul peak ({args.threads} threads): {peak['peak_gflops']:.1f} GFLOP/s "
        f"{peak['by_size_gflops']}",
        file=sys.stderr,
    )
    data = _common.load_binarized_mnist("train", seed=args.data_seed, data_dir=args.data_dir)
    data = data[: args.n_train].contiguous()
    flops = _common.train_flops_per_image()

    contenders: dict[str, Callable[[], dict] | None] = {
        "vaelab": vaelab_contender(data, args) if vaelab_contender is not None else None,
        # mixed precision: bf16 matrix products, float32 weights, likelihood, KL and gradients
        "vaelab-bf16": vaelab_contender(data, args, **{"train.precision": "bf16"})
        if vaelab_contender is not None and not args.no_bf16
        else None,
        "pytorch-examples": lambda: _examples_run(data, args),
        "pythae": None
        if args.no_pythae or not _peers.HAVE_PYTHAE
        else lambda: _pythae_run(data, args),
    }
    context = {
        "workload": "MLP 784-400-20 Bernoulli VAE, Adam 1e-3, one epoch, static binarization",
        "n_train": len(data),
        "batch_size": args.batch_size,
        "lr": args.lr,
        "threads": args.threads,
        "train_flops_per_image": flops,
        "matmul_peak": peak,
        "cpu_busy_before": busy_before,
        "pythae": _pythae_version(),
        **_common.environment(),
    }
    summary = _common.interleave(
        contenders,
        reps=args.reps,
        reference=args.reference,
        warmup=args.warmup,
        title="W1 training throughput",
        primary="images_per_s",
        context=context,
        print_report=False,
    )
    _common.finish_with_peak(summary, peak, args.threads, flops)
    _faster_peer_ratios(summary)
    _common.report(summary)
    return summary


PEERS = ("pytorch-examples", "pythae")


def _faster_peer_ratios(summary: dict) -> None:
    """The issue's target is 2× the *faster* peer of the same run: record and note it."""
    medians = summary["medians"]
    rates = {p: medians[p]["images_per_s"] for p in PEERS if "images_per_s" in medians.get(p, {})}
    if not rates:
        return
    peer = max(rates, key=rates.get)
    ratios = {
        name: med["images_per_s"] / rates[peer]
        for name, med in medians.items()
        if name not in PEERS and "images_per_s" in med
    }
    summary["vs_faster_peer"] = {"peer": peer, "ratios": ratios}
    shown = ", ".join(f"{name} {r:.2f}x" for name, r in ratios.items())
    summary.setdefault("notes", []).append(
        f"vs the faster peer ({peer}, {rates[peer]:,.0f} images/s): {shown} (target 2x)"
    )


def _pythae_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("pythae")
    except Exception:
        return None


if __name__ == "__main__":
    main()
