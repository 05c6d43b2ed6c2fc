"""``vaelab datasets``: what is built in and what is on disk."""

from __future__ import annotations

from vaelab.cli.options import add_json
from vaelab.io import dumps_json


def add_parser(sub) -> None:
    p = sub.add_parser("datasets", help="what is built in and what is on disk")
    p.add_argument(
        "--data-dir", default=None, help="also look here (default: $VAELAB_DATA or ~/.cache/vaelab)"
    )
    p.add_argument("--verify", action="store_true", help="check the files' sha256 (default: off)")
    add_json(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from vaelab.data import data_home, dataset_status

    rows = dataset_status(args.data_dir, verify=args.verify)
    if args.json:
        print(dumps_json(rows))
        return 0
    print(f"data folder: {args.data_dir or data_home()}")
    for r in rows:
        where = _where(r)
        sizes = f"{r.get('n_train')}/{r.get('n_valid')}/{r.get('n_test')}"
        print(
            f"  {r['name']:<14} {where:<20} train/valid/test {sizes:<18} {r.get('description', '')}"
        )
        if r.get("verified") is False:
            print(f"    {r['error']}")
    print(
        "datasets download on first use; offline, put the files in the data folder "
        "or pass --data-dir; --verify checks the files' sha256"
    )
    return 0


def _where(row: dict) -> str:
    """Built in, on disk (verified when asked), failed verification, or not downloaded."""
    if row.get("embedded"):
        return "built in"
    if not row.get("present"):
        return "not downloaded"
    if row.get("verified") is False:
        return "FAILED verification"
    # files of the right names, not yet checked: another set's files may have the same names
    return "on disk, verified" if row.get("verified") else "on disk, unchecked"
