"""Where the time of one ``vaelab train`` command goes: start-up, data, steps, validation, files.

The command is the one a user runs (``vaelab train --config configs/pytorch-examples.yaml
--set train.final_eval_n=0 --epochs E``, progress bar on), in a fresh process per run, for
``E = 1`` and ``E = --epochs`` (default 4). This script starts itself as that process (``--child``):
it stamps the clock before the interpreter starts, imports torch and vaelab under a clock,
wraps the trainer's parts in timers, calls ``vaelab.cli.main`` and prints what each part took.
Nothing in ``src/`` is changed or instrumented: the timers are put on from here.

Each part's time is *exclusive* (a part called inside another, e.g. ``fsync`` inside the
checkpoint write, is counted once, in the inner part), so the parts and ``other`` add up to
the command's wall-clock. The per-epoch column is (E-epoch run − 1-epoch run) ÷ (E − 1):
what one more epoch costs, part by part.

``--compare SRC`` times a second vaelab, the package found in ``SRC`` (an older tree's
``src/``), in the same rounds: the effect of a change, part by part.

Run: ``python benchmarks/train_attribution.py [--reps 3] [--epochs 4] [--threads 1]
[--compare SRC]``. Output: a table of medians per vaelab, then one line ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "pytorch-examples.yaml"
MARK = "ATTRIBUTION "

# (module, owner or None for a module-level function, attribute, part). The trainer imports
# some functions by name, so those are replaced where the trainer looks them up.
PARTS = [
    ("vaelab.training.trainer", None, "make_optimizer", "optimizer set-up (imports torch._dynamo)"),
    ("vaelab.training.trainer", None, "build_model", "model set-up"),
    ("vaelab.data.pipeline", "DataPipeline", "__init__", "data: read, verify, train split"),
    ("vaelab.data.pipeline", "DataPipeline", "eval_data", "data: validation split"),
    ("vaelab.data.pipeline", "DataPipeline", "train_batch", "steps: batch binarization"),
    ("vaelab.training.trainer", "Trainer", "_train_step", "steps: forward, backward, Adam"),
    ("vaelab.training.stats", "DeviceStats", "add", "steps: statistics"),
    ("vaelab.training.stats", "DeviceStats", "sync", "steps: host sync, finite checks"),
    ("vaelab.training.trainer", "Trainer", "validate", "validation ELBO"),
    ("vaelab.training.trainer", "Trainer", "save_checkpoint", "checkpoint write"),
    ("vaelab.training.trainer", "Trainer", "_save_best", "best-model write"),
    ("vaelab.runs.metrics", "MetricsLog", "append", "metrics line"),
    ("vaelab.training.progress", "EpochBar", "__init__", "progress bar"),
    ("vaelab.training.progress", "EpochBar", "update", "progress bar"),
    ("vaelab.training.progress", "EpochBar", "close", "progress bar"),
    ("vaelab.training.trainer", None, "write_run_config", "run files (config, manifest)"),
    ("vaelab.runs.layout", None, "start_new_run", "run files (config, manifest)"),
    ("vaelab.report", None, "finish_run", "after training (test evaluation, pictures)"),
    ("os", None, "fsync", "fsync"),
]


def _child(t_launch: float, argv: list[str]) -> None:
    """Runs inside the timed process: the parts' exclusive seconds, printed as one line."""
    import functools
    import importlib
    from collections import defaultdict

    times: dict[str, float] = defaultdict(float)
    times["python start-up"] = time.monotonic() - t_launch
    # vaelab sets this before torch loads (see vaelab/__init__.py); importing torch first
    # here must not change what the command runs with
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    t = time.monotonic()
    import torch  # noqa: F401

    times["import torch"] = time.monotonic() - t
    t = time.monotonic()
    import vaelab.cli
    import vaelab.report
    import vaelab.training.trainer

    times["import vaelab"] = time.monotonic() - t
    inner: list[float] = []  # time spent in timed parts below the current one

    def timed(fn, part):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            inner.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                times[part] += dt - inner.pop()
                if inner:
                    inner[-1] += dt

        return wrapper

    for module, owner, attr, part in PARTS:
        target = importlib.import_module(module)
        target = getattr(target, owner) if owner else target
        setattr(target, attr, timed(getattr(target, attr), part))
    main = vaelab.cli.main

    def main_then_report() -> int:
        t = time.monotonic()
        code = main(argv)
        in_main = time.monotonic() - t
        setup = ("python start-up", "import torch", "import vaelab")
        times["other (in the command)"] = in_main - sum(
            v for k, v in times.items() if k not in setup
        )
        times["_until_exit"] = time.monotonic() - t_launch
        sys.stdout.flush()
        print(MARK + json.dumps({"code": code, "times": times}), flush=True)
        return code

    # the command's own entry point, so that it ends as the user's command ends (a vaelab
    # older than that entry point ends as `sys.exit(main())` did)
    vaelab.cli.main = main_then_report
    command = getattr(vaelab.cli, "command", None)
    sys.exit(command() if command else main_then_report())


