"""``vaelab sample``, ``reconstruct`` and ``interpolate``: what the model draws, as pictures."""

from __future__ import annotations

import sys

from vaelab.cli.options import add_data_dir, add_run, add_split
from vaelab.errors import VaelabError

_OUT_HELP = "output: images as .png (grid) or .npy; tables as .csv, .parquet or .npy"


def add_parsers(sub) -> None:
    p = sub.add_parser("sample", help="decode draws from the prior (an image grid, or a table)")
    add_run(p)
    p.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("--out", required=True, metavar="FILE", help=_OUT_HELP)
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument(
        "--draw", action="store_true", help="draw x ~ p(x|z) instead of its mean (default: off)"
    )
    p.add_argument("--nrow", type=int, default=None, help="images per grid row (default: √n)")
    p.set_defaults(func=sample)

    p = sub.add_parser("reconstruct", help="originals above their reconstructions")
    add_run(p)
    p.add_argument("--out", required=True, metavar="FILE", help=_OUT_HELP)
    p.add_argument("-n", type=int, default=32, help="number of examples (default: 32)")
    add_split(p)
    add_data_dir(p)
    p.set_defaults(func=reconstruct)

    p = sub.add_parser("interpolate", help="decode straight latent paths between pairs of examples")
    add_run(p)
    p.add_argument("--out", required=True, metavar="FILE", help=_OUT_HELP)
    p.add_argument(
        "--pairs", type=int, default=8, help="rows, one pair of test examples each (default: 8)"
    )
    p.add_argument(
        "--steps", type=int, default=10, help="images per row, ends included (default: 10)"
    )
    add_split(p)
    p.add_argument("--seed", type=int, default=0, help="which pairs are picked (default: 0)")
    add_data_dir(p)
    p.set_defaults(func=interpolate)


def _fits(model, count: int, out: str) -> None:
    """Refuse, before decoding anything, ``count`` examples the output could not be made of:
    the float32 values plus the file's bytes in memory (a uint8 grid and its PNG encoding, or
    the array's copy) are about 8 bytes per value."""
    import math

    from vaelab.memory import require_memory

    shape = "×".join(map(str, model.data_shape))
    require_memory(8 * count * math.prod(model.data_shape), f"{out}: {count:,} examples of {shape}")


def _save(run, x, out: str, nrow: int | None, row_labels=None, keys=None) -> None:
    """Images (model space, in [0, 1]) as a PNG grid or a .npy array in the data's units;
    table rows as a table in the data's units, with ``keys`` columns first."""
    from pathlib import Path

    from vaelab.viz import save_images

    if run.is_images:
        if Path(out).suffix.lower() == ".npy":
            x = run.data.prep.to_original(x)
        path = save_images(x, out, nrow=nrow, row_labels=row_labels)
    else:
        path = _write_rows(run, run.data.prep.to_original(x), out, keys)
    print(f"wrote {path}")


def _write_rows(run, values, out: str, keys=None):
    """Table rows already in the data's units, under the run's column names."""
    from vaelab.data.writers import write_table

    values = values.reshape(values.shape[0], -1).float().numpy()
    names = run.columns or [f"x{j}" for j in range(values.shape[1])]
    return write_table(out, {name: values[:, j] for j, name in enumerate(names)}, keys)


def _run(args, with_data: bool):
    from vaelab.runs import load_run as load
    from vaelab.use import Run

    loaded = load(
        args.run,
        device="cpu",
        data_dir=getattr(args, "data_dir", None),
        data=getattr(args, "data", None),
        split=getattr(args, "split", "test"),
        with_data=with_data,
    )
    return Run(loaded)


def sample(args) -> int:
    from vaelab.errors import positive_int

    run = _run(args, with_data=False)
    _fits(run.model, positive_int("-n", args.n), args.out)
    x = run.sample(args.n, seed=args.seed, mean=not args.draw, units=False)
    _save(run, x, args.out, args.nrow)
    return 0


