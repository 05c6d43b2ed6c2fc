"""`vaelab train` → evaluate → sample/reconstruct/interpolate, in process."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.training.conftest import TINY
from vaelab.cli import main
from vaelab.io import load_tensors


def _train(tmp_path, *extra, name="run"):
    out = tmp_path / name
    code = main(["train", "--out", str(out), "--epochs", "1", *TINY, *extra])
    return code, out


def test_train_leaves_a_complete_run_that_other_commands_use(tmp_path, capsys):
    code, run = _train(tmp_path)
    assert code == 0
    for f in [
        "config.json",
        "model.safetensors",
        "checkpoint.safetensors",
        "metrics.jsonl",
        "eval_test.json",
        "samples.png",
        "reconstructions.png",
    ]:
        assert (run / f).is_file(), f
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    for key in ("epoch", "step", "train_elbo", "val_elbo", "train_images_per_s", "lr"):
        assert key in rows[0]
    assert rows[0]["step"] == math.ceil(8000 / 256)
    assert rows[0]["train_elbo"] < 0 and rows[0]["val_elbo"] < 0
    capsys.readouterr()

    assert main(["evaluate", str(run), "--k", "30", "--n", "50", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "note:" not in captured.err  # --n within the split: nothing to say
    for key in (
        "elbo",
        "log_likelihood",
        "nll",
        "bits_per_dim",
        "k",
        "n",
        "split",
        "binarization",
        "reconstruction",
        "kl",
        "active_units",
        "kl_per_dim",
    ):
        assert key in report, key
    assert report["k"] == 30 and report["n"] == 50 and report["split"] == "test"
    assert 1 <= report["ess_median"] <= 30 and 0 <= report["low_ess_examples"] <= 50
    assert main(["evaluate", str(run), "--k", "2", "--n", "10000000", "--json"]) == 0
    captured = capsys.readouterr()
    n = json.loads(captured.out)["n"]
    assert n < 10_000_000 and f"the test split has {n} examples, all evaluated" in captured.err
    assert report["nll"] == pytest.approx(-report["log_likelihood"])
    assert report["bits_per_dim"] == pytest.approx(report["nll"] / (784 * math.log(2)))
    assert report["log_likelihood"] <= 0  # a probability mass on binary data
    assert report["elbo"] == pytest.approx(report["reconstruction"] - report["kl"], abs=1e-6)
    assert len(report["kl_per_dim"]) == 4
    assert sum(report["kl_per_dim"]) == pytest.approx(report["kl"], rel=1e-4)
    # the IS estimate is above the ELBO, up to noise
    assert report["log_likelihood"] >= report["elbo"] - 3 * report["elbo_stderr"]

    out = tmp_path / "s.png"
    assert main(["sample", str(run), "-n", "16", "--out", str(out)]) == 0
    # small images are enlarged (nearest neighbour) to a grid at least 256 pixels wide
    grid = 4 * 28 + 5 * 2
    assert Image.open(out).size == (3 * grid, 3 * grid)
    assert main(["sample", str(run), "-n", "5", "--out", str(tmp_path / "s.npy")]) == 0
    assert main(["reconstruct", str(run), "--out", str(tmp_path / "r.png"), "-n", "8"]) == 0
    assert Image.open(tmp_path / "r.png").size[1] == 2 * (2 * 28 + 3 * 2)  # rows labelled
    # fewer than 8 examples: one row of 5 originals above one of their 5 reconstructions
    assert main(["reconstruct", str(run), "--out", str(tmp_path / "r5.png"), "-n", "5"]) == 0
    width, height = Image.open(tmp_path / "r5.png").size
    assert height == 2 * (2 * 28 + 3 * 2) and width > 2 * (5 * 28 + 6 * 2)  # and a label margin
    # 12: rows of 8, 4 of them (the last of each kind filled out with blank cells), not 3
    assert main(["reconstruct", str(run), "--out", str(tmp_path / "r12.png"), "-n", "12"]) == 0
    assert Image.open(tmp_path / "r12.png").size[1] == 2 * (4 * 28 + 5 * 2)
    # an array holds no blank cells: the 12 originals, then their 12 reconstructions
    assert main(["reconstruct", str(run), "--out", str(tmp_path / "r12.npy"), "-n", "12"]) == 0
    assert np.load(tmp_path / "r12.npy").shape == (24, 1, 28, 28)
    assert (
        main(
            [
                "interpolate",
                str(run),
                "--out",
                str(tmp_path / "i.png"),
                "--pairs",
                "3",
                "--steps",
                "7",
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "i.png").size == (2 * (7 * 28 + 8 * 2), 2 * (3 * 28 + 4 * 2))
    # more than the split holds: all of it, said in a note
    capsys.readouterr()
    big = ["reconstruct", str(run), "--out", str(tmp_path / "all.npy"), "-n", "10000000"]
    assert main(big) == 0
    n = np.load(tmp_path / "all.npy").shape[0] // 2
    assert f"note: the test split has {n} examples: all shown" in capsys.readouterr().err


def test_interpolation_pairs_are_different_examples_and_never_repeat():
    from vaelab.cli.pictures import _distinct_pairs

    for n, wanted in ((9, 100), (9, 5), (2, 8), (10_000, 64)):
        idx = _distinct_pairs(n, wanted, seed=3)
        pairs = {tuple(sorted(p)) for p in idx.t().tolist()}
        assert idx.shape == (2, min(wanted, n * (n - 1) // 2)) and len(pairs) == idx.shape[1]
        assert (idx[0] != idx[1]).all() and 0 <= idx.min() and idx.max() < n
    assert torch.equal(_distinct_pairs(50, 8, seed=3), _distinct_pairs(50, 8, seed=3))
    assert not torch.equal(_distinct_pairs(50, 8, seed=3), _distinct_pairs(50, 8, seed=4))


def test_train_gaussian_dequantized_bits_per_dim(tmp_path, capsys):
    code, run = _train(tmp_path, "--likelihood", "gaussian")
    assert code == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "10", "--n", "40", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["dequantized"] is True
    assert r["bits_per_dim"] == pytest.approx(r["nll"] / (784 * math.log(2)) + 8)


def test_existing_run_is_refused_and_untouched(tmp_path, capsys):
    code, run = _train(tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    code, _ = _train(tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    assert "run directory exists" in err and "--resume" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert before == after
    # --overwrite replaces it
    code, _ = _train(tmp_path, "--overwrite", "--seed", "3")
    assert code == 0
    assert (run / "model.safetensors").read_bytes() != before["model.safetensors"]
    assert json.loads((run / "config.json").read_text())["run"]["train"]["seed"] == 3


def test_bernoulli_on_grey_pixels_is_refused_unless_binarized(tmp_path, capsys):
    code, _ = _train(tmp_path, "--binarize", "none")
    err = capsys.readouterr().err
    assert code == 2
    assert "grey pixels" in err and "--binarize dynamic" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "train.learning_rate=0.1"], "unknown config key train.learning_rate"),
        (["--set", "train.seed=two"], "train.seed: expected an integer, got 'two'"),
        (["--set", "train.weight_decay=[1]"], "train.weight_decay: expected a number, got [1]"),
        (["--latent-dim", "0"], "latent_dim must be >= 1, got 0"),
        (["--lr", "-0.1"], "train.lr: must be > 0, got -0.1"),
        (["--k", "0"], "train.k: must be > 0, got 0"),
        (["--set", "model.latent=3"], "unknown config key model.latent"),
        (["--dataset", "nonsense"], "unknown dataset 'nonsense'"),
    ],
)
def test_bad_training_settings_are_one_line_errors(tmp_path, capsys, args, message):
    code, _ = _train(tmp_path, *args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err, err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_config_file_and_overrides_resolve_in_order(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        "model:\n  latent_dim: 3\n  hidden: [16]\ntrain:\n  lr: 0.01\n  epochs: 1\n"
    )
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--config",
            str(cfg_file),
            "--set",
            "train.lr=0.002",
            "--latent-dim",
            "5",
            "--out",
            str(out),
            "--quiet",
            "--set",
            "train.final_eval_n=0",
        ]
    )
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["run"]["train"]["lr"] == 0.002  # --set beats the file
    assert saved["run"]["model"]["latent_dim"] == 5  # a flag beats the file
    assert saved["config"]["hidden"] == [16]  # the file beats the default
    assert saved["config"]["latent_dim"] == 5
    assert not (out / "eval_test.json").exists()


def test_evaluate_bad_inputs(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    _, run = _train(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "0"]) == 2
    assert "k must be an integer >= 1, got 0" in capsys.readouterr().err


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Stop mid-epoch (a checkpoint every 5 steps, then a simulated crash), resume, compare."""
    common = [
        *TINY,
        "--epochs",
        "2",
        "--set",
        "train.final_eval_n=0",
        "--set",
        "train.checkpoint_every_steps=5",
    ]
    full = tmp_path / "full"
    assert main(["train", "--out", str(full), *common]) == 0

    from vaelab.training import trainer as trainer_mod

    part = tmp_path / "part"
    crash_at = 37  # global steps: mid epoch 2 (32 steps per epoch), after the checkpoint at 35
    original = trainer_mod.Trainer._train_step
    calls = {"n": 0}

    def crashing(self, x, beta):
        calls["n"] += 1
        if calls["n"] > crash_at:
            raise SystemExit("simulated crash")
        return original(self, x, beta)

    trainer_mod.Trainer._train_step = crashing
    try:
        with pytest.raises(SystemExit):
            main(["train", "--out", str(part), *common])
    finally:
        trainer_mod.Trainer._train_step = original
    assert main(["train", "--out", str(part), "--resume", *common]) == 0

    a = load_tensors(full / "checkpoint.safetensors")
    b = load_tensors(part / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith(("model/", "optim/")):
            assert torch.equal(a[key], b[key]), key
    assert torch.equal(
        load_tensors(full / "model.safetensors")["encoder.1.0.weight"],
        load_tensors(part / "model.safetensors")["encoder.1.0.weight"],
    )
    rows_a = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows_b] == [1, 2]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra["train_elbo"] == rb["train_elbo"] and ra["val_elbo"] == rb["val_elbo"]


