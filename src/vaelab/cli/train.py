"""``vaelab train``: resolve the run config, train, then evaluate and draw the pictures."""

from __future__ import annotations

import contextlib
from pathlib import Path

from vaelab.cli.evaluate import print_report
from vaelab.cli.options import config_default, flag_value, int_list, name_list, number_pair
from vaelab.config.schema import (
    BINARIZE,
    ESTIMATORS,
    HEADER,
    OBJECTIVES,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    STANDARDIZE,
)
from vaelab.errors import VaelabError

# flag → (config key, argparse kwargs). The flag's default is None so that only flags the user
# gave override the config file; the help text ends with the real default, read from the
# config dataclasses (model flags: the VAE's).
FLAGS: dict[str, tuple[str, dict]] = {
    "--dataset": (
        "data.dataset",
        dict(
            metavar="NAME|PATH",
            help="dataset name (see `vaelab datasets`), a .npy/.npz array, a "
            ".csv/.tsv/.txt/.parquet table, or a folder of images",
        ),
    ),
    "--data-dir": (
        "data.data_dir",
        dict(
            metavar="DIR",
            help="folder holding the dataset's files (default: $VAELAB_DATA or ~/.cache/vaelab)",
        ),
    ),
    "--columns": (
        "data.columns",
        dict(
            type=name_list,
            metavar="A,B,C",
            help="table columns to use as features (default: every numeric column)",
        ),
    ),
    "--label-column": (
        "data.label_column",
        dict(
            metavar="NAME",
            help="a table column kept as each row's label, never a feature (default: none)",
        ),
    ),
    "--id-column": (
        "data.id_column",
        dict(
            metavar="NAME",
            help="a table column kept as each row's id in encode/score output, never a feature "
            "(default: a column named id, or pandas' index column)",
        ),
    ),
    "--header": (
        "data.header",
        dict(
            choices=HEADER,
            help="text tables: does the first row name the columns? (auto: yes when any of "
            "its fields is not a number)",
        ),
    ),
    "--drop-missing": (
        "data.drop_missing",
        dict(type=flag_value, metavar="BOOL", help="drop table rows with missing cells"),
    ),
    "--image-size": (
        "data.image_size",
        dict(
            type=int,
            metavar="PX",
            help="image folders: resize to PX×PX (default: the most common size)",
        ),
    ),
    "--value-range": (
        "data.value_range",
        dict(
            type=number_pair,
            metavar="LO,HI",
            help="range of integer data, mapped to [0, 1] (default: the dtype's range for "
            "uint8/uint16, else the data's min and max)",
        ),
    ),
    "--standardize": (
        "data.standardize",
        dict(
            choices=STANDARDIZE,
            help="per-column standardization, statistics of the training split (auto: tables)",
        ),
    ),
    "--binarize": (
        "data.binarize",
        dict(choices=BINARIZE, help="binarization for a Bernoulli likelihood"),
    ),
    "--likelihood": (
        "model.likelihood",
        dict(
            choices=("bernoulli", "gaussian"),
            help="p(x|z) (default: bernoulli for images, gaussian for tables)",
        ),
    ),
    "--latent-dim": ("model.latent_dim", dict(type=int, metavar="L", help="latent dimensions")),
    "--hidden": (
        "model.hidden",
        dict(type=int_list, metavar="SIZES", help="hidden layer sizes, e.g. 400 or 200,200"),
    ),
    "--arch": ("model.arch", dict(choices=("mlp", "conv"), help="encoder/decoder architecture")),
    "--activation": (
        "model.activation",
        dict(metavar="NAME", help="relu, tanh, elu, gelu, silu, softplus, leaky_relu"),
    ),
    "--prior-std": (
        "model.prior_std",
        dict(type=float, metavar="S", help="σ_p of the prior N(0, σ_p² I)"),
    ),
    "--epochs": (
        "train.epochs",
        dict(type=int, metavar="N", help="passes over the training split"),
    ),
    "--batch-size": ("train.batch_size", dict(type=int, metavar="B", help="examples per step")),
    "--lr": ("train.lr", dict(type=float, help="learning rate")),
    "--optimizer": ("train.optimizer", dict(choices=OPTIMIZERS, help="the optimizer")),
    "--schedule": ("train.schedule", dict(choices=SCHEDULES, help="learning-rate schedule")),
    "--grad-clip": (
        "train.grad_clip",
        dict(type=float, metavar="NORM", help="clip the global gradient norm"),
    ),
    "--beta": ("train.beta", dict(type=float, help="weight of the KL term")),
    "--kl-warmup": (
        "train.kl_warmup_epochs",
        dict(type=float, metavar="EPOCHS", help="ramp β up from 0 over this many epochs"),
    ),
    "--objective": ("train.objective", dict(choices=OBJECTIVES, help="training objective")),
    "--k": (
        "train.k",
        dict(type=int, help="samples per example (importance samples for iwae)"),
    ),
    "--estimator": (
        "train.estimator",
        dict(
            choices=ESTIMATORS,
            help="iwae gradient: standard, or dreg (doubly reparameterized, Tucker et al. 2018)",
        ),
    ),
    "--early-stopping": (
        "train.early_stopping",
        dict(
            type=int,
            metavar="EPOCHS",
            help="stop after this many epochs without a better validation ELBO",
        ),
    ),
    "--seed": ("train.seed", dict(type=int, help="random seed")),
    "--device": ("train.device", dict(metavar="DEV", help="auto, cpu, cuda or cuda:N")),
    "--precision": (
        "train.precision",
        dict(choices=PRECISIONS, help="autocast precision of the networks; bounds stay float32"),
    ),
    "--compile": (
        "train.compile",
        dict(type=flag_value, metavar="BOOL", help="torch.compile the training step"),
    ),
    "--threads": (
        "train.threads",
        dict(type=int, metavar="N", help="torch CPU threads (default: torch's choice)"),
    ),
    "--eval-k": (
        "train.final_eval_k",
        dict(
            type=int, metavar="K", help="importance samples for the test evaluation after training"
        ),
    ),
}