def one_run(epochs: int, src: str | None, args: argparse.Namespace) -> dict[str, float]:
    """One fresh process of the command (vaelab from ``src`` when given, else the installed
    one); the parts' seconds and the wall-clock."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, __file__, "--child", "", "train", "--config", str(CONFIG)]
        cmd += ["--data-dir", str(args.data_dir), "--out", str(Path(d) / "run")]
        cmd += ["--set", "train.final_eval_n=0", "--epochs", str(epochs)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        t0 = time.monotonic()
        cmd[3] = repr(t0)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.monotonic() - t0
    lines = [x for x in done.stdout.splitlines() if x.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    times = json.loads(lines[-1][len(MARK) :])["times"]
    times["interpreter exit"] = wall - times.pop("_until_exit")
    times["wall-clock"] = wall
    return times


def table(name: str, runs: dict[int, list[dict[str, float]]], e: int, common) -> dict:
    """Print one variant's medians and per-epoch column; return them."""
    parts = list(dict.fromkeys(k for rs in runs.values() for r in rs for k in r))
    med = {
        n: {p: statistics.median(r.get(p, 0.0) for r in rs) for p in parts}
        for n, rs in runs.items()
    }
    per_epoch = {p: (med[e][p] - med[1][p]) / (e - 1) for p in parts}
    rows = [["part", "E=1 (s)", f"E={e} (s)", "per epoch (s)", "share of an epoch"]]
    for p in parts:
        share = per_epoch[p] / per_epoch["wall-clock"] if per_epoch["wall-clock"] > 0 else 0
        rows.append(
            [p, f"{med[1][p]:.3f}", f"{med[e][p]:.3f}", f"{per_epoch[p]:.3f}", f"{share:.1%}"]
        )
    reps = len(runs[1])
    print(f"\n== vaelab train ({name}): where the time goes (medians of {reps} runs each) ==")
    print(common.format_table(rows))
    return {"medians": {str(k): v for k, v in med.items()}, "per_epoch": per_epoch}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="runs of each length (default 3)")
    ap.add_argument("--epochs", type=int, default=4, help="the longer run's epochs (default 4)")
    ap.add_argument(
        "--threads", type=int, default=None, help="--threads of the command (default: not given)"
    )
    ap.add_argument(
        "--compare",
        metavar="SRC",
        help="also time the vaelab package in SRC (e.g. an older tree's src/), interleaved",
    )
    ap.add_argument("--data-dir", default=None, help="MNIST IDX folder")
    args = ap.parse_args(argv)
    if args.epochs < 2:
        ap.error("--epochs must be at least 2")
    sys.path.insert(0, str(Path(__file__).parent))
    import _common

    args.data_dir = _common.mnist_dir(args.data_dir)
    busy = _common.check_machine_quiet()
    variants = {"installed": None, **({args.compare: args.compare} if args.compare else {})}
    runs = {v: {1: [], args.epochs: []} for v in variants}
    for r in range(args.reps):
        for epochs in (1, args.epochs):
            for name, src in variants.items():
                runs[name][epochs].append(one_run(epochs, src, args))
                wall = runs[name][epochs][-1]["wall-clock"]
                print(
                    f"[attribution] rep {r + 1}/{args.reps} {name} E={epochs}: {wall:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
    summary = {
        "benchmark": "train attribution",
        "variants": {name: table(name, runs[name], args.epochs, _common) for name in variants},
        "runs": {name: {str(k): v for k, v in rs.items()} for name, rs in runs.items()},
        "context": {
            "threads": args.threads,
            "cpu_busy_before": busy,
            "cpu_busy_after": _common.check_machine_quiet(),
            **_common.environment(),
        },
    }
    after = summary["context"]["cpu_busy_after"]
    if busy is not None and after is not None:
        print(f"  the CPUs were {busy:.0%} busy with other work before the runs, {after:.0%} after")
    print("RESULT " + json.dumps(summary, sort_keys=True), flush=True)
    return summary


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(float(sys.argv[2]), sys.argv[3:])
    else:
        main()
