"""W3 — time to quality: training wall-clock until test NLL ≤ 95 nats (K = 1000).

Each contender trains its *default recipe* on the statically binarized MNIST training set
(the same tensor for everyone), epoch by epoch. After every ``--eval-every`` epochs the
clock stops and the model's weights (as a canonical state dict, ``_peers.CANONICAL_SHAPES``)
are scored by *one* common estimator, ``_peers.examples_log_likelihood`` with K = ``--k``
and a fixed seed, on a fixed subset (the first ``--n-test``) of the statically binarized
test images. Training stops at NLL ≤ ``--target``, at ``--budget-s`` seconds of training
time, or at ``--max-epochs``. Reported: whether and when (training seconds, epochs) the
target was reached, else the best NLL reached within the budget, and the trajectory.

Clock: training time only. For pytorch/examples that is its batch loop per epoch (its
per-epoch ``test()`` pass and sample images are evaluation/printing and left out); for
Pythae, the time from its ``on_train_begin`` to each ``on_epoch_end`` (its per-epoch
deep copy of the "best" model included), minus our evaluations; data loading and model
construction excluded for both.

Recipes:

- ``pytorch-examples``: Adam(1e-3), batch 128 (its script's defaults; 10 epochs there,
  here until the target or budget);
- ``pythae``: ``--pythae-recipe defaults`` = ``BaseTrainerConfig()``'s own defaults (Adam,
  lr 1e-4, batch 64); ``examples`` = lr 1e-3, batch 128 as in W1;
- ``vaelab``: filled in through :data:`vaelab_recipe`.

The defaults (budget, subset size) are what a 2-core machine affords in a few minutes per
contender; the README quotes ``--budget-s 120 --n-test 500 --eval-every 1``.

Run: ``python benchmarks/w3_time_to_quality.py [--budget-s 900] [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Mapping

import torch

import _common
import _peers
import _vaelab

#: vaelab's best CPU recipe (`_vaelab.time_to_quality_recipe`): ``f(train, args) -> iterator``
#: where ``train`` is the (N, 784) statically binarized training tensor the peers get and
#: ``args`` the parsed command line. Each ``next()`` trains one more epoch and yields
#: ``(train_seconds_so_far, canonical_state_dict)``, the seconds counting training only.
vaelab_recipe: (
    Callable[[torch.Tensor, argparse.Namespace], Iterator[tuple[float, Mapping]]] | None
) = _vaelab.time_to_quality_recipe


class Tracker:
    """Scores a contender after each epoch with the common estimator; decides when to stop."""

    def __init__(self, name: str, x_test: torch.Tensor, args: argparse.Namespace) -> None:
        self.name, self.x_test, self.args = name, x_test, args
        self.trajectory: list[dict] = []
        self.reached_at: dict | None = None
        self.eval_seconds = 0.0

    def nll(self, sd: Mapping[str, torch.Tensor]) -> float:
        t0 = time.perf_counter()
        model = _peers.examples_from_canonical(sd)
        gen = torch.Generator().manual_seed(self.args.eval_seed)
        out = _peers.examples_log_likelihood(model, self.x_test, self.args.k, generator=gen)
        self.eval_seconds += time.perf_counter() - t0
        return float(-out["log_px"].mean())

    def after_epoch(self, epoch: int, train_seconds: float, sd_fn: Callable[[], Mapping]) -> bool:
        """Record one epoch; True when the contender should stop."""
        a = self.args
        over = train_seconds >= a.budget_s or epoch >= a.max_epochs
        if epoch % a.eval_every and not over:
            return False
        nll = self.nll(sd_fn())
        self.trajectory.append({"epoch": epoch, "train_seconds": train_seconds, "nll": nll})
        print(
            f"[W3] {self.name}: epoch {epoch}, {train_seconds:.1f} s training, "
            f"test NLL (K={a.k}, n={len(self.x_test)}) {nll:.2f}",
            file=sys.stderr,
            flush=True,
        )
        if nll <= a.target and self.reached_at is None:
            self.reached_at = self.trajectory[-1]
            return True
        return over

    def result(self) -> dict:
        best = min(self.trajectory, key=lambda r: r["nll"]) if self.trajectory else None
        last = self.trajectory[-1] if self.trajectory else {}
        return {
            "reached": self.reached_at is not None,
            "seconds_to_target": self.reached_at["train_seconds"] if self.reached_at else None,
            "epochs_to_target": self.reached_at["epoch"] if self.reached_at else None,
            "best_nll": best["nll"] if best else None,
            "final_nll": last.get("nll"),
            "train_seconds": last.get("train_seconds"),
            "epochs": last.get("epoch"),
            "eval_seconds": self.eval_seconds,
            "trajectory": self.trajectory,
        }


def run_examples(train: torch.Tensor, tracker: Tracker, args: argparse.Namespace) -> dict:
    recipe = _peers.ExamplesRecipe(train, batch_size=128, lr=1e-3, seed=args.seed)
    clock = 0.0
    for epoch in range(1, args.max_epochs + 1):
        clock += recipe.epoch()["seconds"]
        if tracker.after_epoch(epoch, clock, lambda: _peers.examples_to_canonical(recipe.model)):
            break
    return tracker.result()


def run_pythae(train: torch.Tensor, tracker: Tracker, args: argparse.Namespace) -> dict:
    batch_size, lr = (64, 1e-4) if args.pythae_recipe == "defaults" else (128, 1e-3)
    model = _peers.build_pythae_vae(seed=args.seed)

    def on_epoch_end(epoch: int, seconds: float, m) -> bool:
        return tracker.after_epoch(epoch, seconds, lambda: _peers.pythae_to_canonical(m))

    _peers.pythae_train(
        model,
        train,
        epochs=args.max_epochs,
        batch_size=batch_size,
        lr=lr,
        on_epoch_end=on_epoch_end,
    )
    res = tracker.result()
    res["recipe"] = f"Adam lr {lr}, batch {batch_size}"
    return res


def run_vaelab(train: torch.Tensor, tracker: Tracker, args: argparse.Namespace) -> dict:
    assert vaelab_recipe is not None
    for epoch, (seconds, sd) in enumerate(vaelab_recipe(train, args), start=1):
        if tracker.after_epoch(epoch, seconds, lambda sd=sd: sd):
            break
    return tracker.result()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=float, default=95.0, help="test NLL target, nats")
    ap.add_argument("--k", type=int, default=1000, help="importance samples (default 1000)")
    ap.add_argument("--n-test", type=int, default=500, help="first N test images (default 500)")
    ap.add_argument("--budget-s", type=float, default=900.0, help="training seconds per contender")
    ap.add_argument("--max-epochs", type=int, default=500)
    ap.add_argument("--eval-every", type=int, default=1, help="epochs between evaluations")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--pythae-recipe", choices=("defaults", "examples"), default="defaults")
    ap.add_argument(
        "--contenders",
        default="vaelab,pytorch-examples,pythae",
        help="comma-separated subset to run",
    )
    ap.add_argument("--quick", action="store_true", help="2 epochs each, 100 test images")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=0, help="binarization seed (default 0)")
    ap.add_argument("--data-dir", default=None, help="MNIST IDX folder")
    args = ap.parse_args(argv)
    if args.quick:
        args.max_epochs, args.n_test = 2, min(args.n_test, 100)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    _peers.quiet_pythae()
    busy_before = _common.check_machine_quiet()
    train = _common.load_binarized_mnist("train", seed=args.data_seed, data_dir=args.data_dir)
    x_test = _common.load_binarized_mnist("test", seed=args.data_seed, data_dir=args.data_dir)
    x_test = x_test[: args.n_test].contiguous()
    wanted = set(args.contenders.split(","))

    def contender(name: str, fn) -> Callable[[], dict] | None:
        if name not in wanted:
            return None
        return lambda: fn(train, Tracker(name, x_test, args), args)

    contenders = {
        "vaelab": contender("vaelab", run_vaelab) if vaelab_recipe is not None else None,
        "pytorch-examples": contender("pytorch-examples", run_examples),
        "pythae": contender("pythae", run_pythae) if _peers.HAVE_PYTHAE else None,
    }
    context = {
        "target_nll": args.target,
        "k": args.k,
        "n_test": len(x_test),
        "estimator": "_peers.examples_log_likelihood on canonical weights, fixed seed",
        "budget_s": args.budget_s,
        "max_epochs": args.max_epochs,
        "pythae_recipe": args.pythae_recipe,
        "threads": args.threads,
        "cpu_busy_before": busy_before,
        **_common.environment(),
    }
    summary = _common.interleave(
        contenders,
        reps=1,
        reference="pytorch-examples",
        title="W3 time to quality",
        primary="best_nll",
        context=context,
        print_report=False,
    )
    summary["trajectories"] = {n: r[0]["trajectory"] for n, r in summary["runs"].items()}
    summary["context"]["cpu_busy_after"] = _common.check_machine_quiet()
    _common.report(summary)
    return summary


if __name__ == "__main__":
    main()
