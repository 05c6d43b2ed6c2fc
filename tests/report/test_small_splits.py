"""A split of one or two examples, or posterior means that do not vary, still gets a report:
the latent map is replaced by a sentence saying why, the other views draw what there is."""

from __future__ import annotations

import csv
import html
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.cli import main
from vaelab.report.model_views import MAP_MIN_POINTS, Latents, _latent_map
from vaelab.runs.layout import REPORT_FILE

NO_MAP = "No latent map"
TRAIN = ["--epochs", "1", "--threads", "1", "--hidden", "16", "--latent-dim", "3", "--quiet"]


def _latents(mean: torch.Tensor) -> Latents:
    n, dims = mean.shape
    return Latents(mean=mean, std=torch.ones(n, dims), labels=np.arange(n) % 3, kl=None)


@pytest.mark.parametrize("dims", [1, 2, 5])
@pytest.mark.parametrize("n", [1, 2])
def test_too_few_examples_for_a_map_is_a_sentence(n, dims):
    torch.manual_seed(0)
    text = html.unescape(_latent_map(_latents(torch.randn(n, dims)), "test"))
    assert "<img" not in text
    assert text == (
        f'<p class="note">{NO_MAP}: {n} test example{"s are" if n > 1 else " is"} too few '
        f"to draw one (it needs at least {MAP_MIN_POINTS}).</p>"
    )


@pytest.mark.parametrize("dims", [1, 2, 5])
def test_means_that_do_not_vary_are_a_sentence(dims):
    text = _latent_map(_latents(torch.full((10, dims), 0.25)), "valid")
    assert "<img" not in text
    assert f"{NO_MAP}: the posterior means of the 10 valid examples are all the same" in text


@pytest.mark.parametrize("dims", [1, 2, 5])
def test_three_varied_examples_are_drawn(dims):
    torch.manual_seed(0)
    text = _latent_map(_latents(torch.randn(MAP_MIN_POINTS, dims)), "test")
    assert NO_MAP not in text and text.count('alt="latent map"') == 1


def _table(path: Path, rows: int) -> Path:
    """``rows`` random rows of 4 columns: the 90/5/5 split leaves round(rows / 20) to test."""
    values = np.random.default_rng(0).normal(size=(rows, 4))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d"])
        w.writerows(values.tolist())
    return path


@pytest.mark.parametrize(("rows", "test_n"), [(20, 1), (40, 2)])
def test_train_and_report_a_table_whose_test_split_is_tiny(tmp_path, capsys, rows, test_n):
    out = tmp_path / "run"
    data = _table(tmp_path / "t.csv", rows)
    assert main(["train", "--dataset", str(data), "--out", str(out), *TRAIN]) == 0
    assert f"test split, n={test_n}," in capsys.readouterr().out
    for path in (out / REPORT_FILE, tmp_path / "again.html"):  # train's report, and the command's
        if path != out / REPORT_FILE:
            assert main(["report", str(out), "--out", str(path)]) == 0
        text = html.unescape(path.read_text())
        s = "s are" if test_n > 1 else " is"
        assert f"{NO_MAP}: {test_n} test example{s} too few to draw one" in text
        assert 'alt="latent map"' not in text
        # the rest of the model's views are there
        for alt in ("reconstruction error per column", "histogram of per-row log p(x)"):
            assert f'alt="{alt}"' in text


def test_train_and_report_an_image_folder_of_three(tmp_path):
    """One test image: no map, one reconstruction pair, no interpolation, one traversal row."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(folder), "--out", str(out), *TRAIN]) == 0
    text = html.unescape((out / REPORT_FILE).read_text())
    assert f"{NO_MAP}: 1 test example is too few to draw one" in text
    assert 'alt="reconstructions"' in text and 'alt="latent traversals"' in text
    assert "of 1 test example (one row each)" in text
    assert 'alt="interpolations"' not in text  # a pair needs two examples
    width, height = Image.open(out / "reconstructions.png").size
    # one column of 8×8 cells enlarged 22 times to be 256 wide: 2 rows, the original above its
    # reconstruction, and a margin of labels beside them
    assert height == 22 * (2 * 8 + 3 * 2) and width > 22 * (8 + 2 * 2)


def test_a_normal_split_still_draws_the_map(table_run):
    text = (table_run / REPORT_FILE).read_text()
    assert NO_MAP not in text
    assert text.count('alt="latent map"') == 1
