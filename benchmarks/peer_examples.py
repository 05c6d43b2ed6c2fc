"""The pytorch/examples ``vae/main.py`` peer as a script of its own, run as its users run it.

``train``: reads MNIST's IDX files itself (as torchvision's ``datasets.MNIST`` does, into one
uint8 tensor), binarizes the first 55,000 training images once with the benchmarks' fixed
seed (``_common.load_binarized_mnist``, the same bits W1's peer gets) and trains
``--epochs`` epochs with the loop of ``_peers.ExamplesRecipe``: a shuffling ``DataLoader``,
``loss.item()`` every batch and, like the original, a progress line every ``--log-interval``
batches. No test pass and no sample images after each epoch (the original does both; left
out, so the peer is timed at its best). ``--save PATH`` writes the weights (canonical
safetensors, see ``_peers.CANONICAL_SHAPES``).

``evaluate``: ``_peers.examples_log_likelihood`` (the straightforward batched K-sample
estimator) on the first ``--examples`` test images, binarized the same way, with the weights
of ``--weights``; prints the mean log p(x).

Run: ``python benchmarks/peer_examples.py train --epochs 4 [--threads 1] [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# _peers imports Pythae when it is installed; this script never uses it, and its import would
# be charged to the peer's start-up. A None entry makes that import fail as if not installed.
sys.modules.setdefault("pythae", None)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import _common  # noqa: E402
import _peers  # noqa: E402


def train(args: argparse.Namespace) -> None:
    data = _common.load_binarized_mnist("train", seed=args.data_seed, data_dir=args.data_dir)
    recipe = _peers.ExamplesRecipe(
        data, batch_size=args.batch_size, lr=args.lr, seed=args.seed, log_interval=args.log_interval
    )
    for epoch in range(1, args.epochs + 1):
        out = recipe.epoch()
        print(f"====> Epoch: {epoch} Average loss: {out['train_loss']:.4f}")
    if args.save:
        _peers.save_canonical(_peers.examples_to_canonical(recipe.model), args.save)


def evaluate(args: argparse.Namespace) -> None:
    model = _peers.examples_from_canonical(_peers.load_canonical(args.weights))
    x = _common.load_binarized_mnist("test", seed=args.data_seed, data_dir=args.data_dir)
    generator = torch.Generator().manual_seed(args.seed)
    out = _peers.examples_log_likelihood(model, x[: args.examples], args.k, generator=generator)
    print(f"log p(x) (K={args.k}, n={args.examples}): {out['log_px'].mean():.3f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the pytorch/examples VAE")
    t.add_argument("--epochs", type=int, default=10, help="(default 10, as the original)")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--log-interval", type=int, default=10, help="batches between progress lines")
    t.add_argument("--save", metavar="PATH", help="write the trained weights here (safetensors)")
    t.set_defaults(func=train)
    e = sub.add_parser("evaluate", help="importance-sampled log p(x) of saved weights")
    e.add_argument("--weights", required=True, metavar="PATH")
    e.add_argument("--k", type=int, default=5000)
    e.add_argument("--examples", type=int, default=100, help="first N test images")
    e.set_defaults(func=evaluate)
    for p in (t, e):
        p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
        p.add_argument("--seed", type=int, default=1, help="torch seed (default 1, as W1)")
        p.add_argument("--data-seed", type=int, default=0, help="binarization seed (default 0)")
        p.add_argument("--data-dir", default=None, help="MNIST IDX folder")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    main()
