"""The downloader: offline failure is one clear line, and nothing partial is ever kept."""

from __future__ import annotations

import dataclasses
import io
import shutil
import urllib.error
import urllib.request

import pytest

from vaelab.data import DATASETS, fetch, load_split
from vaelab.errors import DataError, InvalidArgumentError

MNIST = DATASETS["mnist"]
TEST_ROLES = ("test_images", "test_labels")


def test_offline_error_names_files_mirrors_and_folder(tmp_path):
    with pytest.raises(DataError) as info:
        load_split("mnist", "test", data_dir=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in msg
    for mirror in MNIST.mirrors:
        assert mirror in msg
    assert str(tmp_path) in msg
    assert "network disabled in tests" in msg
    assert "--data-dir" in msg
    assert list(tmp_path.iterdir()) == []  # no partial or temporary file left


def test_offline_default_folder_is_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "home"))
    with pytest.raises(DataError, match=str(tmp_path / "home" / "fashion-mnist")):
        load_split("fashion-mnist", "train")
    assert not (tmp_path / "home" / "fashion-mnist").exists()  # no empty folder left either


def test_unreachable_mirror_through_real_urlopen(real_urlopen, tmp_path):
    # A real connection attempt to a closed local port, with the real urlopen.
    info = dataclasses.replace(MNIST, mirrors=("http://127.0.0.1:9/",))
    with pytest.raises(DataError, match=r"http://127\.0\.0\.1:9/t10k-images-idx3-ubyte\.gz \("):
        fetch(info, tmp_path, roles=TEST_ROLES, timeout=5)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def file_mirror(shared_mnist, tmp_path_factory):
    """A file:// mirror holding copies of the shared (re-gzipped) MNIST test files."""
    root = tmp_path_factory.mktemp("mirror")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_mnist / name, root / name)
    return root


def test_download_from_file_mirror_after_dead_one(real_urlopen, monkeypatch, tmp_path, file_mirror):
    info = dataclasses.replace(
        MNIST, mirrors=((tmp_path / "dead").as_uri() + "/", file_mirror.as_uri() + "/")
    )
    monkeypatch.setitem(DATASETS, "mnist", info)
    dest = tmp_path / "data"
    split = load_split("mnist", "test", data_dir=dest)  # downloads, verifies, loads
    assert len(split) == 10000
    assert sorted(p.name for p in dest.iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    # Already there: nothing is fetched again, even with no mirror at all.
    fetch(dataclasses.replace(info, mirrors=()), dest, roles=TEST_ROLES)


def test_corrupt_mirror_file_is_not_kept(real_urlopen, tmp_path, file_mirror):
    bad = file_mirror / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-100])
    info = dataclasses.replace(MNIST, mirrors=(file_mirror.as_uri() + "/",))
    dest = tmp_path / "data"
    with pytest.raises(DataError) as e:
        fetch(info, dest, roles=("test_labels",))
    assert "corrupt or truncated gzip" in str(e.value)
    assert "t10k-labels-idx1-ubyte.gz" in str(e.value)
    assert not dest.exists()  # created for the download, removed again when it failed


def test_wrong_content_is_not_kept(real_urlopen, tmp_path, file_mirror):
    # A mirror serving the wrong (but well-formed) file for a name.
    shutil.copy(file_mirror / "t10k-labels-idx1-ubyte.gz", file_mirror / "other.gz")
    images = dataclasses.replace(MNIST.files["test_images"], filename="other.gz")
    info = dataclasses.replace(
        MNIST, mirrors=(file_mirror.as_uri() + "/",), files={**MNIST.files, "test_images": images}
    )
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(info, tmp_path, roles=("test_images",))
    assert list(tmp_path.iterdir()) == []


class _Interrupted(io.RawIOBase):
    """A response that delivers some bytes and then loses the connection."""

    def __init__(self):
        self.headers = {"Content-Length": str(10**6)}
        self.sent = 0

    def read(self, n=-1):
        if self.sent >= 200_000:
            raise ConnectionResetError(104, "Connection reset by peer")
        self.sent += 65536
        return b"\x1f\x8b" + bytes(65534)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_interrupted_download_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _Interrupted())
    with pytest.raises(DataError, match="Connection reset by peer") as e:
        fetch(MNIST, tmp_path, roles=TEST_ROLES)
    # Both mirrors were tried for the first file, then it stopped and named both files.
    msg = str(e.value)
    assert msg.count("Connection reset") == 2
    assert "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in msg
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_cleans_temp(monkeypatch, tmp_path):
    class Stop(_Interrupted):
        def read(self, n=-1):
            if self.sent:
                raise KeyboardInterrupt
            return super().read(n)

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Stop())
    with pytest.raises(KeyboardInterrupt):
        fetch(MNIST, tmp_path, roles=("test_labels",))
    assert list(tmp_path.iterdir()) == []


def test_http_error_reported(monkeypatch, tmp_path):
    def not_found(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    with pytest.raises(DataError, match="HTTP 404 Not Found"):
        fetch(MNIST, tmp_path, roles=("test_labels",))


def test_bad_role(tmp_path):
    with pytest.raises(InvalidArgumentError, match="unknown file role 'valid_images'"):
        fetch(MNIST, tmp_path, roles=("valid_images",))


def test_unwritable_destination(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot create the download folder"):
        fetch(MNIST, blocker / "sub", roles=("test_labels",))