def test_resume_checks_settings_and_may_extend_epochs(tmp_path, capsys):
    code, run = _train(tmp_path, "--set", "train.final_eval_n=0")
    assert code == 0
    capsys.readouterr()
    # a setting that changes the maths is refused, naming it
    code = main(["train", "--out", str(run), "--resume", "--lr", "0.01"])
    err = capsys.readouterr().err
    assert code == 2 and "train.lr" in err and len(err.strip().splitlines()) == 1
    # more epochs is fine, and the other settings come from the run itself
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    saved = json.loads((run / "config.json").read_text())["run"]
    assert saved["train"]["epochs"] == 2 and saved["model"]["hidden"] == [32]


def test_resume_without_a_checkpoint_starts_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    code = main(["train", "--out", str(run), "--resume", "--epochs", "1", *TINY])
    assert code == 0
    assert (run / "checkpoint.safetensors").exists()


def test_overwrite_with_a_bad_setting_keeps_the_old_run(tmp_path, capsys):
    _, run = _train(tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, _ = _train(tmp_path, "--overwrite", "--dataset", "missing.npy")
    assert code == 2
    assert "missing.npy" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_full_mnist_train_then_evaluate_json(tmp_path, capsys, shared_mnist):
    run = tmp_path / "mnist"
    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            str(shared_mnist),
            "--out",
            str(run),
            "--epochs",
            "1",
            "--hidden",
            "64",
            "--latent-dim",
            "8",
            "--batch-size",
            "256",
            "--quiet",
            "--set",
            "train.final_eval_n=0",
        ]
    )
    assert code == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "100", "--n", "300", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["dataset"], r["split"], r["n"], r["k"]) == ("mnist", "test", 300, 100)
    assert r["binarization"].startswith("dynamic (train), fixed seed 0")
    assert r["log_likelihood"] <= 0
    assert r["bits_per_dim"] == pytest.approx(r["nll"] / (784 * math.log(2)))
    # the importance-sampled NLL is at most −ELBO, up to the estimates' noise
    assert r["nll"] <= -r["elbo"] + 3 * r["elbo_stderr"]
    assert r["gap"] > 0


