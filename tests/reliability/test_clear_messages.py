"""Messages that name the cause: the prior behind a divergence, the file a full disk or a
read-only folder kept from being written, what finishes an interrupted final evaluation; and
output a program can read: JSON without NaN, error lines of bounded length whatever the value.
"""

from __future__ import annotations

import errno
import json

import pytest

from tests.reliability import harness
from tests.reliability.checks import (
    assert_one_line_error,
    assert_unchanged,
    run_cli,
    snapshot,
)
from tests.reliability.test_bad_inputs import _fill_disk_on, _tmp_files
from vaelab.cli import main
from vaelab.errors import EXCERPT_CHARS

QUICK = harness.train_args(epochs=1)


def _strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_divergence_caused_by_the_prior_names_the_prior(tmp_path, capsys):
    out = tmp_path / "run"
    quick_stop = ["--set", "train.max_bad_steps=5", "--set", "train.max_rollbacks=1"]
    argv = ["train", "--out", str(out), *QUICK, *quick_stop, "--prior-std", "1e-30"]
    code, _, err = run_cli(capsys, argv)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert_one_line_error(
        last, "training diverged", "the KL term to the prior", "model.prior_std=1e-30",
        str(out / "model.safetensors"),
    )  # fmt: skip


def test_a_divergence_of_a_sound_prior_does_not_blame_it(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, ["train", "--out", str(out), *QUICK, "--lr", "1e39"])
    if code == 0:  # every bad step skipped and rolled back in time: nothing to blame
        return
    assert "prior" not in err.strip().splitlines()[-1]


def test_ctrl_c_during_the_final_evaluation_says_resume_finishes_it(tmp_path, capsys, monkeypatch):
    from vaelab.report import final

    out = tmp_path / "run"
    args = [*QUICK, "--set", "train.final_eval_n=20", "--set", "train.final_eval_k=5"]

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(final, "evaluate_split", interrupted)
        code, _, err = run_cli(capsys, ["train", "--out", str(out), *args])
    assert code == 130
    last = err.strip().splitlines()[-1]
    assert last.startswith("vaelab: interrupted during the test evaluation")
    assert f"vaelab train --resume --out {out}" in last
    assert not (out / "eval_test.json").exists()
    code, _, err = run_cli(capsys, ["train", "--out", str(out), "--resume", *args])
    assert code == 0, err
    assert _strict_json((out / "eval_test.json").read_text())["n"] == 20


def test_a_full_disk_during_sample_names_the_output_file(run, tmp_path, capsys, monkeypatch):
    target = tmp_path / "s.png"
    before = snapshot(tmp_path)
    _fill_disk_on(monkeypatch, ".s.png.", nth=1)
    code, _, err = run_cli(capsys, ["sample", str(run), "-n", "4", "--out", str(target)])
    assert code == 2
    line = assert_one_line_error(err, str(target), "No space left on device")
    assert ".tmp" not in line
    assert _tmp_files(tmp_path) == []
    assert_unchanged(before, tmp_path)


def test_a_read_only_folder_names_the_file_not_its_temporary_file(
    run, tmp_path, capsys, monkeypatch
):
    """The tests run as root, whom permissions do not stop: the refusal mkstemp meets in a
    read-only folder is made here as the kernel would report it (naming the temporary file)."""
    import vaelab.io as io_mod

    def read_only(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}x1y2z3{suffix}")

    monkeypatch.setattr(io_mod.tempfile, "mkstemp", read_only)
    target = tmp_path / "s.png"
    code, _, err = run_cli(capsys, ["sample", str(run), "-n", "4", "--out", str(target)])
    assert code == 2
    line = assert_one_line_error(err, str(target), "Permission denied")
    assert ".tmp" not in line


def test_evaluate_json_never_holds_nan(run, capsys):
    """One example has no standard error: it is null, not NaN (which is not JSON)."""
    code, out, err = run_cli(capsys, ["evaluate", str(run), "--n", "1", "--k", "5", "--json"])
    assert code == 0, err
    report = _strict_json(out)
    assert report["log_likelihood_stderr"] is None and report["elbo_stderr"] is None
    assert isinstance(report["log_likelihood"], float)


def test_the_table_prints_a_null_number(run, capsys):
    code, out, err = run_cli(capsys, ["evaluate", str(run), "--n", "1", "--k", "5"])
    assert code == 0, err
    assert "log-likelihood (K=5)" in out


def _alias_bomb(levels: int = 9) -> str:
    """The "billion laughs" under a known key: each anchor lists the one before nine times."""
    items = ["&a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    for i in range(1, levels):
        items.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "train:\n  lr: [" + ", ".join(items) + "]\n"


def test_a_yaml_alias_bomb_under_a_known_key_is_refused_at_once(tmp_path, capsys):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(_alias_bomb())
    code, _, err = run_cli(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert code == 2
    line = assert_one_line_error(err, str(cfg), "alias", "not allowed")
    assert len(line) < 400
    assert not (tmp_path / "r").exists()


def test_yaml_without_aliases_still_loads(tmp_path, capsys):
    """The guard refuses aliases only: anchors' look-alikes in strings and plain YAML load."""
    cfg = tmp_path / "ok.yaml"
    cfg.write_text('model: {hidden: [16], latent_dim: 2, activation: "relu"}  # &x *x\n')
    out = tmp_path / "r"
    code, _, err = run_cli(capsys, ["train", "--config", str(cfg), "--out", str(out), "--quiet",
                                    "--epochs", "1", "--set", "train.final_eval_n=0"])  # fmt: skip
    assert code == 0, err


@pytest.mark.parametrize(
    "text, key",
    [
        ("train:\n  lr: " + "9" * 100_000 + "x\n", "train.lr"),
        ("train:\n  seed: [" + ", ".join(["[1, 2, 3]"] * 20_000) + "]\n", "train.seed"),
        ("model:\n  activation: " + "y" * 100_000 + "\n", "activation"),
        ("train:\n  device: " + "z" * 100_000 + "\n", "train.device"),
    ],
    ids=["long-string", "big-list", "model-field", "device"],
)
def test_an_error_quotes_a_bounded_excerpt_of_the_value(tmp_path, capsys, text, key):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert code == 2
    line = assert_one_line_error(err, key)
    assert len(line) < 200 + len(str(cfg)) + EXCERPT_CHARS, len(line)
    assert_unchanged(before, tmp_path)


def test_eval_test_json_has_no_nan(run, tmp_path, capsys):
    code, _, err = run_cli(
        capsys,
        ["train", "--out", str(run), "--resume", *QUICK, "--set", "train.final_eval_n=1"],
    )
    assert code == 0, err
    report = _strict_json((run / "eval_test.json").read_text())
    assert report["elbo_stderr"] is None
    assert main(["train", "--out", str(run), "--resume", *QUICK]) == 0  # reads and prints it
