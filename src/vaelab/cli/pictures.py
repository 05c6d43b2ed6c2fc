"""``vaelab sample``, ``reconstruct`` and ``interpolate``: what the model draws, as pictures."""

from __future__ import annotations

from vaelab.cli.options import add_data_dir, add_run, add_split
from vaelab.errors import VaelabError

_OUT_HELP = "output .png (grid) or .npy (array)"


def add_parsers(sub) -> None:
    p = sub.add_parser("sample", help="decode draws from the prior into an image grid (or .npy)")
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
    """Refuse, before decoding anything, ``count`` images the output could not be made of:
    the float32 images plus the file's bytes in memory (a uint8 grid and its PNG encoding, or
    the .npy array's copy) are about 8 bytes per value."""
    import math

    from vaelab.memory import require_memory

    shape = "×".join(map(str, model.data_shape))
    require_memory(8 * count * math.prod(model.data_shape), f"{out}: {count:,} images of {shape}")


def _save(images, out: str, nrow: int | None) -> None:
    from vaelab.viz import save_images

    path = save_images(images, out, nrow=nrow)
    print(f"wrote {path}")


def sample(args) -> int:
    from vaelab.errors import positive_int
    from vaelab.models.base import LatentVariableModel
    from vaelab.viz.pictures import samples

    model = LatentVariableModel.load(args.run)  # a model that decodes prior draws into images
    _fits(model, positive_int("-n", args.n), args.out)
    _save(samples(model, args.n, seed=args.seed, mean=not args.draw), args.out, args.nrow)
    return 0


def reconstruct(args) -> int:
    from vaelab.runs import load_run
    from vaelab.viz.pictures import reconstructions

    if args.n < 1:
        raise VaelabError(f"-n must be >= 1, got {args.n}")
    run = load_run(args.run, device="cpu", data_dir=args.data_dir, split=args.split)
    x = run.data.eval_data(args.split)[: args.n]
    _save(reconstructions(run.model, x, per_row=8), args.out, 8)
    return 0


def interpolate(args) -> int:
    import torch

    from vaelab.runs import load_run
    from vaelab.viz.pictures import interpolations

    if args.pairs < 1:
        raise VaelabError(f"--pairs must be >= 1, got {args.pairs}")
    if args.steps < 2:
        raise VaelabError(f"--steps must be >= 2, got {args.steps}")
    run = load_run(args.run, device="cpu", data_dir=args.data_dir, split=args.split)
    _fits(run.model, args.pairs * args.steps, args.out)
    x = run.data.eval_data(args.split)
    if x.shape[0] < 2:
        raise VaelabError(f"the {args.split} split has fewer than 2 examples")
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randint(x.shape[0], (2, args.pairs), generator=g)
    _save(interpolations(run.model, x[idx[0]], x[idx[1]], steps=args.steps), args.out, args.steps)
    return 0
