"""Registered datasets: fixed splits of verified files, the embedded slice, status."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
import struct

import numpy as np
import pytest
import torch

from vaelab.data import (
    DATASETS,
    DatasetInfo,
    RemoteFile,
    data_home,
    dataset_status,
    load_split,
    read_idx,
)
from vaelab.data import registry as ds
from vaelab.errors import DataError, InvalidArgumentError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def idx_u8(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


# --------------------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def mnist_splits(shared_mnist):
    return {s: load_split("mnist", s, data_dir=shared_mnist, download=False) for s in ds.SPLITS}


def test_mnist_split_shapes(mnist_splits):
    sizes = {s: len(split) for s, split in mnist_splits.items()}
    assert sizes == {"train": 55000, "valid": 5000, "test": 10000}
    for name, split in mnist_splits.items():
        assert split.images.dtype == torch.uint8
        assert split.images.shape[1:] == (1, 28, 28)
        assert split.labels.dtype == torch.int64 and split.labels.shape == (len(split),)
        assert set(split.labels.unique().tolist()) == set(range(10))
        assert split.name == "mnist" and split.split == name and split.info is DATASETS["mnist"]


def test_mnist_train_and_valid_partition_official_training_set(mnist_splits, shared_mnist):
    official = read_idx(shared_mnist / "train-images-idx3-ubyte.gz")
    both = torch.cat([mnist_splits["train"].images, mnist_splits["valid"].images])
    assert torch.equal(both[:, 0], torch.from_numpy(official))
    labels = read_idx(shared_mnist / "train-labels-idx1-ubyte.gz")
    assert mnist_splits["train"].labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert torch.equal(
        torch.cat([mnist_splits["train"].labels, mnist_splits["valid"].labels]),
        torch.from_numpy(labels.astype(np.int64)),
    )


def test_mnist_status_verified(shared_mnist):
    rows = {r["name"]: r for r in dataset_status(shared_mnist, verify=True)}
    assert rows["mnist"]["present"] and rows["mnist"]["verified"] is True
    assert rows["mnist"]["path"] == str(shared_mnist)
    # The same file names exist for Fashion-MNIST and KMNIST, but verification tells them apart
    # and names what the files really are.
    assert rows["fashion-mnist"]["verified"] is False
    assert "it is the mnist file train-images-idx3-ubyte" in rows["fashion-mnist"]["error"]
    assert rows["mnist-mini"]["verified"] is True and rows["mnist-mini"]["embedded"]


def test_registry_checksums_match_shared_copy(shared_mnist):
    for role, rf in DATASETS["mnist"].files.items():
        content = gzip.decompress((shared_mnist / rf.filename).read_bytes())
        assert sha(content) == rf.sha256, role


@pytest.fixture
def test_files(shared_mnist, tmp_path):
    """A private copy of the MNIST test files, free to damage."""
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_mnist / name, tmp_path / name)
    return tmp_path


def test_decompressed_files_accepted(test_files):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        gz = test_files / f"{name}.gz"
        (test_files / name).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    split = load_split("mnist", "test", data_dir=test_files, download=False)
    assert len(split) == 10000


def test_dataset_subfolder_of_data_dir(test_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(test_files, root / "mnist")
    assert len(load_split("mnist", "test", data_dir=root, download=False)) == 10000


def test_default_location_is_data_home(test_files, monkeypatch, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("VAELAB_DATA", str(home))
    assert data_home() == home
    shutil.copytree(test_files, home / "mnist")
    assert len(load_split("mnist", "test", download=False)) == 10000


def test_data_home_default(monkeypatch, tmp_path):
    monkeypatch.delenv("VAELAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_home() == tmp_path / ".cache" / "vaelab"


def test_checksum_mismatch_names_file_and_hashes(test_files):
    path = test_files / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[100] = (content[100] + 1) % 10  # still a valid label file, one label changed
    path.write_bytes(gzip.compress(bytes(content)))
    expected = DATASETS["mnist"].files["test_labels"].sha256
    with pytest.raises(DataError) as info:
        load_split("mnist", "test", data_dir=test_files, download=False)
    msg = str(info.value)
    assert msg.startswith(f"{path}: checksum mismatch")
    assert expected in msg and sha(bytes(content)) in msg
    assert "\n" not in msg


def test_truncated_gz_names_file(test_files):
    path = test_files / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50_000])
    with pytest.raises(DataError, match=f"{path}: corrupt or truncated gzip"):
        load_split("mnist", "test", data_dir=test_files, download=False)


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DataError) as info:
        load_split("mnist", "test", data_dir=tmp_path, download=False)
    msg = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path) in msg


def test_bad_names():
    with pytest.raises(InvalidArgumentError, match="unknown dataset 'nmist'.*mnist"):
        load_split("nmist", "train")
    with pytest.raises(InvalidArgumentError, match="split must be one of train, valid, test"):
        load_split("mnist-mini", "validation")


# --------------------------------------------------------------------------- mnist-mini


def test_mnist_mini_offline_sizes():
    # The autouse fixture makes every download fail: this must not need one.
    splits = {s: load_split("mnist-mini", s) for s in ds.SPLITS}
    assert {s: len(v) for s, v in splits.items()} == {"train": 8000, "valid": 1000, "test": 1000}
    for split in splits.values():
        assert split.images.shape[1:] == (1, 28, 28) and split.images.dtype == torch.uint8
        assert split.labels.min() >= 0 and split.labels.max() <= 9
    # It ignores data_dir and download: it lives in the package.
    assert len(load_split("mnist-mini", "test", data_dir="/nonexistent", download=False)) == 1000


def test_mnist_mini_is_exact_slice_of_mnist(mnist_splits):
    mini_train = load_split("mnist-mini", "train")
    mini_valid = load_split("mnist-mini", "valid")
    mini_test = load_split("mnist-mini", "test")
    assert torch.equal(mini_train.images, mnist_splits["train"].images[:8000])
    assert torch.equal(mini_valid.images, mnist_splits["train"].images[8000:9000])
    assert torch.equal(mini_test.images, mnist_splits["test"].images[:1000])
    assert torch.equal(mini_valid.labels, mnist_splits["train"].labels[8000:9000])
    assert torch.equal(mini_test.labels, mnist_splits["test"].labels[:1000])


def test_embedded_files_small_and_listed():
    files = sorted(p.name for p in ds.EMBEDDED_DIR.iterdir())
    names = sorted(rf.filename for rf in DATASETS["mnist-mini"].files.values())
    assert files == sorted([*names, "README.md"])
    total = sum((ds.EMBEDDED_DIR / n).stat().st_size for n in names)
    assert 1_000_000 <= total <= 2_000_000
    readme = (ds.EMBEDDED_DIR / "README.md").read_text()
    assert "CC BY-SA 3.0" in readme and "LeCun" in readme


# --------------------------------------------------------------------------- a toy registry


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Register a tiny dataset whose files this test writes, and return a writer."""

    def register(train_images, train_labels, test_images, test_labels, *, gz_only=False):
        files = {}
        for role, arr in zip(
            ds.ROLES, (train_images, train_labels, test_images, test_labels), strict=True
        ):
            name = f"toy-{role}.gz"
            raw = idx_u8(arr)
            gz = gzip.compress(raw, mtime=0)
            (tmp_path / name).write_bytes(gz)
            files[role] = RemoteFile(name, None if gz_only else sha(raw), sha(gz))
        info = DatasetInfo(
            name="toy",
            description="toy",
            mirrors=(),
            files=files,
            licence="none",
            homepage="",
            image_shape=(1, 4, 4),
            n_train=6,
            n_valid=2,
            n_test=3,
        )
        monkeypatch.setitem(DATASETS, "toy", info)
        return info

    return register


