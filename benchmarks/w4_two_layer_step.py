"""W4 — the two-stochastic-layer VAE's training step: hand-written, autograd, torch.compile.

Workloads: the recipes ``configs/iwae/vae-2layer-k1-fast.yaml`` (ELBO, k=1) and
``configs/iwae/iwae-2layer-k5-fast.yaml`` (IWAE bound, k=5, DReG): Burda et al.'s MNIST network
(784 → 200-200 → z1 100 → 100-100 → z2 50, tanh, Bernoulli), Adam, batch 100, on the first
55,000 MNIST training images binarized once with a fixed seed (``_common``; the same tensor
for every contender), torch threads = ``--threads`` (default 2).

Contenders, each `vaelab train`'s :class:`~vaelab.training.Trainer` with one setting changed:

- ``fused``: ``train.fused=true`` (the default), the hand-written step of
  ``vaelab/training/steps/fused_hierarchical.py``;
- ``autograd``: ``train.fused=false``;
- ``compile``: ``train.fused=false, train.compile=true`` (torch.compile of the autograd step);
- with ``--bf16`` also ``fused-bf16`` and ``autograd-bf16`` (``train.precision=bf16``: the
  hand-written step's products in bfloat16; autograd under CPU autocast). Whether bfloat16
  pays depends on the CPU: with AMX tiles (Intel Sapphire Rapids and later) oneDNN's bfloat16
  products run ~5x the float32 rate, without them they are no faster than float32.

Each contender first trains one epoch from the same seed (its train and validation ELBO are
reported: the three agree to float noise unless a step went non-finite and was skipped, which
is reported too; the compile contender compiles during it).
Then the timed part, interleaved (A, B, C, A, B, C, ...): ``--steps`` consecutive training
steps, ``Trainer._train_step`` on batches gathered beforehand — the forward and backward
passes, the non-finite check and fused Adam, as in the training loop — ``ms_per_step``.
Also given: the step's matrix-product FLOPs and the time they would take at the matmul peak
measured here (the floor for any implementation in float32).

Run: ``python benchmarks/w4_two_layer_step.py [--reps 5] [--steps 100] [--bf16] [--quick]``.
Output: per recipe a table of medians, then one line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

import _common
from vaelab.training.steps import FusedHierarchicalStep

REPO = Path(__file__).resolve().parents[1]
RECIPES = {
    "vae-2layer-k1": REPO / "configs" / "iwae" / "vae-2layer-k1-fast.yaml",
    "iwae-2layer-k5": REPO / "configs" / "iwae" / "iwae-2layer-k5-fast.yaml",
}
CONTENDERS = {
    "fused": {"train.fused": True},
    "autograd": {"train.fused": False},
    "compile": {"train.fused": False, "train.compile": True},
}
BF16 = {
    "fused-bf16": {"train.fused": True, "train.precision": "bf16"},
    "autograd-bf16": {"train.fused": False, "train.precision": "bf16"},
}
TARGETS = {"autograd": 2.5, "compile": 1.5}  # the speed-ups the project wants of `fused`


def step_matmul_flops(model, k: int, batch: int) -> float:
    """FLOPs of the matrix products one training step needs (2 per multiply-accumulate).

    Forward: q(z1|x) on B rows, q(z2|z1), p(z1|z2) and p(x|z1) on kB rows. Backward: a weight
    gradient for every layer and an input gradient for every layer but q(z1|x)'s first.
    (The DReG step also carries a second gradient through q(z2|z1)'s input products; not
    counted.)
    """

    def macs(net, rows):
        return rows * sum(m.in_features * m.out_features for m in net if hasattr(m, "weight"))

    forward = macs(model.q1, batch) + sum(
        macs(net, k * batch) for net in (model.q2, model.p1, model.decoder)
    )
    first = model.q1[0]
    return 2 * (3 * forward - batch * first.in_features * first.out_features)


def make_trainer(recipe: Path, setting: dict, images, valid, args, run_dir: Path):
    from vaelab.config import resolve
    from vaelab.training import Trainer

    flags = {
        "data.binarize": "none",  # binarized once, the same bits for every contender
        "train.epochs": 1,
        "train.seed": args.seed,
        "train.threads": args.threads,
        "train.final_eval_n": 0,
        "train.checkpoint_every_s": 1e9,
        **setting,
    }
    return Trainer(
        resolve(recipe, [], flags),
        run_dir,
        progress=False,
        log=lambda msg: None,
        tensors={"train": images, "valid": valid},
    )


def one_epoch(trainer, run_dir: Path) -> dict:
    trainer.run()
    row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    return {
        "train_elbo": row["train_elbo"],
        "train_iwae_bound": row.get("train_iwae_bound"),
        "val_elbo": row["val_elbo"],
        "epoch_seconds": row["epoch_seconds"],
        "skipped_steps": row["skipped_steps"],  # non-finite steps the trainer left out
    }


def timed_steps(trainer, batches: list[torch.Tensor]):
    """A contender for :func:`_common.interleave`: ``len(batches)`` consecutive steps."""

    def run() -> dict:
        t0 = time.perf_counter()
        for x in batches:
            trainer._train_step(x, 1.0)
        seconds = time.perf_counter() - t0
        return {"ms_per_step": 1e3 * seconds / len(batches)}

    return run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="discarded rounds first (default 1)")
    ap.add_argument("--steps", type=int, default=100, help="steps per timed rep (default 100)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--n-train", type=int, default=_common.N_TRAIN, help="training images")
    ap.add_argument("--seed", type=int, default=1, help="model/shuffle seed (default 1)")
    ap.add_argument("--data-seed", type=int, default=0, help="binarization seed (default 0)")
    ap.add_argument("--data-dir", default=None, help="MNIST IDX folder")
    ap.add_argument(
        "--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES), help="(all)"
    )
    ap.add_argument("--no-compile", action="store_true", help="skip the compile contender")
    ap.add_argument("--bf16", action="store_true", help="add fused-bf16 and autograd-bf16")
    ap.add_argument("--quick", action="store_true", help="5,000 images, 20 steps, 1 rep")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_train, args.steps, args.reps, args.warmup = min(args.n_train, 5000), 20, 1, 0
    return args


def run_recipe(name: str, args, images, valid, peak: dict) -> dict:
    recipe = RECIPES[name]
    trainers, epochs = {}, {}
    with tempfile.TemporaryDirectory() as d:
        for contender, setting in (CONTENDERS | (BF16 if args.bf16 else {})).items():
            if contender == "compile" and args.no_compile:
                continue
            print(f"[{name}] one epoch: {contender}", file=sys.stderr, flush=True)
            run_dir = Path(d) / contender
            trainer = make_trainer(recipe, setting, images, valid, args, run_dir)
            epochs[contender] = one_epoch(trainer, run_dir)
            trainers[contender] = trainer
    for contender in ("fused", "fused-bf16"):
        step = trainers[contender].step if contender in trainers else None
        if step is not None and not isinstance(step, FusedHierarchicalStep):
            raise RuntimeError(f"{name}: {contender} did not take the hand-written step")
    first = trainers["fused"]
    batch = first.cfg.train.batch_size
    batches = [
        first.data.train_batch(images[i : i + batch], first.data_gen)
        for i in range(0, args.steps * batch, batch)
    ]
    if len(batches) < args.steps or batches[-1].shape[0] != batch:
        raise SystemExit(f"--steps {args.steps} needs {args.steps * batch} training images")
    flops = step_matmul_flops(first.model, first.cfg.train.k, batch)
    summary = _common.interleave(
        {c: timed_steps(t, batches) for c, t in trainers.items()},
        reps=args.reps,
        reference="fused",
        warmup=args.warmup,
        title=f"W4 {name} training step",
        primary="ms_per_step",
        context={
            "recipe": str(recipe.relative_to(REPO)),
            "threads": args.threads,
            "n_train": len(images),
            "steps_per_rep": args.steps,
            "batch_size": batch,
            "step_matmul_gflop": flops / 1e9,
            "matmul_floor_ms": 1e3 * flops / (peak["peak_gflops"] * 1e9),
            "matmul_peak": peak,
            "one_epoch": epochs,
            **_common.environment(),
        },
        print_report=False,
    )
    notes = summary.setdefault("notes", [])
    med = summary["medians"]
    for other, target in TARGETS.items():
        if other in med:
            speedup = med[other]["ms_per_step"] / med["fused"]["ms_per_step"]
            summary[f"fused_vs_{other}"] = speedup
            notes.append(f"fused is {speedup:.2f}x {other} (target {target}x)")
    if "fused-bf16" in med:
        for other in ("autograd", "autograd-bf16", "compile"):
            if other in med:
                speedup = med[other]["ms_per_step"] / med["fused-bf16"]["ms_per_step"]
                summary[f"fused-bf16_vs_{other}"] = speedup
                notes.append(f"fused-bf16 is {speedup:.2f}x {other}")
    floor = summary["context"]["matmul_floor_ms"]
    notes.append(
        f"matrix products: {flops / 1e9:.2f} GFLOP per step, {floor:.2f} ms at the measured "
        f"peak ({peak['peak_gflops']:.0f} GFLOP/s)"
    )
    for contender, row in epochs.items():
        bound = row["train_iwae_bound"]
        notes.append(
            f"one epoch, {contender}: train ELBO {row['train_elbo']:.3f}"
            + (f", train IWAE bound {bound:.3f}" if bound is not None else "")
            + f", val ELBO {row['val_elbo']:.3f}, {row['skipped_steps']} non-finite steps "
            f"skipped, {row['epoch_seconds']:.1f} s"
            + (" (compilation included)" if contender == "compile" else "")
        )
    _common.report(summary)
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    _common.check_machine_quiet()
    peak = _common.measure_matmul_peak(threads=args.threads)
    print(
        f"matmul peak ({args.threads} threads): {peak['peak_gflops']:.1f} GFLOP/s", file=sys.stderr
    )
    train = _common.load_binarized_mnist("train", seed=args.data_seed, data_dir=args.data_dir)
    images = train[: args.n_train].reshape(-1, 1, 28, 28).contiguous()
    valid = _common.load_binarized_mnist("valid", seed=args.data_seed, data_dir=args.data_dir)
    valid = valid[:1000].reshape(-1, 1, 28, 28)  # validated after the epoch, off the clock
    return {name: run_recipe(name, args, images, valid, peak) for name in args.recipes}


if __name__ == "__main__":
    main()
