"""``vaelab evaluate``: every number of a run's model on a split, as a table or JSON."""

from __future__ import annotations

import functools
import math
import sys

from vaelab.cli.options import add_data_dir, add_json, add_run, add_split
from vaelab.io import dumps_json

GAPS_N = 500  # examples for --gaps: each is fitted by 2,000 optimizer steps


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="ELBO, importance-sampled log-likelihood, bits/dim, active units",
        description=(
            "Evaluate a run's best model. log p(x) is estimated by importance sampling with K "
            "samples from q(z|x) (a lower bound in expectation; the literature uses K=5000); the "
            "ELBO is the mean of the same K log-weights, so it is below log p(x) for every "
            "example; the KL is closed-form where it can be and the reconstruction term is "
            "ELBO + KL. Means carry their standard error over examples."
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
        help="examples per batch (default: 100 for K>100, else 1000; 500 with --gaps)",
    )
    add_data_dir(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    p.add_argument(
        "--gaps",
        action="store_true",
        help="instead: the approximation and amortization gaps (Cremer et al. 2018) on the "
        f"first N examples (--n, here {GAPS_N} unless given): log p(x), the encoder's ELBO and "
        "the ELBO of the best Gaussian fitted to each example (default: off)",
    )
    add_json(p, "a table; with --json, one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.gaps:
        return _run_gaps(args)
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
    if args.n is not None and args.n > report["n"]:
        print(f"note: the {args.split} split has {report['n']} examples, all evaluated "
              f"(--n {args.n} asked for more)", file=sys.stderr)  # fmt: skip
    if args.json:
        print(dumps_json(report))
    else:
        print_report(report)
    return 0


def _run_gaps(args) -> int:
    from vaelab.distributed import launched_rank
    from vaelab.errors import InvalidArgumentError, positive_int
    from vaelab.evaluation.gaps import gaps_for_split
    from vaelab.runs.load import load_run

    n = GAPS_N if args.n is None else positive_int("--n", args.n)  # 0 is not "the default"
    placed = launched_rank()
    if placed is not None and placed[1] > 1:  # each rank would fit and print the same examples
        raise InvalidArgumentError("--gaps runs in one process: start it without torchrun")

    run = load_run(
        args.run, device=args.device, data_dir=args.data_dir, split=args.split, data=args.data
    )
    report = gaps_for_split(
        run.model, run.data, args.split, n=n, k=args.k,
        batch_size=args.batch_size or 500,
    )  # fmt: skip
    jacobian = float(run.data.log_jacobian)  # model units → the data's, per example
    report = {
        "run": str(args.run),
        **report,
        "units": run.data.prep.units,
        "log_jacobian": jacobian,
    }
    if args.json:
        print(dumps_json(report))
    else:
        print_gaps(report)
    return 0


def print_gaps(r: dict) -> None:
    """The gaps as a table: each line a mean over the examples ± its standard error."""
    pm = functools.partial(_pm, r)
    how = "exact" if r["elbo_samples"] is None else f"{r['elbo_samples']} samples"
    print(f"{r['dataset']} {r['split']} split, n={r['n']}, binarization: {r['binarization']}")
    if r.get("log_jacobian"):
        # a change of units shifts log p and every ELBO alike: the gaps do not move
        units, shift = r["units"].split(" (")[0], r["log_jacobian"]
        print(f"  in the model's units ({units}): subtract {shift:.3f} nats from log p and the "
              "ELBOs for the data's units; the gaps are the same in both")  # fmt: skip
    print(f"  log p(x) (K={r['k']}, around q*)    {pm('log_likelihood')}")
    print(f"  ELBO of the best Gaussian q*     {pm('elbo_best')}   ({how})")
    print(f"  ELBO of the encoder q(z|x)       {pm('elbo')}   ({how})")
    print(f"  approximation gap  log p − ELBO(q*)          {pm('approximation_gap')} nats")
    print(f"  amortization gap   ELBO(q*) − ELBO(encoder)  {pm('amortization_gap')} nats")


def _f(value, digits: int = 3) -> str:
    # JSON has no NaN: a number that was not finite comes back from eval_test.json as null
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _pm(r: dict, key: str) -> str:
    """``value ± stderr``, or the value alone where there is no standard error (one example)."""
    se = r.get(f"{key}_stderr")
    return f"{_f(r[key])} ± {_f(se)}" if se is not None and math.isfinite(se) else _f(r[key])


def print_report(r: dict) -> None:
    pm = functools.partial(_pm, r)
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
    if r.get("ess_median") is not None and r["k"] > 1:
        from vaelab.evaluation.metrics import LOW_ESS

        low = r.get("low_ess_examples")
        few = f" ({low} of {r['n']} under {LOW_ESS}: a larger K estimates them better)"
        print(
            f"  effective samples        median {r['ess_median']:.1f} of K={r['k']} per example"
            + (few if low else "")
        )
    if "elbo" in r:
        print(f"  ELBO                     {pm('elbo')}")
        print(f"    reconstruction         {pm('reconstruction')}")
        print(f"    KL                     {pm('kl')}")
        print(f"  active units             {r['active_units']} of {r['latent_dim']}")
    print(f"  {r['seconds']:.1f} s ({1000 * r['seconds_per_image']:.2f} ms per example)")