def _u8(*shape, hi=10):
    return np.random.default_rng(0).integers(0, hi, size=shape, dtype=np.uint8)


def test_toy_splits(toy, tmp_path):
    train, labels = _u8(8, 4, 4, hi=255), _u8(8)
    toy(train, labels, _u8(3, 4, 4), _u8(3))
    s = load_split("toy", "valid", data_dir=tmp_path, download=False)
    assert s.images.shape == (2, 1, 4, 4)
    assert torch.equal(s.images[:, 0], torch.from_numpy(train[6:]))
    assert torch.equal(s.labels, torch.from_numpy(labels[6:].astype(np.int64)))


def test_toy_count_disagreement(toy, tmp_path):
    toy(_u8(8, 4, 4), _u8(7), _u8(3, 4, 4), _u8(3))
    with pytest.raises(DataError, match="toy-train_labels.gz: expected 8 uint8 labels"):
        load_split("toy", "train", data_dir=tmp_path, download=False)


def test_toy_wrong_image_dims(toy, tmp_path):
    toy(_u8(8, 5, 4), _u8(8), _u8(3, 4, 4), _u8(3))
    with pytest.raises(DataError, match=r"expected 8 uint8 images of 4x4, got uint8 of shape"):
        load_split("toy", "train", data_dir=tmp_path, download=False)


