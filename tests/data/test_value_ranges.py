"""Integer data and their value range: what the model sees is what the user meant.

Found by QA on a user's own files: 0/1 stored as uint8 is read as levels 0..255 (the model
then sees 0 and 1/255), 0/255 images were refused by --binarize none, and a 16-bit range
given for a folder whose 16-bit images are read as 8 bits squeezed them to near black.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.cli import main
from vaelab.config import DataConfig
from vaelab.data.preprocess import Preprocessing
from vaelab.errors import DataError

QUICK = ["--hidden", "8", "--latent-dim", "2", "--batch-size", "16", "--epochs", "1",
         "--seed", "7", "--device", "cpu", "--quiet", "--no-report",
         "--set", "train.final_eval_n=0", "--set", "train.threads=1"]  # fmt: skip


def _fit(x: torch.Tensor, kind="images", value_range=None, dtype=None):
    notices: list[str] = []
    cfg = DataConfig(dataset="d", value_range=value_range)
    prep = Preprocessing.fit(cfg, kind, "bernoulli", x, dtype, notices)
    return prep, notices


def test_uint8_levels_that_use_a_sliver_of_the_range_get_a_notice():
    few = torch.randint(0, 17, (30, 4, 4), dtype=torch.uint8)  # 0..16 stored as uint8
    prep, notices = _fit(few)
    assert prep.value_range == [0, 255]  # still the dtype's range: the user decides
    assert len(notices) == 1 and "reach only 16" in notices[0]
    assert "--value-range 0,16" in notices[0]
    # a dark but ordinary photo set (its brightest pixel 200) and the user's own range: quiet
    photos = torch.randint(0, 201, (30, 4, 4), dtype=torch.uint8)
    assert _fit(photos)[1] == []
    assert _fit(few, value_range=[0, 16])[1] == []


@pytest.mark.parametrize(
    ("kind", "dtype", "value_range", "says"),
    [
        ("images", None, [0, 65535], "16-bit greyscale images in a folder with 8-bit"),
        ("table", "uint8", [-1, 255], "the values are uint8, 0..255, so --value-range -1,255"),
        ("images", "uint16", [0, 70000], "the values are uint16, 0..65535"),
    ],
)
def test_a_range_wider_than_the_values_dtype_is_refused(kind, dtype, value_range, says):
    x = torch.randint(0, 256, (20, 3, 3), dtype=torch.uint8)
    if dtype == "uint16":
        x = x.to(torch.int32) * 200
    with pytest.raises(DataError, match="cannot be their scale") as e:
        _fit(x, kind, value_range, dtype)
    assert says in str(e.value)


def test_ranges_within_the_dtype_are_taken():
    x = torch.randint(0, 101, (20, 3, 3), dtype=torch.uint8)
    assert _fit(x, value_range=[0, 255])[0].value_range == [0, 255]
    assert _fit(x, value_range=[0, 100])[0].top == 100
    wide = torch.randint(0, 4096, (20, 3, 3), dtype=torch.int32)  # 12-bit levels in uint16
    prep, notices = _fit(wide, value_range=[0, 65535], dtype="uint16")
    assert prep.top == 65535 and notices == []


def _train(tmp_path, arr: np.ndarray, *extra: str) -> int:
    path = tmp_path / "x.npy"
    np.save(path, arr)
    return main(["train", "--out", str(tmp_path / "run"), "--dataset", str(path), *extra, *QUICK])


def _binary(seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((40, 6, 6)) < 0.5


def test_binarize_none_takes_0_255_images_as_binary(tmp_path):
    assert _train(tmp_path, _binary().astype(np.uint8) * 255, "--binarize", "none") == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_binarize_none_refuses_0_1_read_as_levels_of_0_255_and_says_how(tmp_path, capsys):
    assert _train(tmp_path, _binary().astype(np.uint8), "--binarize", "none") == 2
    err = capsys.readouterr().err
    assert "has only 0 and 1, read as levels 0..255" in err and "--value-range 0,1" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    rc = _train(tmp_path, _binary().astype(np.uint8), "--binarize", "none", "--value-range", "0,1")
    assert rc == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_binarize_none_still_refuses_grey_pixels(tmp_path, capsys):
    grey = np.random.default_rng(1).integers(0, 256, (40, 6, 6)).astype(np.uint8)
    assert _train(tmp_path, grey, "--binarize", "none") == 2
    assert "has grey pixels (0..255)" in capsys.readouterr().err


def test_a_table_of_whole_numbers_is_continuous_unless_given_a_range_and_says_so():
    counts = torch.randint(0, 17, (50, 6)).to(torch.float32)  # digits' 0..16, read from text
    notices: list[str] = []
    prep = Preprocessing.fit(DataConfig(dataset="t"), "table", "gaussian", counts, None, notices)
    assert not prep.integer and prep.mean is not None  # standardized, a density
    assert len(notices) == 1 and "--value-range 0,16 to dequantize them" in notices[0]
    given = Preprocessing.fit(
        DataConfig(dataset="t", value_range=[0, 16]), "table", "gaussian", counts, None, []
    )
    assert given.integer and given.levels == 17  # dequantized levels
    floats: list[str] = []
    Preprocessing.fit(DataConfig(dataset="t"), "table", "gaussian", counts + 0.5, None, floats)
    assert floats == []
    # measurements given a range: scaled linearly, and the notice says it is not a level range
    ranged: list[str] = []
    cfg = DataConfig(dataset="t", value_range=[0, 2000])
    prep = Preprocessing.fit(cfg, "table", "gaussian", counts * 100.5, None, ranged)
    assert not prep.integer and prep.mean is None  # neither dequantized nor standardized
    assert len(ranged) == 1 and "maps them linearly onto [0, 1]" in ranged[0]
    # only 0 and 1 (yes/no answers, true/false columns): the Bernoulli likelihood is the fix
    answers: list[str] = []
    yes_no = (counts > 8).to(torch.float32)
    Preprocessing.fit(DataConfig(dataset="t"), "table", "gaussian", yes_no, None, answers)
    assert len(answers) == 1 and "yes/no answers, pass --likelihood bernoulli" in answers[0]
    assert "--value-range" not in answers[0]
    bernoulli: list[str] = []
    Preprocessing.fit(DataConfig(dataset="t"), "table", "bernoulli", yes_no, None, bernoulli)
    assert bernoulli == []


def test_a_folder_of_twelve_bit_images_in_sixteen_bit_files_keeps_its_levels(tmp_path, capsys):
    """Microscopes and X-ray detectors write 12-bit data in 16-bit PNG: 4,096 levels, which an
    8-bit reading cut to 16 (and --value-range 0,4095 was then refused as wider than uint8)."""
    from PIL import Image

    from vaelab.runs import load_run

    folder = tmp_path / "scans"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(40):
        pixels = rng.integers(0, 4096, (6, 6)).astype(np.uint16)
        pixels[0, 0] = 4095  # the top level is reached
        Image.fromarray(pixels).save(folder / f"{i}.png")
    args = ["train", "--dataset", str(folder), "--likelihood", "gaussian", *QUICK]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "pass --value-range 0,4095" in capsys.readouterr().err
    assert main([*args, "--value-range", "0,4095", "--out", str(tmp_path / "b")]) == 0
    prep = load_run(tmp_path / "b", device="cpu").data.prep
    assert prep.integer and prep.value_range == [0, 4095] and prep.levels == 4096