def add_parser(sub) -> None:
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
    p.add_argument(
        "--no-report",
        action="store_true",
        help="do not write report.html at the end (`vaelab report RUN` writes it later; "
        "default: written)",
    )
    for flag, (key, kwargs) in FLAGS.items():
        help_text = kwargs["help"]
        if "(default:" not in help_text:  # a default that is not a plain value says so itself
            help_text += f" (default: {config_default(key)})"
        p.add_argument(flag, default=None, **{**kwargs, "help": help_text})
    p.set_defaults(func=run)


def _resumable_config(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a config.json of vaelab's to continue (a folder that is not a
    run is left to the trainer, which says what it holds)."""
    from vaelab.runs import CHECKPOINT_FILE, CONFIG_FILE
    from vaelab.runs.ownership import read_manifest

    if not (run_dir / CONFIG_FILE).is_file():
        return False
    if (run_dir / CHECKPOINT_FILE).exists():
        return True
    manifest = read_manifest(run_dir)
    return manifest is not None and CONFIG_FILE in manifest.files


def _write_report(run_dir, log) -> None:
    """report.html at the end of training; a failure costs the report, never the run."""
    from vaelab.report.build import write_report

    try:
        path = write_report(run_dir)
        log(f"report: {path}")
    except (VaelabError, OSError, ValueError, RuntimeError) as e:
        log(f"warning: report.html not written ({e}); `vaelab report {run_dir}` tries again")


def run(args) -> int:
    from vaelab import distributed
    from vaelab.config import resolve, to_dict
    from vaelab.report import finish_run
    from vaelab.runs import read_run_config
    from vaelab.runs.config_file import command_line
    from vaelab.runs.layout import claim_default_run_dir
    from vaelab.runs.lock import run_lock
    from vaelab.training import Trainer

    flags = {}
    for flag, (key, _) in FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            flags[key] = value
    base = None
    if args.resume:
        if not args.out:
            raise VaelabError("--resume needs --out RUN_DIR (the run to continue)")
        if _resumable_config(Path(args.out)):
            # the run's own settings; flags given now are checked against them
            base = to_dict(read_run_config(args.out))
    cfg = resolve(args.config, args.overrides, flags, base=base)
    t = cfg.train
    with distributed.session(t.device, t.threads, "train.device") as world:
        # a new folder of its own, even for runs started in the same second (rank 0 makes it)
        stem = Path(cfg.data.dataset).stem
        out = args.out or (claim_default_run_dir("runs", stem) if world.writer else "")
        out = world.broadcast_text(out)
        try:
            trainer = Trainer(
                cfg, out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                world=world,
            )  # fmt: skip
        except BaseException:
            if not args.out and world.writer:
                Path(out).rmdir()  # the empty folder made just above
            raise
        # rank 0 writes the run: it holds the lock from the first write to the report
        with (
            run_lock(out) if world.writer else contextlib.nullcontext(),
            command_line(getattr(args, "command_line", ["vaelab", "train"])),
        ):
            result = trainer.run()
            test = finish_run(
                result.run_dir, trainer.data, k=t.final_eval_k, n=t.final_eval_n,
                progress=not args.quiet, log=trainer.log, world=world,
            )  # fmt: skip
            if world.writer and not args.no_report:
                _write_report(result.run_dir, trainer.log)
    if not world.writer:
        return 0  # rank 0 reports for the job
    print(f"run: {result.run_dir}")
    if result.best_epoch is not None:
        print(f"best validation ELBO {result.best_val_elbo:.3f} at epoch {result.best_epoch}")
    if result.skipped_steps:
        print(f"skipped {result.skipped_steps} non-finite steps, {result.rollbacks} rollbacks")
    if test:
        print_report(test)
    pictures = len(trainer.data.data_shape) == 3  # images; a table's samples are a table
    print(
        f"next: vaelab evaluate {result.run_dir} --k 5000  |  "
        f"vaelab sample {result.run_dir} -n 64 --out samples.{'png' if pictures else 'csv'}"
    )
    return 0
