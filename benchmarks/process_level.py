"""Speed as a user sees it: whole commands, each a fresh process, against the peer's script.

Contenders, run interleaved (A, B, C, D, A, B, ...), each round a fresh process per command:

- ``vaelab train``: ``python -m vaelab train --config configs/pytorch-examples.yaml
  --data-dir DIR --out TMP --set train.final_eval_n=0 --epochs E`` with every other setting
  as a user gets it (dynamic binarization, validation, checkpoints, progress bar);
- ``pytorch-examples``: ``python benchmarks/peer_examples.py train --epochs E`` (the
  pytorch/examples loop in its own process; static binarization, no test pass);
- the W1 in-process loops beside them (``_vaelab.train_factory`` and
  ``_peers.examples_train_epoch``, one epoch in this process, the epoch alone on the clock).

Each process contender runs for ``E = 1`` and ``E = --epochs`` (default 4); the per-epoch
figure is (t_E − t_1) ÷ (E − 1), which leaves out start-up, data loading and exit, and
``epoch_images_per_s`` is 55,000 images over it. With ``--eval-examples N`` (> 0) the
evaluation commands join in: ``python -m vaelab evaluate RUN --k K --examples N`` against
``peer_examples.py evaluate`` (the straightforward batched estimator), each on a model it
trained for one epoch before the rounds.

``--threads N`` passes ``--threads N`` to both training commands, sets ``OMP_NUM_THREADS=N``
for every child process (``vaelab evaluate`` has no thread flag) and N threads here; without
it every contender gets torch's default, as a user does.

Run: ``python benchmarks/process_level.py [--reps 5] [--epochs 4] [--threads 1]
[--eval-examples 50]``. Output: a table of medians, then one line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import _common
import _peers

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "pytorch-examples.yaml"
PEER = Path(__file__).resolve().parent / "peer_examples.py"
VAELAB, EXAMPLES = "vaelab train", "pytorch-examples"


def timed(cmd: list[str], args: argparse.Namespace) -> float:
    """Wall-clock seconds of one command in a fresh process (its output kept for errors)."""
    env = dict(args.env)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds


def train_command(who: str, epochs: int, out: Path, args: argparse.Namespace) -> list[str]:
    threads = ["--threads", str(args.threads)] if args.threads else []
    data = ["--data-dir", str(args.data_dir), "--epochs", str(epochs), *threads]
    if who == VAELAB:
        cmd = [sys.executable, "-m", "vaelab", "train", "--config", str(CONFIG), *data]
        return [*cmd, "--out", str(out), "--set", "train.final_eval_n=0"]
    return [sys.executable, str(PEER), "train", *data, "--save", str(out)]


def process_contender(who: str, args: argparse.Namespace):
    def run() -> dict:
        seconds = {}
        for epochs in (1, args.epochs):
            with tempfile.TemporaryDirectory() as d:
                seconds[epochs] = timed(train_command(who, epochs, Path(d) / "out", args), args)
        per_epoch = (seconds[args.epochs] - seconds[1]) / (args.epochs - 1)
        return {
            "cmd_1_epoch_s": seconds[1],
            f"cmd_{args.epochs}_epochs_s": seconds[args.epochs],
            "per_epoch_s": per_epoch,
            "epoch_images_per_s": _common.N_TRAIN / per_epoch,
        }

    return run


def in_process_contenders(args: argparse.Namespace) -> dict:
    # imported here, after main() kept the environment the commands get: importing vaelab
    # sets GOMP_SPINCOUNT in os.environ, which the peer's process must not inherit
    import _vaelab

    data = _common.load_binarized_mnist("train", data_dir=args.data_dir)
    w1 = argparse.Namespace(batch_size=128, lr=1e-3, seed=1, threads=torch.get_num_threads())
    vaelab_epoch = _vaelab.train_factory(data, w1)

    def as_epoch(out: dict) -> dict:
        return {"per_epoch_s": out["seconds"], "epoch_images_per_s": out["images_per_s"]}

    return {
        f"{VAELAB} (in-process loop)": lambda: as_epoch(vaelab_epoch()),
        f"{EXAMPLES} (in-process loop)": lambda: as_epoch(_peers.examples_train_epoch(data)),
    }


def eval_contenders(args: argparse.Namespace, workdir: Path) -> dict:
    """Train each side's model once (one epoch), then time its evaluation command."""
    run_dir, weights = workdir / "run", workdir / "peer.safetensors"
    timed(train_command(VAELAB, 1, run_dir, args), args)
    timed(train_command(EXAMPLES, 1, weights, args), args)
    k, n = str(args.eval_k), str(args.eval_examples)
    ours = [sys.executable, "-m", "vaelab", "evaluate", str(run_dir), "--k", k, "--examples", n]
    peer = [sys.executable, str(PEER), "evaluate", "--weights", str(weights), "--k", k]
    peer += ["--examples", n, "--data-dir", str(args.data_dir)]
    return {
        "vaelab evaluate": lambda: {"eval_cmd_s": timed(ours, args)},
        "pytorch-examples estimator": lambda: {"eval_cmd_s": timed(peer, args)},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--epochs", type=int, default=4, help="the longer runs' epochs (default 4)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--eval-examples", type=int, default=0, help="N for evaluate (0: skip)")
    ap.add_argument("--eval-k", type=int, default=5000, help="K for evaluate (default 5000)")
    ap.add_argument("--no-in-process", action="store_true", help="skip the in-process loops")
    ap.add_argument("--data-dir", default=None, help="MNIST IDX folder")
    args = ap.parse_args(argv)
    if args.epochs < 2:
        ap.error("--epochs must be at least 2")
    args.data_dir = _common.mnist_dir(args.data_dir)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.env = dict(os.environ)
    if args.threads:
        torch.set_num_threads(args.threads)
    busy = _common.check_machine_quiet()
    contenders = {name: process_contender(name, args) for name in (VAELAB, EXAMPLES)}
    if not args.no_in_process:
        contenders.update(in_process_contenders(args))
    with tempfile.TemporaryDirectory() as workdir:
        if args.eval_examples > 0:
            contenders.update(eval_contenders(args, Path(workdir)))
        summary = _common.interleave(
            contenders,
            reps=args.reps,
            reference=EXAMPLES,
            title="process level",
            primary="epoch_images_per_s",
            context={
                "threads": args.threads or "torch's default",
                "epochs": args.epochs,
                "eval": {"k": args.eval_k, "examples": args.eval_examples},
                "cpu_busy_before": busy,
                **_common.environment(),
            },
            print_report=False,
        )
    summary["context"]["cpu_busy_after"] = _common.check_machine_quiet()
    _speedups(summary, args)
    _common.report(summary)
    return summary


def _speedups(summary: dict, args: argparse.Namespace) -> None:
    """vaelab's speed over the peer's (their time ÷ ours), figure by figure, same run."""
    med, notes = summary["medians"], summary.setdefault("notes", [])
    pairs = [(VAELAB, EXAMPLES, m) for m in ("cmd_1_epoch_s", f"cmd_{args.epochs}_epochs_s")]
    pairs += [(VAELAB, EXAMPLES, "per_epoch_s")]
    loops = (f"{VAELAB} (in-process loop)", f"{EXAMPLES} (in-process loop)")
    pairs += [
        (*loops, "per_epoch_s"),
        ("vaelab evaluate", "pytorch-examples estimator", "eval_cmd_s"),
    ]
    speedups = {}
    for ours, peer, metric in pairs:
        if metric in med.get(ours, {}) and metric in med.get(peer, {}):
            key = f"{ours} vs {peer}: {metric}"
            speedups[key] = med[peer][metric] / med[ours][metric]
            notes.append(f"{key}: {speedups[key]:.2f}x (peer's time / vaelab's)")
    summary["speedups"] = speedups
    loads = [r["other_load"] for rs in summary["runs"].values() for r in rs if "other_load" in r]
    if loads:
        load = sorted(loads)[len(loads) // 2]
        cores = load * (os.cpu_count() or 1)
        notes.append(
            f"other processes used {load:.0%} of the machine's CPU time (median over the runs; "
            f"about {cores:.1f} of {os.cpu_count()} cores): every contender ran beside them"
        )


if __name__ == "__main__":
    main()
