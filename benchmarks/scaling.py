"""Scaling: one process against several ranks under torchrun, the same training in images/s.

Workloads, each trained by the real command line (``vaelab train --config ...``) on MNIST:

- ``w1``: the pytorch/examples recipe, ``configs/pytorch-examples.yaml`` (MLP 784-400-20,
  Bernoulli, dynamic binarization, Adam 1e-3, batch 128): W1's model and batch, through the
  hand-written MLP step;
- ``iwae2``: ``configs/iwae/vae-2layer-k1-fast.yaml`` (two stochastic layers, batch 100):
  the IWAE-table recipe, through autograd.

Layouts:

- on CPU (default ``--layouts 1x2,2x1``): ``PxT`` is P processes of T torch threads each
  (``1xT`` a plain ``vaelab train``, ``P>1`` under torchrun with gloo);
- on CUDA (``--gpus 1,2,4,8``, those the machine has): ``gpuN`` is N GPUs, one rank each
  (``gpu1`` a plain process, ``gpu1-torchrun`` the same GPU through torchrun, to show the
  cost of the data-parallel code path itself, ``N>1`` torchrun with NCCL).

Each run is a fresh process tree training ``--epochs`` (default 2) epochs; the figure is the
last epoch's ``train_images_per_s`` (all ranks' images: the global throughput), so the first
epoch warms up the allocator and the caches. Runs are interleaved (A, B, A, B, ...) and each
records ``other_load`` (see ``_common``). Printed: the table of medians, each layout's ratio
to the workload's first layout, then one line ``RESULT {json}``.

Run: ``python benchmarks/scaling.py [--reps 3] [--data-dir DIR] [--gpus 1,2,4,8]``.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import _common

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = {
    "w1": REPO / "configs" / "pytorch-examples.yaml",
    "iwae2": REPO / "configs" / "iwae" / "vae-2layer-k1-fast.yaml",
}
RUN_TIMEOUT_S = 1800


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(config: Path, layout: str, out: Path, args: argparse.Namespace) -> list[str]:
    """The command line of one run of ``config`` in ``layout`` (see the module docstring)."""
    train = ["train", "--config", str(config), "--out", str(out), "--quiet"]
    train += ["--data-dir", str(_common.mnist_dir(args.data_dir))]
    train += ["--epochs", str(args.epochs), "--set", "train.final_eval_n=0"]
    if layout.startswith("gpu"):
        ranks = int(layout[3:].split("-")[0])
        train += ["--device", "cuda"]
        through_torchrun = ranks > 1 or layout.endswith("-torchrun")
    else:
        ranks, threads = (int(v) for v in layout.split("x"))
        train += ["--device", "cpu", "--threads", str(threads)]
        through_torchrun = ranks > 1
    if not through_torchrun:
        return [sys.executable, "-m", "vaelab", *train]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks)]
    launcher += ["--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    return [*launcher, "-m", "vaelab", *train]


def contender(config: Path, layout: str, args: argparse.Namespace):
    def run() -> dict:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "run"
            cmd = command(config, layout, out, args)
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
            rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        last = rows[-1]
        return {"images_per_s": last["train_images_per_s"], "epoch_s": last["epoch_seconds"]}

    return run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per run; the last is timed")
    ap.add_argument("--layouts", default="1x2,2x1", help="CPU layouts PxT (default 1x2,2x1)")
    ap.add_argument(
        "--gpus", default=None, help="GPU counts, e.g. 1,2,4,8 (replaces --layouts; CUDA only)"
    )
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="(default: all)")
    ap.add_argument("--data-dir", default=None, help="MNIST IDX folder")
    args = ap.parse_args(argv)
    if args.gpus is None:
        args.layout_list = args.layouts.split(",")
    else:
        have = torch.cuda.device_count()
        counts = [n for n in (int(v) for v in args.gpus.split(",")) if n <= have]
        if not counts:
            ap.error(f"--gpus {args.gpus}: this machine has {have} CUDA devices")
        args.layout_list = ["gpu1", "gpu1-torchrun"] + [f"gpu{n}" for n in counts if n > 1]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    contenders = {
        f"{name} {layout}": contender(WORKLOADS[name], layout, args)
        for name in args.workloads.split(",")
        for layout in args.layout_list
    }
    context = {
        "workloads": {name: str(WORKLOADS[name].relative_to(REPO)) for name in WORKLOADS},
        "layouts": args.layout_list,
        "epochs": args.epochs,
        "timed": "the last epoch's train_images_per_s (all ranks' images)",
        "gpus": torch.cuda.device_count(),
        "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_busy_before": _common.check_machine_quiet(),
        **_common.environment(),
    }
    summary = _common.interleave(
        contenders,
        reps=args.reps,
        title="scaling",
        primary="images_per_s",
        context=context,
        print_report=False,
    )
    _per_workload_ratios(summary, args)
    _common.report(summary)
    return summary


def _per_workload_ratios(summary: dict, args: argparse.Namespace) -> None:
    """Each layout's images/s over its workload's first layout's, in the same run."""
    medians, ratios = summary["medians"], {}
    for name in args.workloads.split(","):
        base = medians[f"{name} {args.layout_list[0]}"]["images_per_s"]
        ratios[name] = {
            layout: medians[f"{name} {layout}"]["images_per_s"] / base
            for layout in args.layout_list[1:]
        }
        shown = ", ".join(f"{layout} {r:.2f}x" for layout, r in ratios[name].items())
        summary.setdefault("notes", []).append(f"{name}: vs {args.layout_list[0]}: {shown}")
    summary["scaling"] = ratios


if __name__ == "__main__":
    main()
