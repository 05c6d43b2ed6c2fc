"""``vaelab report``: one self-contained HTML page about a run."""

from __future__ import annotations

from pathlib import Path

from vaelab.cli.options import add_data_dir, add_run


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write RUN/report.html: the run, learning curves, evaluation, latent space, pictures",
        description=(
            "Write one HTML file about a run that opens offline in any browser: the run "
            "(data, model, objective, command line, versions), learning curves, the saved "
            "evaluation, KL per latent dimension and active units, a 2-D map of the latent "
            "space, samples, reconstructions, interpolations and traversals (for tables: "
            "tables, the reconstruction error per column and the least likely rows), and the "
            "inference gaps with --gaps. Pictures are embedded; the page runs no script."
        ),
    )
    add_run(p)
    p.add_argument(
        "--out", metavar="FILE", default=None, help="where to write (default: RUN/report.html)"
    )
    p.add_argument(
        "--gaps",
        action="store_true",
        help="compute the approximation and amortization gaps now (minutes; default: off)",
    )
    p.add_argument(
        "--gaps-n",
        type=int,
        default=500,
        metavar="N",
        help="test examples for --gaps (default: 500)",
    )
    p.add_argument(
        "--gaps-k",
        type=int,
        default=5000,
        metavar="K",
        help="importance samples for --gaps (default: 5000)",
    )
    p.add_argument(
        "--gaps-json",
        metavar="FILE",
        default=None,
        help="show gaps computed already by `vaelab evaluate RUN --gaps --json > FILE` "
        "(default: none)",
    )
    add_data_dir(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from vaelab.errors import InvalidArgumentError
    from vaelab.report.build import read_gaps, write_report

    if args.gaps and args.gaps_json:
        raise InvalidArgumentError("--gaps computes the gaps, --gaps-json reads them: give one")
    if args.out is not None and Path(args.out).suffix.lower() not in (".html", ".htm"):
        raise InvalidArgumentError(f"--out {args.out}: the report is a web page, name it .html")
    gaps = read_gaps(args.gaps_json, args.run) if args.gaps_json else None
    path = write_report(
        args.run, args.out, data_dir=args.data_dir, data=args.data, gaps=gaps,
        compute_gaps=args.gaps, gaps_n=args.gaps_n, gaps_k=args.gaps_k,
    )  # fmt: skip
    print(f"report: {path}")
    return 0
