"""Image folders: PNG/JPEG/BMP read as uint8 (N, C, H, W) with folder labels, converted and
resized by stated rules, and every bad folder or file answered with one DataError line."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from vaelab.data.images import read_image_folder
from vaelab.errors import DataError, InvalidArgumentError

RNG = np.random.default_rng(0)


def _save(path: Path, arr: np.ndarray | Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
    img.save(path, **kw)
    return path


def _text_file(path: Path) -> Path:
    path.write_text("1,2\n")
    return path


def _grey(h=8, w=8) -> np.ndarray:
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def _rgb(h=8, w=8) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _error(path: Path, **kw) -> str:
    """The DataError message of reading ``path``: one line that names a path."""
    with pytest.raises(DataError) as e:
        read_image_folder(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------- values read


def test_class_folders_values_labels_order_ids(tmp_path):
    cats = [_grey() for _ in range(3)]
    dog = _grey()
    for i, a in enumerate(cats):
        _save(tmp_path / "cat" / f"{i}.png", a)
    _save(tmp_path / "dog" / "sub" / "deep.PNG", dog)  # deeper: still a dog; suffix any case
    r = read_image_folder(tmp_path)
    assert r.values.shape == (4, 1, 8, 8) and r.values.dtype == np.uint8
    assert r.values.flags.c_contiguous
    for i, a in enumerate(cats):
        np.testing.assert_array_equal(r.values[i, 0], a)
    np.testing.assert_array_equal(r.values[3, 0], dog)
    assert r.labels.dtype == np.int64 and r.labels.tolist() == [0, 0, 0, 1]
    assert r.ids.tolist() == ["cat/0.png", "cat/1.png", "cat/2.png", "dog/sub/deep.PNG"]
    assert r.notices == [] and r.label_name == "folder" and r.columns is None
    d = json.loads(json.dumps(r.describe()))
    assert d["kind"] == "images" and d["classes"] == ["cat", "dog"]
    assert d["image_size"] == [8, 8] and d["channels"] == 1 and d["channel_order"] == "L"
    assert d["counts"]["per_class"] == [3, 1] and d["counts"]["images"] == 4
    assert d["shape"] == [4, 1, 8, 8] and d["resample"] == "lanczos"


def test_flat_folder_has_no_labels_and_sorted_order(tmp_path):
    arrays = {name: _grey() for name in ["b.png", "a.bmp", "C.png", "a0.png"]}
    for name, a in arrays.items():
        _save(tmp_path / name, a)
    r = read_image_folder(tmp_path)
    assert r.labels is None and r.label_name is None
    assert r.ids.tolist() == ["C.png", "a.bmp", "a0.png", "b.png"]  # by code point
    for i, name in enumerate(r.ids):
        np.testing.assert_array_equal(r.values[i, 0], arrays[name])
    assert r.describe()["classes"] is None


def test_other_and_hidden_files_ignored_with_a_count(tmp_path):
    _save(tmp_path / "a" / "x.png", _grey())
    (tmp_path / "a" / "notes.txt").write_text("hello")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    _save(tmp_path / ".ipynb_checkpoints" / "x.png", _grey())  # hidden folder: not a class
    (tmp_path / "empty").mkdir()
    r = read_image_folder(tmp_path)
    assert len(r) == 1 and r.describe()["classes"] == ["a"]
    assert "ignored 2 files (not PNG/JPEG/BMP)" in r.notices
    assert "folders without images are not classes: 'empty'" in r.notices


def test_any_colour_makes_rgb_and_grey_is_replicated(tmp_path):
    g, c = _grey(), _rgb()
    _save(tmp_path / "g.png", g)
    _save(tmp_path / "c.png", c)
    r = read_image_folder(tmp_path)
    assert r.values.shape == (2, 3, 8, 8) and r.describe()["channel_order"] == "RGB"
    np.testing.assert_array_equal(r.values[0], c.transpose(2, 0, 1))  # c.png sorts first
    np.testing.assert_array_equal(r.values[1], np.stack([g, g, g]))
    assert "converted 1 grey image to RGB (others are colour)" in r.notices


def test_channels_one_makes_colour_grey_like_pillow(tmp_path):
    c = _rgb()
    _save(tmp_path / "c.png", c)
    r = read_image_folder(tmp_path, channels=1)
    expected = np.asarray(Image.fromarray(c).convert("L"))
    np.testing.assert_array_equal(r.values[0, 0], expected)
    assert r.notices == ["converted 1 colour image to grey (the run's images are grey)"]
    # and a grey folder read for a colour run: no "others" to blame
    g = tmp_path.parent / f"{tmp_path.name}-grey"
    _save(g / "g.png", _grey())
    assert read_image_folder(g, channels=3).notices == [
        "converted 1 grey image to RGB (the run's images are colour)"
    ]


def test_alpha_dropped_colour_kept(tmp_path):
    rgba = RNG.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    la = RNG.integers(0, 256, (8, 8, 2), dtype=np.uint8)
    _save(tmp_path / "rgba" / "x.png", rgba)
    _save(tmp_path / "la" / "y.png", Image.fromarray(la, mode="LA"))
    r = read_image_folder(tmp_path)
    # la/ sorts first: its grey channel, replicated into RGB; then rgba's colour channels.
    np.testing.assert_array_equal(r.values[0], np.stack([la[..., 0]] * 3))
    np.testing.assert_array_equal(r.values[1], rgba[..., :3].transpose(2, 0, 1))
    assert "dropped the alpha channel (transparency) of 2 images" in r.notices


def test_palette_png_read_through_its_palette(tmp_path):
    # A palette image's pixels are indices; reading them as values is the classic mistake.
    idx = RNG.integers(0, 3, (6, 5), dtype=np.uint8)
    colours = np.array([[200, 10, 30], [0, 250, 0], [7, 7, 240]], dtype=np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette(colours.ravel().tolist())
    _save(tmp_path / "c" / "p.png", img)
    grey_img = Image.fromarray(idx, mode="P")
    grey_img.putpalette([0, 0, 0, 128, 128, 128, 255, 255, 255])
    _save(tmp_path / "g" / "p.png", grey_img)
    r = read_image_folder(tmp_path)
    np.testing.assert_array_equal(r.values[0], colours[idx].transpose(2, 0, 1))
    np.testing.assert_array_equal(r.values[1, 0], np.array([0, 128, 255])[idx])
    # A folder of grey-palette images alone is grey.
    only = read_image_folder(tmp_path / "g")
    assert only.values.shape == (1, 1, 6, 5) and only.notices == []


def test_palette_with_transparency(tmp_path):
    img = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    img.putpalette([255, 0, 0, 0, 0, 255])
    _save(tmp_path / "t.png", img, transparency=0)
    r = read_image_folder(tmp_path)
    np.testing.assert_array_equal(r.values[0, :, 0], [[255, 0], [0, 0], [0, 255]])
    assert "dropped the alpha channel (transparency) of 1 image" in r.notices


def test_sixteen_bit_png_mixed_with_eight_bit_scaled_not_clipped(tmp_path):
    v16 = np.array([[0, 257, 4096, 32768, 65535]], dtype=np.uint16)
    _save(tmp_path / "deep.png", v16)
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    _save(tmp_path / "plain.png", np.array([[0, 1, 16, 128, 255]], dtype=np.uint8))
    r = read_image_folder(tmp_path)
    # round(v * 255 / 65535): 257 -> 1, 4096 -> 16, 32768 -> 128 (Pillow's convert gives 255)
    np.testing.assert_array_equal(r.values[0, 0], [[0, 1, 16, 128, 255]])
    np.testing.assert_array_equal(r.values[0], r.values[1])
    assert r.values.dtype == np.uint8 and r.values.shape == (2, 1, 1, 5)
    assert r.notices == [
        "scaled 1 16-bit greyscale image to 8 bits (round(v * 255 / 65535)), the scale of the "
        "folder's other images"
    ]
    assert r.describe()["counts"]["sixteen_bit"] == 1 and r.details["stored_dtype"] == "uint8"


def test_a_folder_of_sixteen_bit_grey_keeps_every_level(tmp_path):
    # 12-bit data in 16-bit files (microscopes, X-ray detectors): 4,096 levels, not 16
    rng = np.random.default_rng(3)
    a = rng.integers(0, 4096, (6, 5)).astype(np.uint16)
    b = np.array([[0, 1, 2, 4095, 65535]], dtype=np.uint16).repeat(6, 0)
    _save(tmp_path / "a.png", a)
    _save(tmp_path / "b.png", b)
    r = read_image_folder(tmp_path)
    assert r.values.dtype == np.float32 and r.values.shape == (2, 1, 6, 5)
    np.testing.assert_array_equal(r.values[0, 0], a)  # exactly the stored values
    np.testing.assert_array_equal(r.values[1, 0], b)
    assert r.details["stored_dtype"] == "uint16"
    assert r.notices == ["read 16-bit greyscale images at 16 bits (levels 0..65535)"]
    # resized in floats, back on whole levels within 0..65535 (Lanczos overshoots edges)
    _save(tmp_path / "c.png", np.full((12, 10), 65535, np.uint16))
    _save(tmp_path / "d.png", np.eye(12, 10, dtype=np.uint16) * 65535)
    r = read_image_folder(tmp_path, image_size=(6, 5))
    assert np.array_equal(r.values, np.rint(r.values)) and r.values.max() <= 65535
    assert r.values.min() >= 0
    np.testing.assert_array_equal(r.values[2], 65535)  # flat stays flat
    # new images for a 16-bit run: an 8-bit file is put on the 16-bit scale, v * 257
    new = tmp_path.parent / f"{tmp_path.name}-new"
    _save(new / "e.png", np.array([[0, 1, 255]], dtype=np.uint8))
    got = read_image_folder(new, image_size=(1, 3), channels=1, bits=16)
    np.testing.assert_array_equal(got.values[0, 0], [[0, 257, 65535]])
    assert got.notices == [
        "scaled 1 8-bit image to 16 bits (v * 257), the scale of this run's images"
    ]
    # and 16-bit files for an 8-bit run, as in a mixed folder
    eight = read_image_folder(tmp_path, image_size=(6, 5), channels=1, bits=8)
    assert eight.values.dtype == np.uint8 and eight.values[1, 0, 0, 4] == 255
    with pytest.raises(InvalidArgumentError, match="channels must be 1"):
        read_image_folder(tmp_path, channels=3, bits=16)


def test_bilevel_and_bmp_and_jpeg(tmp_path):
    bits = RNG.integers(0, 2, (8, 8)).astype(bool)
    _save(tmp_path / "a.png", Image.fromarray(bits))  # mode "1"
    b = _grey()
    _save(tmp_path / "b.bmp", b)
    j = _grey()
    _save(tmp_path / "c.jpeg", j, quality=100)
    r = read_image_folder(tmp_path)
    np.testing.assert_array_equal(r.values[0, 0], bits * 255)
    np.testing.assert_array_equal(r.values[1, 0], b)
    assert np.abs(r.values[2, 0].astype(int) - j).max() <= 8  # lossy, but close
    # A CMYK JPEG (print workflows) is colour: converted to RGB by Pillow.
    _save(tmp_path / "d.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)), quality=100)
    r = read_image_folder(tmp_path)
    assert r.values.shape == (4, 3, 8, 8)
    assert np.abs(r.values[3, :, 0, 0].astype(int) - [255, 0, 0]).max() <= 8


def test_most_common_size_wins_and_others_are_resized_with_lanczos(tmp_path):
    small = [_grey(4, 6) for _ in range(2)]
    big = _rgb(8, 12)
    for i, a in enumerate(small):
        _save(tmp_path / f"s{i}.png", a)
    _save(tmp_path / "t.png", big)
    r = read_image_folder(tmp_path)
    assert r.values.shape == (3, 3, 4, 6)  # (height, width) of the two small ones
    expected = np.asarray(Image.fromarray(big).resize((6, 4), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(r.values[2], expected.transpose(2, 0, 1))
    assert any(n.startswith("resized 1 of 3 images to 4×6 (height×width") for n in r.notices)
    # An explicit size, as (height, width) or one int for a square.
    assert read_image_folder(tmp_path, image_size=(2, 3)).values.shape == (3, 3, 2, 3)
    assert read_image_folder(tmp_path, image_size=5).values.shape == (3, 3, 5, 5)
    assert read_image_folder(tmp_path, image_size=[4, 6]).describe()["counts"]["resized"] == 1


def test_size_tie_goes_to_the_first_file(tmp_path):
    _save(tmp_path / "a.png", _grey(3, 5))
    _save(tmp_path / "b.png", _grey(7, 2))
    assert read_image_folder(tmp_path).describe()["image_size"] == [3, 5]


def test_jpeg_exif_orientation_applied(tmp_path):
    stored = _rgb(4, 6)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    _save(tmp_path / "p.jpg", stored, exif=exif, quality=100)
    r = read_image_folder(tmp_path)
    assert r.values.shape == (1, 3, 6, 4)  # upright: 6 high, 4 wide
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "p.jpg")))
    np.testing.assert_array_equal(r.values[0], upright.transpose(2, 0, 1))
    assert "turned 1 JPEG image upright (EXIF orientation)" in r.notices


def test_large_jpeg_downscaled(tmp_path):
    # The decoder's own downscaling (draft) then Lanczos: close to a full decode + Lanczos.
    y, x = np.mgrid[0:256, 0:256]
    smooth = ((x + y) // 2).astype(np.uint8)
    _save(tmp_path / "big.jpg", np.stack([smooth] * 3, axis=-1), quality=95)
    _save(tmp_path / "small.png", _rgb(16, 16))
    _save(tmp_path / "small2.png", _rgb(16, 16))
    r = read_image_folder(tmp_path)
    full = Image.open(tmp_path / "big.jpg").convert("RGB")
    ref = np.asarray(full.resize((16, 16), Image.Resampling.LANCZOS)).transpose(2, 0, 1)
    assert np.abs(r.values[0].astype(int) - ref).max() <= 6


def test_symlinked_class_folder_read_once(tmp_path):
    _save(tmp_path / "data" / "a" / "x.png", _grey())
    os.symlink(tmp_path / "data", tmp_path / "data" / "a" / "loop")  # a cycle
    r = read_image_folder(tmp_path / "data")
    assert r.ids.tolist() == ["a/x.png"]


# --------------------------------------------------------------------------- bad inputs


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def _file(t: Path, rel: str, data: bytes) -> Path:
    path = t / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# name -> builder(tmp_path) -> (folder to read, path the error must name, needles)
BAD = {
    "corrupt image": lambda t: (
        t,
        _file(t, "a/bad.png", RNG.integers(0, 256, 300, dtype=np.uint8).tobytes()),
        ["not a readable PNG, JPEG or BMP image"],
    ),
    "truncated png": lambda t: (
        t,
        _file(t, "a.png", _png_bytes(_rgb(64, 64))[:400]),
        ["truncated or corrupt image"],
    ),
    "truncated jpeg": lambda t: (
        t,
        _file(t, "a.jpg", _jpeg_bytes(_rgb(64, 64))[:600]),
        ["truncated or corrupt image"],
    ),
    "zero-byte image": lambda t: (t, _file(t, "a.png", b""), ["not a readable"]),
    "a GIF named .png": lambda t: (
        t,
        _save(t / "a.png", _grey(), format="GIF"),
        ["not a readable PNG, JPEG or BMP image"],
    ),
    "empty folder": lambda t: (t, t, ["empty folder (no images)"]),
    "folder with no images": lambda t: (
        t,
        (t / "readme.txt").write_text("x") and t,
        ["no PNG, JPEG or BMP images (ignored 1 other file)"],
    ),
    "only hidden images": lambda t: (
        t,
        _save(t / ".x.png", _grey()).parent,
        ["no PNG, JPEG or BMP images"],
    ),
    "images in the folder and in class folders": lambda t: (
        t,
        _save(t / "loose.png", _grey()).parent if _save(t / "cat" / "x.png", _grey()) else t,
        ["1 image directly in the folder (e.g. 'loose.png')", "1 in class folders ('cat')"],
    ),
    "a file, not a folder (nor an image)": lambda t: (
        _text_file(t / "x.txt"),
        t / "x.txt",
        ["not a folder"],
    ),
    "folder not found": lambda t: (t / "nope", t / "nope", ["folder not found"]),
    "dangling symlink": lambda t: (
        t,
        os.symlink(t / "gone.png", t / "a.png") or t / "a.png",
        ["image file not found"],
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_folder_is_one_line_naming_the_file(tmp_path, case):
    folder, named, needles = BAD[case](tmp_path)
    msg = _error(folder)
    assert msg.startswith(f"{named}: "), msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_image_by_mode(tmp_path):
    path = _save(tmp_path / "a.png", _grey())
    path.chmod(0)
    assert _error(tmp_path).startswith(f"{path}: cannot read")


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"image_size": 0}, "image_size must be positive"),
        ({"image_size": (4, -1)}, "image_size must be positive"),
        ({"image_size": "28"}, "image_size must be an int or"),
        ({"image_size": (1, 2, 3)}, "image_size must be an int or"),
        ({"image_size": True}, "image_size must be an int or"),
        ({"channels": 2}, "channels must be 1, 3 or None"),
        ({"channels": 4}, "channels must be 1, 3 or None"),
    ],
)
def test_bad_arguments(tmp_path, kw, match):
    _save(tmp_path / "a.png", _grey())
    with pytest.raises(InvalidArgumentError, match=match):
        read_image_folder(tmp_path, **kw)


def test_one_image_file_is_read_alone(tmp_path):
    pixels = _grey(4, 6)
    _save(tmp_path / "a.png", pixels)
    _save(tmp_path / "b.png", _grey(4, 6))  # a neighbour, not read
    r = read_image_folder(tmp_path / "a.png")
    assert r.values.shape == (1, 1, 4, 6) and r.ids.tolist() == ["a.png"] and r.labels is None
    np.testing.assert_array_equal(r.values[0, 0], pixels)
