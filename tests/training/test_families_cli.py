"""One CLI run per model family: train one epoch, then every command that reads the run.

The old weights check refused some architectures' own files, so a run could be trained but
never evaluated, sampled or resumed (issue 11); ``--hidden 128 --latent-dim 8`` was one.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main
from vaelab.data import load_split

FAMILIES = {
    "mlp": ["--hidden", "128", "--latent-dim", "8"],
    "conv": ["--arch", "conv", "--hidden", "64", "--latent-dim", "8",
             "--set", "model.conv_channels=[8,16]"],
    "two-layer": ["--set", "model_class=HierarchicalVAE",
                  "--set", "model.latent_dims=[8,4]", "--set", "model.hidden=[64]",
                  "--set", "model.hidden2=[32]"],
}  # fmt: skip


@pytest.fixture(scope="module")
def small_images(tmp_path_factory):
    """600 MNIST digits as uint8 (N, 28, 28): a real image set, small enough for one epoch."""
    path = tmp_path_factory.mktemp("data") / "digits.npy"
    np.save(path, load_split("mnist-mini", "train").images[:600, 0].numpy())
    return path


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_trained_run_of_every_family_is_evaluated_sampled_and_resumed(
    tmp_path, small_images, family, capsys
):
    run = tmp_path / "run"
    common = ["--dataset", str(small_images), "--batch-size", "100", "--quiet"]
    args = ["train", "--out", str(run), "--epochs", "1", *common, *FAMILIES[family]]
    assert main([*args, "--set", "train.final_eval_k=10"]) == 0
    assert main(["evaluate", str(run), "--k", "10", "--json"]) == 0
    assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size[0] > 28
    assert main(["reconstruct", str(run), "-n", "4", "--out", str(tmp_path / "r.png")]) == 0
    assert main(["interpolate", str(run), "--pairs", "2", "--out", str(tmp_path / "i.png")]) == 0
    resumed = ["train", "--out", str(run), "--resume", "--epochs", "2", *common, *FAMILIES[family]]
    assert main(resumed) == 0
    err = capsys.readouterr().err
    assert "resuming" in err and "epoch 2/2" in err
