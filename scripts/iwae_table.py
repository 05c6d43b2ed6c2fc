"""Train one row of Burda et al. (2015) Table 1 and record its test NLL at K=5000.

    python scripts/iwae_table.py configs/iwae/vae-1layer-k1-paper.yaml \
        --data-dir ../shared/data/mnist [--set train.epochs=...] [--out runs/iwae]

Trains (resuming if the run exists), evaluates the best model on the full test split with
K=5000 importance samples, and writes ``results/iwae/<row>.json`` plus the model
(``config.json`` + ``model.safetensors``, no optimizer state) under ``results/iwae/<row>/``,
so anyone can re-check the figure with ``vaelab evaluate results/iwae/<row> --k 5000``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from vaelab.config import resolve
from vaelab.evaluation.evaluate import evaluate_run
from vaelab.io import atomic_write_json
from vaelab.runs import METRICS_FILE
from vaelab.training import Trainer, TrainingInterrupted

# Burda, Grosse & Salakhutdinov (2015), Table 1: test NLL (nats), K=5000.
PAPER = {
    ("VAE", 1, 1): 86.76, ("VAE", 1, 5): 86.47, ("VAE", 1, 50): 86.35,
    ("IWAE", 1, 1): 86.76, ("IWAE", 1, 5): 85.54, ("IWAE", 1, 50): 84.78,
    ("VAE", 2, 1): 85.33, ("VAE", 2, 5): 85.01, ("VAE", 2, 50): 84.78,
    ("IWAE", 2, 1): 85.33, ("IWAE", 2, 5): 83.89, ("IWAE", 2, 50): 82.90,
}  # fmt: skip


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="a recipe from configs/iwae/")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="runs/iwae", help="where runs go (default: runs/iwae)")
    p.add_argument("--results", default="results/iwae", help="(default: results/iwae)")
    p.add_argument("--k", type=int, default=5000, help="importance samples (default: 5000)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    name = Path(args.config).stem
    # the test evaluation is done below, at K=5000 on the whole split
    flags = {"train.final_eval_n": 0}
    if args.data_dir:
        flags["data.data_dir"] = args.data_dir
    cfg = resolve(args.config, args.overrides, flags)
    run_dir = Path(args.out) / name
    resume = (run_dir / "checkpoint.safetensors").exists()
    try:
        Trainer(cfg, run_dir, resume=resume, progress=not args.quiet).run()
    except TrainingInterrupted as e:  # Ctrl-C: the checkpoint is written; rerun to resume
        print(f"iwae_table: {e} (or rerun this command)", file=sys.stderr)
        return 130

    rows = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]
    train_seconds = sum(r.get("epoch_seconds") or 0.0 for r in rows)
    t0 = time.perf_counter()
    report = evaluate_run(run_dir, "test", k=args.k, progress=not args.quiet)
    eval_seconds = time.perf_counter() - t0

    kind = "IWAE" if cfg.train.objective == "iwae" else "VAE"
    layers = 2 if cfg.model_class == "HierarchicalVAE" else 1
    paper = PAPER.get((kind, layers, cfg.train.k))
    result = {
        "row": name,
        "model": f"{kind}, {layers} stochastic layer{'s' if layers > 1 else ''}, k={cfg.train.k}",
        "paper_nll": paper,
        "nll": report["nll"],
        "nll_stderr": report["log_likelihood_stderr"],
        "nll_mc_stderr": report["log_likelihood_mc_stderr"],
        "elbo": report["elbo"],
        "active_units": report["active_units"],
        "k": report["k"],
        "n_test": report["n"],
        "binarization": report["binarization"],
        "epochs": len(rows),
        "best_epoch": max(rows, key=lambda r: r["val_elbo"] or -1e30)["epoch"],
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "hardware": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "command": "python scripts/iwae_table.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
    }
    out = Path(args.results)
    (out / name).mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copyfile(run_dir / f, out / name / f)
    atomic_write_json(out / f"{name}.json", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