def reconstruct(args) -> int:
    import numpy as np
    import torch

    from vaelab.viz.pictures import grid_width, reconstructions

    if args.n < 1:
        raise VaelabError(f"-n must be >= 1, got {args.n}")
    run = _run(args, with_data=True)
    x = run.data.eval_data(args.split)[: args.n]
    if x.shape[0] < args.n:
        print(f"note: the {args.split} split has {x.shape[0]} examples: all shown", file=sys.stderr)
    if run.is_images:
        # A grid row is all originals or all their reconstructions, as its label says; an
        # array is the N originals then their N reconstructions (one "row" each, no blanks).
        npy = args.out.lower().endswith(".npy")
        width = x.shape[0] if npy else grid_width(x.shape[0])
        rows = reconstructions(run.model, x, per_row=width)
        _save(run, rows, args.out, width, row_labels=["original", "reconstruction"])
        return 0
    with torch.no_grad():
        recon = run.data.prep.to_original(run.model.decode(run.model.encode(x).mean).mean)
    n = x.shape[0]
    rows = run.data.file_rows(args.split)  # the file's rows, so that a user can find them
    # counted from 1 (the first row of data), as score --top and every error count them
    row = (np.asarray(rows[:n]) if rows is not None else np.arange(n)) + 1
    keys = {"row": np.tile(row, 2), "kind": np.repeat(["original", "reconstruction"], n)}
    # the originals as the file has them (undoing the standardization adds float32 noise:
    # 1.5700002 for the file's 1.57)
    orig = run.data.originals(args.split)[:n].to(recon.dtype).reshape(recon.shape)
    print(f"wrote {_write_rows(run, torch.cat([orig, recon]), args.out, keys)}")
    return 0


def interpolate(args) -> int:
    import numpy as np

    from vaelab.viz.pictures import interpolations

    if args.pairs < 1:
        raise VaelabError(f"--pairs must be >= 1, got {args.pairs}")
    if args.steps < 2:
        raise VaelabError(f"--steps must be >= 2, got {args.steps}")
    run = _run(args, with_data=True)
    _fits(run.model, args.pairs * args.steps, args.out)
    x = run.data.eval_data(args.split)
    if x.shape[0] < 2:
        other = "train" if args.split != "train" else "test"
        raise VaelabError(
            f"the {args.split} split has fewer than 2 examples to pair: try --split {other}"
        )
    idx = _distinct_pairs(x.shape[0], args.pairs, args.seed)
    if idx.shape[1] < args.pairs:
        print(
            f"note: the {args.split} split has {x.shape[0]} examples, so {idx.shape[1]} "
            "different pairs: all drawn",
            file=sys.stderr,
        )
    frames = interpolations(run.model, x[idx[0]], x[idx[1]], steps=args.steps)
    pairs = idx.shape[1]
    keys = {
        "pair": np.repeat(np.arange(pairs), args.steps),
        "step": np.tile(np.arange(args.steps), pairs),
    }
    _save(run, frames, args.out, args.steps, keys=keys)
    return 0


def _distinct_pairs(n: int, wanted: int, seed: int):
    """Up to ``wanted`` pairs of different examples of ``n``, no pair twice, drawn with
    ``seed``: (2, pairs) indices. A split of n examples has n(n − 1)/2 of them."""
    import torch

    g = torch.Generator().manual_seed(seed)
    wanted = min(wanted, n * (n - 1) // 2)
    seen: dict[tuple[int, int], tuple[int, int]] = {}  # in the order drawn, as drawn
    while len(seen) < wanted:
        i, j = torch.randint(n, (2, 2 * wanted), generator=g).tolist()
        for a, b in zip(i, j, strict=True):
            if a != b and len(seen) < wanted:
                seen.setdefault((min(a, b), max(a, b)), (a, b))
    return torch.tensor(list(seen.values()), dtype=torch.long).reshape(-1, 2).t()
