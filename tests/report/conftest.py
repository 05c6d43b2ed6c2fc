"""Two finished runs made once per session by the real ``vaelab train`` (in process): a tiny
model on the built-in mnist-mini, and a table (scikit-learn's wine data as a CSV) with a
hostile column name, each in a folder whose name is markup."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.training.conftest import TINY
from vaelab.cli import main

HOSTILE_COLUMN = "<script>alert(1)</script>"
HOSTILE_RUN = "run <img src=x onerror=alert(2)>"  # a folder name is the user's text too


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mnist") / HOSTILE_RUN
    assert main(["train", "--out", str(out), "--epochs", "1", *TINY]) == 0
    return out


def write_wine_csv(path: Path) -> Path:
    """The 178 wines of scikit-learn (13 measurements, 3 cultivars), one column renamed to
    markup; a table a user might have, and the cultivar kept as a label."""
    datasets = pytest.importorskip("sklearn.datasets")
    wine = datasets.load_wine()
    names = list(wine.feature_names)
    names[0] = HOSTILE_COLUMN
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*names, "cultivar"])
        for row, target in zip(wine.data, wine.target, strict=True):
            w.writerow([*row, f"<i>cultivar_{target}</i>"])  # labels are the user's text too
    return path


@pytest.fixture(scope="session")
def table_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("table")
    data = write_wine_csv(root / "wine <svg onload=alert(3)>.csv")
    out = root / "wine-run"
    code = main(
        [
            "train", "--dataset", str(data), "--label-column", "cultivar", "--out", str(out),
            "--epochs", "20", "--hidden", "32", "--latent-dim", "3", "--batch-size", "32",
            "--set", "train.final_eval_k=50", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    return out
