"""``vaelab encode`` and ``vaelab score``: latent codes and per-row likelihoods of any rows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from vaelab.cli.options import add_run


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "encode",
        help="posterior mean and standard deviation of every row (embeddings)",
        description=(
            "Write q(z|x) for every row of a file, in input order: the row's id and label when "
            "the file has them, then mean_0..mean_{L-1} and std_0..std_{L-1} (.npy: the means "
            "and standard deviations only, an (N, 2L) array). The rows are read and prepared "
            "exactly as the run's training data."
        ),
    )
    _common(p)
    p.add_argument("--batch-size", type=int, default=1000, help="rows per batch (default: 1000)")
    p.set_defaults(func=encode)

    p = sub.add_parser(
        "score",
        help="per-row log-likelihood, ELBO, reconstruction and KL (anomaly scores)",
        description=(
            "Write, for every row of a file in input order, the importance-sampled log p(x) "
            "with K samples and its standard error, the ELBO (the mean of the same K "
            "log-weights: never above the row's log p(x)), the reconstruction term and the KL, "
            "in the data's own units (the run's preprocessing undone). Low log p(x) marks "
            "unusual rows."
        ),
    )
    _common(p)
    p.add_argument("--k", type=int, default=1000, help="importance samples per row (default: 1000)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="rows per batch (default: 100 for K>100, else 1000)",
    )
    p.add_argument("--top", type=int, default=0, help="print the N least likely rows (default: 0)")
    p.set_defaults(func=score)


def _common(p) -> None:
    add_run(p)
    p.add_argument(
        "--data",
        metavar="PATH",
        default=None,
        help="rows to read, as the training data was read (default: the run's data file)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="output .csv, .parquet or .npy (replaced if it exists; never the data read)",
    )


def _open(args):
    from vaelab.data.writers import check_table_output
    from vaelab.errors import InvalidArgumentError
    from vaelab.runs.load import require_recorded_data
    from vaelab.use import load_run

    check_table_output(args.out)  # before any work
    run = load_run(args.run)
    data = args.data or run.cfg.data.dataset
    if args.data is None:
        require_recorded_data(data)
    out = Path(args.out).expanduser()
    if out.exists() and Path(data).expanduser().exists() and out.samefile(data):
        raise InvalidArgumentError(
            f"--out {args.out} is the data being read ({data}): choose another file"
        )
    return run, data


def _print_notices(notices: list[str]) -> None:
    # what reading the rows changed (resized, converted to grey, ...): a user scoring new
    # data for anomalies needs to know that it was not read as it is
    for notice in notices:
        print(f"note: {notice}", file=sys.stderr)


def _keys(ids, labels) -> dict[str, np.ndarray]:
    out = {}
    if ids is not None:
        out["id"] = ids
    if labels is not None:
        out["label"] = np.asarray(labels)
    return out


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


def encode(args) -> int:
    from vaelab.data.writers import write_table

    run, data = _open(args)
    enc = run.encode(data, batch_size=args.batch_size)
    _print_notices(enc.notices)
    columns = {}
    for name, values in (("mean", enc.mean), ("std", enc.std)):
        for j in range(values.shape[1]):
            columns[f"{name}_{j}"] = values[:, j].numpy()
    path = write_table(args.out, columns, _keys(enc.ids, enc.labels))
    n, dims = enc.mean.shape
    print(f"wrote {path}: {_rows(n)}, {dims} latent dimension{'s' if dims != 1 else ''}")
    return 0


def score(args) -> int:
    from vaelab.data.writers import write_table
    from vaelab.errors import InvalidArgumentError
    from vaelab.evaluation.metrics import LOW_ESS, low_ess_count

    if args.top < 0:  # before any work
        raise InvalidArgumentError(f"--top must be >= 0 (0: print none), got {args.top}")
    run, data = _open(args)
    s = run.score(data, k=args.k, batch_size=args.batch_size, progress=sys.stderr.isatty())
    _print_notices(s.notices)
    columns = {}
    for name in ("log_px", "log_px_stderr", "log_px_ess", "elbo", "reconstruction", "kl"):
        columns[name] = getattr(s, name).double().numpy()  # sums of many terms: float64
    path = write_table(args.out, columns, _keys(s.ids, s.labels))
    n = s.log_px.shape[0]
    print(f"wrote {path}: {_rows(n)}, log p(x) with K={s.k} in the data's units")
    low = low_ess_count(s.log_px_ess, s.k)
    if low:
        print(
            f"note: {low} of {n} rows rest on fewer than {LOW_ESS} effective samples of the "
            f"{s.k} (column log_px_ess): a few weights dominate, so their log p(x) is likely "
            "low and its ± too small; a larger --k narrows that",
            file=sys.stderr,
        )
    if args.top > 0:
        answered = np.flatnonzero(~np.isnan(columns["log_px"]))  # not the rows left empty
        order = answered[np.argsort(columns["log_px"][answered], kind="stable")[: args.top]]
        # counted from 1, as a person counts data rows (and as vaelab's errors do)
        print(f"the {len(order)} least likely rows (1 = the first row read):")
        for i in order:
            who = f"row {i + 1}"
            if s.ids is not None:
                who += f" (id {s.ids[i]})"
            if s.labels is not None:
                who += " no label" if s.labels[i] is None else f" label {s.labels[i]}"
            print(
                f"  {who}: log p(x) {columns['log_px'][i]:.3f} ± {columns['log_px_stderr'][i]:.3f}"
            )
    return 0
