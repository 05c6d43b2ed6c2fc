"""``vaelab evaluate``: every number of a run's model on a split, as a table or JSON."""

from __future__ import annotations

import sys

from vaelab.cli.options import add_data_dir, add_json, add_run, add_split
from vaelab.io import dumps_json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="ELBO, importance-sampled log-likelihood, bits/dim, active units",
        description=(
            "Evaluate a run's best model. log p(x) is estimated by importance sampling with K "
            "samples from q(z|x) (a lower bound in expectation; the literature uses K=5000); the "
            "ELBO uses the closed-form KL. Means carry their standard error over examples."
        ),
    )
    add_run(p)
    add_split(p)
    p.add_argument(
        "--k", type=int, default=5000, help="importance samples per example (default: 5000)"
    )
    p.add_argument(
        "--n",
        # torchrun's parser takes a bare --n for an abbreviation of its own --nnodes/--nproc...
        # and refuses the command line, even after `-m vaelab`; --examples gets through
        "--examples",
        dest="n",
        type=int,
        default=None,
        help="evaluate only the first N examples (default: all; --examples under torchrun)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="examples per batch (default: 100 for K>100, else 1000)",
    )
    add_data_dir(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    add_json(p, "a table; with --json, one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from vaelab import distributed
    from vaelab.evaluation.evaluate import evaluate_run

    with distributed.session(args.device) as world:
        report = evaluate_run(
            args.run,
            split=args.split,
            k=args.k,
            n=args.n,
            batch_size=args.batch_size,
            device=args.device,
            progress=not args.json and sys.stderr.isatty(),
            data_dir=args.data_dir,
            data=args.data,
            world=world,
        )
    if not world.writer:
        return 0  # every rank holds the report; rank 0 prints it
    if report.get("data_changed"):
        print(report["data_changed"], file=sys.stderr)
    if args.json:
        print(dumps_json(report))
    else:
        print_report(report)
    return 0


def _f(value, digits: int = 3) -> str:
    # JSON has no NaN: a number that was not finite comes back from eval_test.json as null
    return "n/a" if value is None else f"{value:.{digits}f}"


def print_report(r: dict) -> None:
    def pm(key):
        se = r.get(f"{key}_stderr")
        return f"{_f(r[key])} ± {_f(se)}" if se is not None else _f(r[key])

    print(f"{r['dataset']} {r['split']} split, n={r['n']}, binarization: {r['binarization']}")
    units = r.get("units", "as stored")
    if units != "as stored":
        print(f"  data as the model sees it: {units}")
    print(f"  log-likelihood (K={r['k']})  {pm('log_likelihood')}   NLL {_f(r['nll'])}")
    if r.get("log_jacobian"):
        print(
            f"  NLL in the data's units  {_f(r['nll_original'])} per example, "
            f"{_f(r['nll_per_dim'], 4)} nats per dimension"
        )
    if r.get("bits_per_dim") is not None:
        print(f"  bits/dim                 {_f(r['bits_per_dim'], 4)}")
    if "elbo" in r:
        print(f"  ELBO                     {pm('elbo')}")
        print(f"    reconstruction         {pm('reconstruction')}")
        print(f"    KL                     {pm('kl')}")
        print(f"  active units             {r['active_units']} of {r['latent_dim']}")
    print(f"  {r['seconds']:.1f} s ({1000 * r['seconds_per_image']:.2f} ms per example)")
