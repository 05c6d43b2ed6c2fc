"""Tables — ``vaelab.data.tables.read_table`` against pyarrow's own readers.

Two seeded files of about ``--mb`` MB each are generated in a temporary folder:

- ``floats.csv``: a header ``f0,...`` then standard-normal float32 values written by
  ``pyarrow.csv.write_csv`` (shortest round-trip text, ~11 bytes a value);
- ``floats.parquet``: standard-normal float64 values (what pandas writes), pyarrow's defaults
  (snappy; random doubles do not compress, so the file is ~8 bytes a value).

Both have ``--cols`` columns. For each file two contenders produce the same result, one
C-contiguous ``(N, D)`` float32 numpy array:

- ``pyarrow``: ``pyarrow.csv.read_csv(path)`` / ``pyarrow.parquet.read_table(path)`` with their
  defaults, then each column copied into a preallocated float32 array (``out[:, j] =
  column.to_numpy()``): the least work that gives one array;
- ``pyarrow-f32`` (CSV only): the same, with every column's type given as float32
  (``ConvertOptions(column_types=...)``), pyarrow's fastest reading of this file;
- ``vaelab``: ``read_table(path)``, which also checks every value (missing, infinite) and
  decides the header.

Each (contender, rep) runs in a fresh subprocess (this script with ``--child``) that imports
the same modules (vaelab, hence torch, and pyarrow) before its clock starts, then reads the
file once. It reports the wall time of the read and its peak resident memory: ``peak_mib``
(``VmHWM``, the process's high-water mark) and ``ru_maxrss_mib`` (``getrusage``; equal to it
here, but on Linux it carries the launching process's peak over ``exec``, which is why the
files are written by yet another subprocess), ``rss_before_mib`` its resident size just before
the read (the imports), ``net_mib`` = peak − that, and ``net_x_f32`` = ``net_mib`` over the
result's float32 size. Runs interleave (pyarrow, vaelab, pyarrow, vaelab, ...).

Run: ``python benchmarks/read_tables.py [--reps 3] [--mb 200] [--cols 50]``. Output: one table
per format, each followed by a line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _common

# "pyarrow-f32" (text only) tells pyarrow's reader the float32 type of every column.
CONTENDERS = {"csv": ("pyarrow", "pyarrow-f32", "vaelab"), "parquet": ("pyarrow", "vaelab")}


# --------------------------------------------------------------------------------------------
# files


def write_csv(path: Path, mb: float, cols: int, seed: int) -> None:
    """float32 standard normals, ``cols`` columns, rows appended until the file is ``mb`` MB."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(seed)
    names = [f"f{j}" for j in range(cols)]
    rows = 50_000
    with pa_csv.CSVWriter(path, pa.schema([(n, pa.float32()) for n in names])) as writer:
        while path.stat().st_size < mb * 1e6:
            block = rng.standard_normal((rows, cols), dtype=np.float32)
            writer.write_table(pa.table({n: block[:, j] for j, n in enumerate(names)}))


def write_parquet(path: Path, mb: float, cols: int, seed: int) -> None:
    """float64 standard normals, ``cols`` columns, ``mb`` MB of raw values (pyarrow defaults)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    rows = int(mb * 1e6 / (8 * cols))
    block = rng.standard_normal((rows, cols))
    pq.write_table(pa.table({f"f{j}": block[:, j] for j in range(cols)}), path)


# --------------------------------------------------------------------------------------------
# one measurement (child process)


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _pyarrow_read(path: Path, float32: bool) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        table = pq.read_table(path)
    elif float32:
        with open(path) as f:
            names = f.readline().strip().split(",")
        types = {name.strip('"'): pa.float32() for name in names}
        table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=types))
    else:
        table = pa_csv.read_csv(path)
    out = np.empty((table.num_rows, table.num_columns), dtype=np.float32)
    for j, col in enumerate(table.columns):
        out[:, j] = col.to_numpy()
    return out


def child(contender: str, path: Path) -> dict:
    import pyarrow  # noqa: F401  (imported by both contenders before the clock)

    from vaelab.data.tables import read_table

    rss_before = _status_mib("VmRSS")
    t0 = time.perf_counter()
    if contender == "vaelab":
        x = read_table(path).values
    else:
        x = _pyarrow_read(path, float32=contender == "pyarrow-f32")
    seconds = time.perf_counter() - t0
    # ru_maxrss (KiB on Linux) survives exec: it starts at the launching process's peak. The
    # parent is kept small (the files are written by another subprocess) so that it stays
    # below this process's own peak; VmHWM is this process image's own high-water mark.
    ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak = _status_mib("VmHWM")
    f32_mib = x.size * 4 / 2**20
    assert x.dtype == np.float32 and x.flags.c_contiguous
    return {
        "seconds": seconds,
        "peak_mib": peak,
        "ru_maxrss_mib": ru_maxrss,
        "rss_before_mib": rss_before,
        "net_mib": peak - rss_before,
        "net_x_f32": (peak - rss_before) / f32_mib,
        "f32_mib": f32_mib,
        "rows": x.shape[0],
        "checksum": float(x[:, 0].astype(np.float64).sum()),
    }


def run_child(contender: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", contender, str(path)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{contender} on {path.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--mb", type=float, default=200, help="size of each file in MB (default 200)")
    ap.add_argument("--cols", type=int, default=50, help="columns (default 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs=2, metavar=("CONTENDER", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--generate", metavar="DIR", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    if args.generate:
        write_csv(Path(args.generate) / "floats.csv", args.mb, args.cols, args.seed)
        write_parquet(Path(args.generate) / "floats.parquet", args.mb, args.cols, args.seed)
        return
    busy_before = _common.check_machine_quiet()
    with tempfile.TemporaryDirectory(prefix="vaelab-read-tables-") as tmp:
        files = {"csv": Path(tmp) / "floats.csv", "parquet": Path(tmp) / "floats.parquet"}
        # In a subprocess, so that this process's peak memory stays below the children's
        # (see child()).
        generate = [sys.executable, __file__, "--generate", tmp, "--mb", str(args.mb)]
        generate += ["--cols", str(args.cols), "--seed", str(args.seed)]
        subprocess.run(generate, check=True)
        for fmt, path in files.items():
            summary = _common.interleave(
                {
                    name: (lambda name=name, path=path: run_child(name, path))
                    for name in CONTENDERS[fmt]
                },
                reps=args.reps,
                reference="pyarrow",
                title=f"read a {fmt} table",
                primary="seconds",
                context={
                    "file": path.name,
                    "file_mb": round(path.stat().st_size / 1e6, 1),
                    "cols": args.cols,
                    "seed": args.seed,
                    "cpu_count": os.cpu_count(),
                    "cpu_busy_before": busy_before,
                    **_common.environment(),
                },
                print_report=False,
            )
            med = summary["medians"]
            summary["notes"] = [
                f"file {summary['context']['file_mb']} MB; result {med['vaelab']['rows']:.0f} x "
                f"{args.cols} float32 = {med['vaelab']['f32_mib']:.0f} MiB; vaelab/pyarrow time "
                f"{summary['ratios']['vaelab']['seconds']:.2f}x, net memory "
                f"{summary['ratios']['vaelab']['net_mib']:.2f}x",
            ]
            _common.report(summary)


if __name__ == "__main__":
    main()
