"""The committed results (results/iwae/) agree with their weights, their recipes and the README."""

import json
import math
from pathlib import Path

import pytest

from vaelab.config import resolve
from vaelab.evaluation.evaluate import evaluate_run

REPO = Path(__file__).resolve().parents[1]
RESULTS = sorted((REPO / "results" / "iwae").glob("*.json"))


def _result(path):
    return json.loads(path.read_text())


def test_there_is_a_result():
    assert RESULTS, "no committed result in results/iwae/"


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_result_matches_its_recipe_and_weights(path):
    res = _result(path)
    weights = path.with_suffix("") / "model.safetensors"
    assert weights.stat().st_size < 5 * 2**20
    recipe = resolve(REPO / "configs" / "iwae" / f"{res['row']}.yaml")
    saved = json.loads((path.with_suffix("") / "config.json").read_text())
    assert saved["class"] == recipe.model_class
    for key, value in recipe.model.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert saved["config"][key] == expected, key
    # the recipe's epochs, or an override recorded in the command
    assert res["epochs"] == recipe.train.epochs or f"train.epochs={res['epochs']}" in res["command"]
    assert res["k"] == 5000 and res["n_test"] == 10_000
    # the importance-sampled NLL can only improve on the ELBO, and not by absurd amounts
    assert res["nll"] <= -res["elbo"] + 3 * res["nll_stderr"]
    assert -res["elbo"] - res["nll"] < 10


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_readme_reports_the_committed_figure(path):
    res = _result(path)
    row = next(
        (
            line
            for line in (REPO / "README.md").read_text().splitlines()
            if line.startswith("|") and res["row"] in line  # the table's row, not a mention
        ),
        None,
    )
    assert row is not None, f"README's Results table has no row for {res['row']}"
    assert f"{res['nll']:.2f}" in row


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_committed_model_is_as_good_on_a_slice(path, shared_mnist):
    """Quick check that the weights are the ones measured: 300 test images at K=500."""
    res = _result(path)
    rep = evaluate_run(path.with_suffix(""), "test", k=500, n=300, data_dir=str(shared_mnist))
    # a 300-image mean is within a few of its standard errors of the full-test figure
    assert abs(rep["nll"] - res["nll"]) < 4 * rep["log_likelihood_stderr"] + 0.5
    assert rep["nll"] <= -rep["elbo"]


@pytest.mark.slow
@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_reevaluation_reproduces_the_figure(path, shared_mnist):
    """`vaelab evaluate RESULT --k 5000` on the whole test split gives the recorded NLL."""
    res = _result(path)
    rep = evaluate_run(path.with_suffix(""), "test", k=5000, data_dir=str(shared_mnist))
    assert math.isclose(rep["nll"], res["nll"], abs_tol=0.15)
    assert rep["n"] == 10_000
