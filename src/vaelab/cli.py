"""The ``vaelab`` command line: parse, build a config, call the library.

Every user mistake is one line on stderr and exit status 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from vaelab import __version__
from vaelab.errors import VaelabError
from vaelab.training.config import (
    BINARIZE,
    ESTIMATORS,
    OBJECTIVES,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    DataConfig,
    TrainConfig,
)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_T, _D = TrainConfig(), DataConfig()


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes like 400 or 200,200, got {text!r}"
        ) from None
    return values


def _flag_value(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------
# flag → (config key, argparse kwargs). The flag's default is None so that only flags the user
# gave override the config file; the help text shows the real default.
TRAIN_FLAGS: dict[str, tuple[str, dict]] = {
    "--dataset": (
        "data.dataset",
        dict(
            metavar="NAME|FILE",
            help="dataset name (see `vaelab datasets`) or a .npy/.npz/.csv file "
            f"(default: {_D.dataset})",
        ),
    ),
    "--data-dir": (
        "data.data_dir",
        dict(
            metavar="DIR",
            help="folder holding the dataset's files (default: $VAELAB_DATA or ~/.cache/vaelab)",
        ),
    ),
    "--binarize": (
        "data.binarize",
        dict(
            choices=BINARIZE,
            help=f"binarization for a Bernoulli likelihood (default: {_D.binarize})",
        ),
    ),
    "--likelihood": (
        "model.likelihood",
        dict(choices=("bernoulli", "gaussian"), help="p(x|z) (default: bernoulli)"),
    ),
    "--latent-dim": (
        "model.latent_dim",
        dict(type=int, metavar="L", help="latent dimensions (default: 20)"),
    ),
    "--hidden": (
        "model.hidden",
        dict(
            type=_int_list,
            metavar="SIZES",
            help="hidden layer sizes, e.g. 400 or 200,200 (default: 400)",
        ),
    ),
    "--arch": (
        "model.arch",
        dict(choices=("mlp", "conv"), help="encoder/decoder architecture (default: mlp)"),
    ),
    "--activation": (
        "model.activation",
        dict(
            metavar="NAME", help="relu, tanh, elu, gelu, silu, softplus, leaky_relu (default: relu)"
        ),
    ),
    "--prior-std": (
        "model.prior_std",
        dict(type=float, metavar="S", help="σ_p of the prior N(0, σ_p² I) (default: 1.0)"),
    ),
    "--epochs": (
        "train.epochs",
        dict(type=int, metavar="N", help=f"passes over the training split (default: {_T.epochs})"),
    ),
    "--batch-size": (
        "train.batch_size",
        dict(type=int, metavar="B", help=f"examples per step (default: {_T.batch_size})"),
    ),
    "--lr": ("train.lr", dict(type=float, help=f"learning rate (default: {_T.lr})")),
    "--optimizer": ("train.optimizer", dict(choices=OPTIMIZERS, help=f"(default: {_T.optimizer})")),
    "--schedule": (
        "train.schedule",
        dict(choices=SCHEDULES, help=f"learning-rate schedule (default: {_T.schedule})"),
    ),
    "--grad-clip": (
        "train.grad_clip",
        dict(type=float, metavar="NORM", help="clip the global gradient norm (default: off)"),
    ),
    "--beta": ("train.beta", dict(type=float, help=f"weight of the KL term (default: {_T.beta})")),
    "--kl-warmup": (
        "train.kl_warmup_epochs",
        dict(
            type=float,
            metavar="EPOCHS",
            help=f"ramp β up from 0 over this many epochs (default: {_T.kl_warmup_epochs})",
        ),
    ),
    "--objective": (
        "train.objective",
        dict(choices=OBJECTIVES, help=f"training objective (default: {_T.objective})"),
    ),
    "--k": (
        "train.k",
        dict(type=int, help=f"samples per example (importance samples for iwae) (default: {_T.k})"),
    ),
    "--estimator": (
        "train.estimator",
        dict(
            choices=ESTIMATORS,
            help="iwae gradient: standard, or dreg (doubly reparameterized, Tucker et al. 2018) "
            f"(default: {_T.estimator})",
        ),
    ),
    "--early-stopping": (
        "train.early_stopping",
        dict(
            type=int,
            metavar="EPOCHS",
            help="stop after this many epochs without a better validation ELBO (default: off)",
        ),
    ),
    "--seed": ("train.seed", dict(type=int, help=f"random seed (default: {_T.seed})")),
    "--device": (
        "train.device",
        dict(metavar="DEV", help=f"auto, cpu, cuda or cuda:N (default: {_T.device})"),
    ),
    "--precision": (
        "train.precision",
        dict(
            choices=PRECISIONS,
            help="autocast precision of the networks; bounds stay float32 "
            f"(default: {_T.precision})",
        ),
    ),
    "--compile": (
        "train.compile",
        dict(
            type=_flag_value,
            metavar="BOOL",
            help=f"torch.compile the training step (default: {str(_T.compile).lower()})",
        ),
    ),
    "--threads": (
        "train.threads",
        dict(type=int, metavar="N", help="torch CPU threads (default: torch's choice)"),
    ),
    "--eval-k": (
        "train.final_eval_k",
        dict(
            type=int,
            metavar="K",
            help="importance samples for the test evaluation after training "
            f"(default: {_T.final_eval_k})",
        ),
    ),
}


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a VAE; leaves a run directory",
        description=(
            "Train a VAE and leave a run directory (config, best weights, checkpoint, metrics, "
            "test evaluation, pictures). Settings resolve as: defaults → --config file → "
            "--set overrides → flags."
        ),
    )
    p.add_argument("--config", metavar="FILE", help="YAML or JSON run config (default: none)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set train.grad_clip=5 (repeatable; default: none)",
    )
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<dataset>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (default: off)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out (default: off)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: off)")
    for flag, (_, kwargs) in TRAIN_FLAGS.items():
        p.add_argument(flag, default=None, **kwargs)
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from vaelab.config import to_dict
    from vaelab.training.config import resolve
    from vaelab.training.trainer import Trainer, read_run_config

    flags = {}
    for flag, (key, _) in TRAIN_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            flags[key] = value
    base = None
    if args.resume:
        if not args.out:
            raise VaelabError("--resume needs --out RUN_DIR (the run to continue)")
        if (Path(args.out) / "config.json").exists():
            # the run's own settings; flags given now are checked against them
            base = to_dict(read_run_config(args.out))
    cfg = resolve(args.config, args.overrides, flags, base=base)
    out = args.out or os.path.join(
        "runs", f"{Path(cfg.data.dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    trainer = Trainer(
        cfg, out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet
    )
    result = trainer.run()
    print(f"run: {result.run_dir}")
    if result.best_epoch is not None:
        print(f"best validation ELBO {result.best_val_elbo:.3f} at epoch {result.best_epoch}")
    if result.skipped_steps:
        print(f"skipped {result.skipped_steps} non-finite steps, {result.rollbacks} rollbacks")
    if result.test:
        _print_report(result.test)
    print(
        f"next: vaelab evaluate {result.run_dir} --k 5000  |  "
        f"vaelab sample {result.run_dir} -n 64 --out samples.png"
    )
    return 0


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------
def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="ELBO, importance-sampled log-likelihood, bits/dim, active units",
        description=(
            "Evaluate a run's best model. log p(x) is estimated by importance sampling with K "
            "samples from q(z|x) (a lower bound in expectation; the literature uses K=5000); the "
            "ELBO uses the closed-form KL. Means carry their standard error over examples."
        ),
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument(
        "--split", default="test", choices=("train", "valid", "test"), help="(default: test)"
    )
    p.add_argument(
        "--k", type=int, default=5000, help="importance samples per example (default: 5000)"
    )
    p.add_argument(
        "--n", type=int, default=None, help="evaluate only the first N examples (default: all)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="examples per batch (default: 100 for K>100, else 1000)",
    )
    p.add_argument(
        "--data-dir", default=None, help="where the dataset's files are (default: as in training)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: a table)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from vaelab.evaluation.report import evaluate_run

    report = evaluate_run(
        args.run,
        split=args.split,
        k=args.k,
        n=args.n,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.json and sys.stderr.isatty(),
        data_dir=args.data_dir,
    )
    if args.json:
        print(json.dumps(report))
    else:
        _print_report(report)
    return 0


def _print_report(r: dict) -> None:
    def pm(key):
        se = r.get(f"{key}_stderr")
        return f"{r[key]:.3f} ± {se:.3f}" if se is not None else f"{r[key]:.3f}"

    print(f"{r['dataset']} {r['split']} split, n={r['n']}, binarization: {r['binarization']}")
    print(f"  log-likelihood (K={r['k']})  {pm('log_likelihood')}   NLL {r['nll']:.3f}")
    print(f"  bits/dim                 {r['bits_per_dim']:.4f}")
    if "elbo" in r:
        print(f"  ELBO                     {pm('elbo')}")
        print(f"    reconstruction         {pm('reconstruction')}")
        print(f"    KL                     {pm('kl')}")
        print(f"  active units             {r['active_units']} of {r['latent_dim']}")
    print(f"  {r['seconds']:.1f} s ({1000 * r['seconds_per_image']:.2f} ms per example)")


# --------------------------------------------------------------------------------------------
# pictures
# --------------------------------------------------------------------------------------------
def _add_pictures(sub) -> None:
    p = sub.add_parser("sample", help="decode draws from the prior into an image grid (or .npy)")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument(
        "--out", required=True, metavar="FILE", help="output .png (grid) or .npy (array)"
    )
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument(
        "--draw", action="store_true", help="draw x ~ p(x|z) instead of its mean (default: off)"
    )
    p.add_argument("--nrow", type=int, default=None, help="images per grid row (default: √n)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("reconstruct", help="originals above their reconstructions")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", required=True, metavar="FILE", help="output .png or .npy")
    p.add_argument("-n", type=int, default=32, help="number of examples (default: 32)")
    p.add_argument(
        "--split", default="test", choices=("train", "valid", "test"), help="(default: test)"
    )
    p.add_argument(
        "--data-dir", default=None, help="where the dataset's files are (default: as in training)"
    )
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("interpolate", help="decode straight latent paths between pairs of examples")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", required=True, metavar="FILE", help="output .png or .npy")
    p.add_argument(
        "--pairs", type=int, default=8, help="rows, one pair of test examples each (default: 8)"
    )
    p.add_argument(
        "--steps", type=int, default=10, help="images per row, ends included (default: 10)"
    )
    p.add_argument(
        "--split", default="test", choices=("train", "valid", "test"), help="(default: test)"
    )
    p.add_argument("--seed", type=int, default=0, help="which pairs are picked (default: 0)")
    p.add_argument(
        "--data-dir", default=None, help="where the dataset's files are (default: as in training)"
    )
    p.set_defaults(func=cmd_interpolate)


def _save(images, out: str, nrow: int | None) -> None:
    from vaelab.viz import save_images

    path = save_images(images, out, nrow=nrow)
    print(f"wrote {path}")


def cmd_sample(args) -> int:
    from vaelab.models.base import SavableModel
    from vaelab.viz.pictures import samples

    model = SavableModel.load(args.run)
    _save(samples(model, args.n, seed=args.seed, mean=not args.draw), args.out, args.nrow)
    return 0


def cmd_reconstruct(args) -> int:
    from vaelab.training.run import load_run
    from vaelab.viz.pictures import reconstructions

    if args.n < 1:
        raise VaelabError(f"-n must be >= 1, got {args.n}")
    run = load_run(args.run, device="cpu", data_dir=args.data_dir, split=args.split)
    x = run.data.eval_data(args.split)[: args.n]
    _save(reconstructions(run.model, x, per_row=8), args.out, 8)
    return 0


def cmd_interpolate(args) -> int:
    import torch

    from vaelab.training.run import load_run
    from vaelab.viz.pictures import interpolations

    if args.pairs < 1:
        raise VaelabError(f"--pairs must be >= 1, got {args.pairs}")
    run = load_run(args.run, device="cpu", data_dir=args.data_dir, split=args.split)
    x = run.data.eval_data(args.split)
    if x.shape[0] < 2:
        raise VaelabError(f"the {args.split} split has fewer than 2 examples")
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randint(x.shape[0], (2, args.pairs), generator=g)
    _save(interpolations(run.model, x[idx[0]], x[idx[1]], steps=args.steps), args.out, args.steps)
    return 0


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------
def _add_datasets(sub) -> None:
    p = sub.add_parser("datasets", help="what is built in and what is on disk")
    p.add_argument(
        "--data-dir", default=None, help="also look here (default: $VAELAB_DATA or ~/.cache/vaelab)"
    )
    p.add_argument("--verify", action="store_true", help="check the files' sha256 (default: off)")
    p.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    p.set_defaults(func=cmd_datasets)


def cmd_datasets(args) -> int:
    from vaelab.data import data_home, dataset_status

    rows = dataset_status(args.data_dir, verify=args.verify)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"data folder: {args.data_dir or data_home()}")
    for r in rows:
        where = (
            "built in"
            if r.get("embedded")
            else ("on disk" if r.get("present") else "not downloaded")
        )
        sizes = f"{r.get('n_train')}/{r.get('n_valid')}/{r.get('n_test')}"
        print(
            f"  {r['name']:<14} {where:<15} train/valid/test {sizes:<18} {r.get('description', '')}"
        )
    print(
        "datasets download on first use; offline, put the files in the data folder "
        "or pass --data-dir"
    )
    return 0


# --------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line too (the full usage is one --help away)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vaelab",
        description=(
            "Train, evaluate and inspect variational auto-encoders, with honest numbers. "
            "Start with `vaelab train` (it trains on a built-in MNIST subset), then "
            "`vaelab evaluate RUN`."
        ),
    )
    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks for errors (default: off)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_evaluate(sub)
    _add_pictures(sub)
    _add_datasets(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from vaelab.training.trainer import TrainingInterrupted

    try:
        return args.func(args)
    except TrainingInterrupted as e:
        if args.debug:
            raise
        print(f"vaelab: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except VaelabError as e:
        if args.debug:
            raise
        print(f"vaelab: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("vaelab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:  # a full disk, a folder without permission: still one line
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"vaelab: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