def test_toy_label_out_of_range(toy, tmp_path):
    labels = _u8(8)
    labels[3] = 10
    toy(_u8(8, 4, 4), labels, _u8(3, 4, 4), _u8(3))
    with pytest.raises(DataError, match="label 10 out of range for 10 classes"):
        load_split("toy", "train", data_dir=tmp_path, download=False)


def test_gz_only_checksum(toy, tmp_path):
    info = toy(_u8(8, 4, 4), _u8(8), _u8(3, 4, 4), _u8(3), gz_only=True)
    assert len(load_split("toy", "test", data_dir=tmp_path, download=False)) == 3
    path = tmp_path / info.files["test_labels"].filename
    # Re-compressed (different header bytes, same content): cannot be verified.
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), mtime=12345))
    with pytest.raises(DataError, match="cannot verify toy toy-test_labels.gz: its sha256 is"):
        load_split("toy", "test", data_dir=tmp_path, download=False)
    # Decompressed: refused with the explanation that only the canonical .gz has a checksum.
    raw = gzip.decompress(path.read_bytes())
    path.unlink()
    (tmp_path / "toy-test_labels").write_bytes(raw)
    with pytest.raises(DataError, match="only the canonical toy-test_labels.gz has a published"):
        load_split("toy", "test", data_dir=tmp_path, download=False)


def test_registry_is_complete():
    assert {"mnist", "fashion-mnist", "kmnist", "mnist-mini"} <= set(DATASETS)
    for info in DATASETS.values():
        assert set(info.files) == set(ds.ROLES)
        assert info.embedded or info.mirrors
        for rf in info.files.values():
            assert rf.sha256 or rf.gz_sha256
            for h in (rf.sha256, rf.gz_sha256):
                assert h is None or (len(h) == 64 and int(h, 16) >= 0)
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.name = "x"


def test_status_without_files(tmp_path):
    rows = {r["name"]: r for r in dataset_status(tmp_path)}
    assert not rows["mnist"]["present"] and rows["mnist"]["verified"] is None
    assert rows["mnist"]["missing"] == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert rows["mnist-mini"]["present"]
    for r in rows.values():
        assert {"name", "description", "embedded", "present", "path"} <= set(r)
        assert {"n_train", "n_valid", "n_test"} <= set(r)


def test_a_source_reads_each_file_once_for_train_and_valid(monkeypatch):
    from vaelab.data import builtin
    from vaelab.data.sources import BuiltinSource

    reads = []
    verified = builtin.load_verified
    monkeypatch.setattr(builtin, "load_verified", lambda *a: reads.append(a[1]) or verified(*a))
    source = BuiltinSource("mnist-mini")
    train, valid = source.split("train"), source.split("valid")
    assert sorted(reads) == ["train_images", "train_labels"]
    for split, got in (("train", train), ("valid", valid)):
        alone = load_split("mnist-mini", split)
        assert torch.equal(got.images, alone.images) and torch.equal(got.labels, alone.labels)
