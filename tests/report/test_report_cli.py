"""`vaelab report`, the report `train` writes, and `vaelab evaluate --gaps`, in process."""

from __future__ import annotations

import json
import shutil

import torch

from tests.training.conftest import TINY
from vaelab.cli import main
from vaelab.runs.layout import REPORT_FILE
from vaelab.runs.ownership import read_manifest


def test_train_writes_a_report_claimed_in_the_manifest_and_overwrite_removes_it(
    mnist_run, tmp_path
):
    assert (mnist_run / REPORT_FILE).is_file()
    assert REPORT_FILE in read_manifest(mnist_run).files
    run = shutil.copytree(mnist_run, tmp_path / "run")
    code = main(["train", "--out", str(run), "--epochs", "1", "--overwrite", "--no-report", *TINY])
    assert code == 0
    assert (run / "model.safetensors").is_file() and not (run / REPORT_FILE).exists()
    assert REPORT_FILE not in read_manifest(run).files


def test_report_command_writes_the_run_folder_or_elsewhere(mnist_run, tmp_path, capsys):
    run = shutil.copytree(mnist_run, tmp_path / "run")
    (run / REPORT_FILE).unlink()
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {run / REPORT_FILE}"
    assert (run / REPORT_FILE).read_text().startswith("<!DOCTYPE html>")
    other = tmp_path / "elsewhere.html"
    assert main(["report", str(run), "--out", str(other)]) == 0
    assert other.is_file() and "elsewhere.html" not in read_manifest(run).files


def test_report_of_a_missing_run_or_a_users_file_is_one_line_and_exit_2(
    tmp_path, capsys, mnist_run
):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing" in err and "Traceback" not in err
    run = shutil.copytree(mnist_run, tmp_path / "run")
    mine = run / "notes.html"
    mine.write_text("mine")  # the user's own file in the run folder: never written over
    assert main(["report", str(run), "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vaelab did not write it" in err
    assert mine.read_text() == "mine"


def test_evaluate_gaps_json_adds_up_and_the_report_shows_it(mnist_run, tmp_path, capsys):
    # 2,000 small optimizer steps: two threads spin-wait on each other when a core is busy
    torch.set_num_threads(1)
    assert main(["evaluate", str(mnist_run), "--gaps", "--n", "0"]) == 2  # not the default 500
    assert "--n must be an integer >= 1, got 0" in capsys.readouterr().err
    code = main(["evaluate", str(mnist_run), "--gaps", "--n", "30", "--k", "100", "--json"])
    assert code == 0
    gaps = json.loads(capsys.readouterr().out)
    assert gaps["n"] == 30 and gaps["k"] == 100 and gaps["split"] == "test"
    total = gaps["elbo"] + gaps["amortization_gap"] + gaps["approximation_gap"]
    assert abs(total - gaps["log_likelihood"]) < 1e-9
    for key in ("approximation_gap", "amortization_gap"):
        assert gaps[f"{key}_stderr"] > 0
    assert gaps["amortization_gap"] > 0  # a one-epoch encoder: fitting each q does better
    path = tmp_path / "gaps.json"
    path.write_text(json.dumps(gaps))
    out = tmp_path / "r.html"
    assert main(["report", str(mnist_run), "--out", str(out), "--gaps-json", str(path)]) == 0
    text = out.read_text()
    assert '<section id="gaps">' in text
    assert f"{gaps['amortization_gap']:.3f} ± {gaps['amortization_gap_stderr']:.3f}" in text
    assert (
        main(
            [
                "report",
                str(mnist_run),
                "--out",
                str(out),
                "--gaps-json",
                str(mnist_run / "config.json"),
            ]
        )
        == 2
    )
    capsys.readouterr()
    # another run's gaps are refused; a run folder that no longer exists cannot be told apart
    other = tmp_path / "other-run"
    other.mkdir()
    path.write_text(json.dumps({**gaps, "run": str(other)}))
    assert main(["report", str(mnist_run), "--out", str(out), "--gaps-json", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the gaps of the run" in err and str(other) in err
    for run in (str(tmp_path / "moved-away"), str(mnist_run.resolve())):
        path.write_text(json.dumps({**gaps, "run": run}))
        assert main(["report", str(mnist_run), "--out", str(out), "--gaps-json", str(path)]) == 0


def test_train_no_report_writes_none(tmp_path):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--epochs", "1", "--no-report", *TINY]) == 0
    assert (out / "eval_test.json").is_file() and not (out / REPORT_FILE).exists()


def test_report_gaps_computes_them_and_shows_them(mnist_run, tmp_path, capsys):
    torch.set_num_threads(1)  # see test_evaluate_gaps_json_adds_up_and_the_report_shows_it
    out = tmp_path / "g.html"
    argv = [
        "report",
        str(mnist_run),
        "--out",
        str(out),
        "--gaps",
        "--gaps-n",
        "10",
        "--gaps-k",
        "50",
    ]
    assert main(argv) == 0
    text = out.read_text()
    assert '<section id="gaps">' in text and "first 10 of the test split" in text
    assert "approximation gap log p(x) − ELBO(q*)" in text
    assert main([*argv, "--gaps-json", str(tmp_path / "x.json")]) == 2  # one or the other
    assert "give one" in capsys.readouterr().err