def test_ctrl_c_after_the_last_step_of_an_epoch_resumes(tmp_path, capsys, monkeypatch):
    import os
    import signal

    from vaelab.training import trainer as trainer_mod

    common = [*TINY, "--epochs", "2", "--set", "train.final_eval_n=0"]
    full = tmp_path / "full"
    assert main(["train", "--out", str(full), *common]) == 0
    original = trainer_mod.Trainer._train_step
    calls = {"n": 0}

    def interrupted_at_32(self, x, beta):  # 32 steps per epoch: Ctrl-C during the last one
        calls["n"] += 1
        if calls["n"] == 32:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, x, beta)

    part = tmp_path / "part"
    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", interrupted_at_32)
    assert main(["train", "--out", str(part), *common]) == 130
    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", original)
    assert main(["train", "--out", str(part), "--resume", *common]) == 0
    a = load_tensors(full / "checkpoint.safetensors")
    b = load_tensors(part / "checkpoint.safetensors")
    for key in a:
        if key.startswith("model/"):
            assert torch.equal(a[key], b[key]), key


def test_resume_refuses_new_epochs_for_a_cosine_schedule(tmp_path, capsys):
    code, run = _train(tmp_path, "--schedule", "cosine")
    assert code == 0
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3"]) == 2
    assert "cosine schedule" in capsys.readouterr().err


def test_own_8_bit_images_are_dequantized_for_a_gaussian(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    np.save(tmp_path / "img.npy", rng.integers(0, 256, (300, 1, 8, 8), dtype=np.uint8))
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            str(tmp_path / "img.npy"),
            "--likelihood",
            "gaussian",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--hidden",
            "16",
            "--latent-dim",
            "2",
            "--quiet",
            "--set",
            "train.final_eval_k=5",
        ]
    )
    assert code == 0
    report = json.loads((out / "eval_test.json").read_text())
    assert report["dequantized"] is True
    assert report["bits_per_dim"] == pytest.approx(report["nll"] / (64 * math.log(2)) + 8)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--batch-size", "0"]) == 2
    assert "batch_size must be an integer >= 1, got 0" in capsys.readouterr().err
