"""Datasets: the registry of MNIST-like image sets, their fixed splits, and a user's own arrays.

Registered datasets are read from their four official IDX files, each verified by sha256 before
use. Splits are fixed: ``train`` is the first ``n_train`` official training images, ``valid`` the
remaining ones, ``test`` the official test set; nothing is shuffled, so every run, every seed and
every tool sees the same examples in each split.

A user's own data (``.npy``, ``.npz``, ``.csv``) is loaded by :func:`load_array` and split by
:func:`split_array`, a seeded permutation.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vaelab.data import download as _download
from vaelab.data.idx import GZIP_MAGIC, gunzip_bounded, parse_idx, read_file_bounded
from vaelab.errors import DataError, InvalidArgumentError

__all__ = [
    "DATASETS",
    "EMBEDDED_DIR",
    "ROLES",
    "SPLITS",
    "DatasetInfo",
    "RemoteFile",
    "Split",
    "data_home",
    "dataset_status",
    "get_info",
    "load_array",
    "load_array_split",
    "load_split",
    "split_array",
    "verify_file_bytes",
]

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
SPLITS = ("train", "valid", "test")
EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
MAX_IDX_BYTES = 512 * 2**20  # bound on a dataset file and on its decompressed content
MAX_ARRAY_BYTES = 4 * 2**30  # bound on a user's array file (and on one .npz member)


def data_home() -> Path:
    """Where datasets are downloaded: ``$VAELAB_DATA`` if set, else ``~/.cache/vaelab``."""
    env = os.environ.get("VAELAB_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "vaelab"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset and what it must hash to.

    ``sha256`` is of the *decompressed* content, so a re-compressed or already decompressed copy
    verifies too; ``gz_sha256`` is of the canonical ``.gz`` served by the mirrors. Either may be
    None when unpublished; a file is accepted when a known hash matches.
    """

    filename: str
    sha256: str | None
    gz_sha256: str | None = None

    @property
    def raw_name(self) -> str:
        """The decompressed file's name (``filename`` without ``.gz``)."""
        return self.filename[:-3] if self.filename.endswith(".gz") else self.filename

    @property
    def candidates(self) -> tuple[str, ...]:
        """Names this file is looked up under in a folder, in order of preference."""
        return tuple(dict.fromkeys((self.filename, self.raw_name)))


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: where its files come from, what they hash to, how it is split."""

    name: str
    description: str
    mirrors: tuple[str, ...]
    files: dict[str, RemoteFile] = field(hash=False)
    licence: str
    homepage: str
    embedded: bool = False
    image_shape: tuple[int, int, int] = (1, 28, 28)
    n_train: int = 55_000
    n_valid: int = 5_000
    n_test: int = 10_000
    num_classes: int = 10

    def count(self, role: str) -> int:
        """Number of examples the file for ``role`` must hold."""
        return self.n_test if role.startswith("test") else self.n_train + self.n_valid


def _mnist_like_files(hashes: dict[str, tuple[str | None, str | None]]) -> dict[str, RemoteFile]:
    names = {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
    return {role: RemoteFile(names[role], *hashes[role]) for role in ROLES}


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        description="MNIST handwritten digits, 28x28 grey, 10 classes (55k/5k/10k)",
        mirrors=(
            # The mirror torchvision.datasets.MNIST tries first (torchvision/datasets/mnist.py).
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            # The CVDF mirror used by tensorflow_datasets (url_checksums/mnist.txt).
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        files=_mnist_like_files(
            {
                # (sha256 of the decompressed file, sha256 of the canonical .gz).
                # Decompressed: ../shared/data/mnist/README.md of this project, re-checked here
                # with `zcat FILE | sha256sum`. .gz: tensorflow/datasets
                # tensorflow_datasets/url_checksums/mnist.txt (CVDF mirror; sizes 9912422,
                # 28881, 1648877, 4542 bytes).
                "train_images": (
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                ),
                "train_labels": (
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                ),
                "test_images": (
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                ),
                "test_labels": (
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                ),
            }
        ),
        licence="CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. J. C. Burges)",
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        description="Fashion-MNIST Zalando article images, 28x28 grey, 10 classes (55k/5k/10k)",
        mirrors=(
            # The official download location (github.com/zalandoresearch/fashion-mnist README).
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            # The same files, kept in the project's repository under data/fashion/.
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        files=_mnist_like_files(
            {
                # Only the canonical .gz hashes are published: tensorflow/datasets
                # tensorflow_datasets/url_checksums/fashion_mnist.txt (sizes 26421880, 29515,
                # 4422102, 5148 bytes); the same values appear in other projects' download
                # scripts, with the md5 sums listed in the Fashion-MNIST README.
                "train_images": (
                    None,
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                ),
                "train_labels": (
                    None,
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                ),
                "test_images": (
                    None,
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                ),
                "test_labels": (
                    None,
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                ),
            }
        ),
        licence="MIT (Zalando SE)",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "kmnist": DatasetInfo(
        name="kmnist",
        description="Kuzushiji-MNIST cursive Japanese characters, 28x28 grey, 10 classes "
        "(55k/5k/10k)",
        mirrors=(
            # The download links of github.com/rois-codh/kmnist README (served over both).
            "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        ),
        files=_mnist_like_files(
            {
                # Only the canonical .gz hashes are published: tensorflow/datasets
                # tensorflow_datasets/url_checksums/kmnist.txt (sizes 18165135, 29497, 3041136,
                # 5120 bytes); the same values appear in other projects' KMNIST loaders.
                "train_images": (
                    None,
                    "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                ),
                "train_labels": (
                    None,
                    "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                ),
                "test_images": (
                    None,
                    "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                ),
                "test_labels": (
                    None,
                    "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
                ),
            }
        ),
        licence="CC BY-SA 4.0 (ROIS-DS CODH; Clanuwat et al. 2018, arXiv:1812.01718)",
        homepage="http://codh.rois.ac.jp/kmnist/",
    ),
    "mnist-mini": DatasetInfo(
        name="mnist-mini",
        description="first 9,000 MNIST training and 1,000 test images, shipped with vaelab "
        "(8k/1k/1k)",
        mirrors=(),
        files={
            # Written by scripts/make_embedded_mnist.py, which prints these hashes
            # (decompressed content, then the .gz); see embedded/README.md.
            "train_images": RemoteFile(
                "mnist-mini-train-images-idx3-ubyte.gz",
                "ce1c032034b5fad43e18a2b91658d353f071a7265a7f0d37cd341206be50b567",
                "0567828d59f3aa6aeb1e8d5faed2f5813de3c4ecb44da0439e4b4b4cb637699c",
            ),
            "train_labels": RemoteFile(
                "mnist-mini-train-labels-idx1-ubyte.gz",
                "4c7c96eb2374e0b9dc6c68b9fd55d6320f474adff8375d655516481d5f74fed4",
                "8eefb002464480e9adcbe2fef4483c6b03d7564644aa78e71d77ffb03caaaae9",
            ),
            "test_images": RemoteFile(
                "mnist-mini-t10k-images-idx3-ubyte.gz",
                "de7c252b04f05e1f8309634180ccdf286dc6dbac8c579b74e76e02ae0331ca52",
                "ff395cced88f2039d158807be3ff56f5b9d2937d45e40edede6da95d5c85e03c",
            ),
            "test_labels": RemoteFile(
                "mnist-mini-t10k-labels-idx1-ubyte.gz",
                "832c0d20f0dc42e575488c75a83a970787d4c8d4d05831b2ef03701b4a478a90",
                "59f1210430c03405bf13b88e2855be7b6adbf45b16966f8f6bf11013873bf815",
            ),
        },
        licence="CC BY-SA 3.0 (subset of MNIST: Y. LeCun, C. Cortes, C. J. C. Burges)",
        homepage="http://yann.lecun.com/exdb/mnist/",
        embedded=True,
        n_train=8_000,
        n_valid=1_000,
        n_test=1_000,
    ),
}


@dataclass
class Split:
    """One split of a dataset, held in memory.

    ``images`` is uint8 ``(N, 1, 28, 28)`` for registered datasets (scale or binarize it with
    :mod:`vaelab.data.transforms`) and float32 for a user's arrays; ``labels`` is int64 ``(N,)``
    or None.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    split: str
    info: DatasetInfo | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def get_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``, or InvalidArgumentError listing the known names."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"unknown dataset {name!r} (known: {', '.join(DATASETS)}; for your own data "
            "give a .npy, .npz or .csv file)"
        ) from None


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InvalidArgumentError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")


def _sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


def _identify(content_sha256: str) -> str:
    """`` (it is the <dataset> <file>)`` when a registered file has this content, else ``""``."""
    for info in DATASETS.values():
        for rf in info.files.values():
            if rf.sha256 == content_sha256:
                return f" (it is the {info.name} file {rf.raw_name})"
    return ""


def verify_file_bytes(
    rf: RemoteFile,
    raw: bytes | bytearray,
    *,
    source: str,
    dataset: str,
    max_bytes: int = MAX_IDX_BYTES,
) -> bytes | bytearray:
    """Check a file's bytes against the registry and return its decompressed content.

    A .gz whose own sha256 is ``rf.gz_sha256`` is accepted as is. Otherwise the decompressed
    content (gzip is recognized by its magic bytes) must hash to ``rf.sha256``; when that is not
    published, only the canonical .gz can be verified and anything else is refused.
    """
    is_gz = bytes(raw[:2]) == GZIP_MAGIC
    if is_gz:
        gz_digest = _sha256(raw)
        if rf.gz_sha256 is not None and gz_digest == rf.gz_sha256:
            return gunzip_bounded(raw, max_bytes=max_bytes, source=source)
        content = gunzip_bounded(raw, max_bytes=max_bytes, source=source)
        if rf.sha256 is None:
            raise DataError(
                f"{source}: cannot verify {dataset} {rf.filename}: its sha256 is {gz_digest}, "
                f"not the canonical .gz's {rf.gz_sha256}, and only that .gz has a published "
                f"checksum{_identify(_sha256(content))}; replace it with the original "
                f"{rf.filename} from the dataset's site"
            )
    else:
        if rf.sha256 is None:
            raise DataError(
                f"{source}: cannot verify the uncompressed {dataset} file {rf.raw_name}: only the "
                f"canonical {rf.filename} has a published checksum (sha256 {rf.gz_sha256})"
                f"{_identify(_sha256(raw))}; put that original .gz file in its place"
            )
        content = raw
    digest = _sha256(content)
    if digest != rf.sha256:
        raise DataError(
            f"{source}: checksum mismatch for {dataset} {rf.raw_name}: expected sha256 "
            f"{rf.sha256} of the decompressed content, got {digest}{_identify(digest)}; the "
            "file is corrupt, truncated or of another dataset (delete it and download it again)"
        )
    return content


def _search_dirs(info: DatasetInfo, data_dir: str | os.PathLike | None) -> list[Path]:
    if info.embedded:
        return [EMBEDDED_DIR]
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        # A flat folder of the four files, or a root holding one folder per dataset.
        return [root, root / info.name]
    return [data_home() / info.name]


def _locate(
    info: DatasetInfo, roles: tuple[str, ...], dirs: list[Path]
) -> tuple[dict[str, Path], list[str]]:
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role in roles:
        for folder in dirs:
            hit = next(
                (folder / n for n in info.files[role].candidates if (folder / n).is_file()), None
            )
            if hit is not None:
                found[role] = hit
                break
        else:
            missing.append(role)
    return found, missing


def _load_verified(info: DatasetInfo, role: str, path: Path) -> np.ndarray:
    rf = info.files[role]
    what = f"{info.name} {role.replace('_', ' ')} file"
    raw = read_file_bounded(path, max_bytes=MAX_IDX_BYTES, what=what)
    content = verify_file_bytes(rf, raw, source=str(path), dataset=info.name)
    arr = parse_idx(content, source=str(path))
    n = info.count(role)
    if role.endswith("images"):
        hw = tuple(info.image_shape[1:])
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != hw or len(arr) != n:
            raise DataError(
                f"{path}: expected {n} uint8 images of {hw[0]}x{hw[1]}, "
                f"got {arr.dtype} of shape {arr.shape}"
            )
    else:
        if arr.dtype != np.uint8 or arr.shape != (n,):
            raise DataError(
                f"{path}: expected {n} uint8 labels, got {arr.dtype} of shape {arr.shape}"
            )
        if n and int(arr.max()) >= info.num_classes:
            raise DataError(
                f"{path}: label {int(arr.max())} out of range for {info.num_classes} classes"
            )
    return arr


def load_split(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Split:
    """Load one split of a registered dataset, verified, as uint8 images and int64 labels.

    ``split`` is ``"train"`` (the first ``n_train`` official training images), ``"valid"`` (the
    remaining training images) or ``"test"`` (the official test set). Files are looked up in
    ``data_dir`` (flat, or in ``data_dir/<name>/``) if given, else in ``data_home()/<name>/``;
    the .gz or the decompressed file name is accepted. Missing files are downloaded there when
    ``download`` is true. ``mnist-mini`` is read from the copy inside the package.
    """
    info = get_info(name)
    _check_split(split)
    prefix = "test" if split == "test" else "train"
    roles = (f"{prefix}_images", f"{prefix}_labels")
    dirs = _search_dirs(info, data_dir)
    paths, missing = _locate(info, roles, dirs)
    if missing:
        files = ", ".join(info.files[r].filename for r in missing)
        if info.embedded:
            raise DataError(
                f"{EMBEDDED_DIR}: the embedded dataset {name} is missing {files}; "
                "the vaelab installation is incomplete (reinstall it)"
            )
        if not download:
            where = " or ".join(str(d) for d in dirs)
            raise DataError(
                f"{name}: {files} not found in {where}; put the files there, or allow downloading"
            )
        _download.fetch(info, dirs[0], roles=missing)
        paths, missing = _locate(info, roles, dirs)
        if missing:  # fetch succeeded, so this means the folder changed under us
            raise DataError(f"{dirs[0]}: downloaded files disappeared: {missing}")

    images = _load_verified(info, roles[0], paths[roles[0]])
    labels = _load_verified(info, roles[1], paths[roles[1]])
    if split == "train":
        sl = slice(0, info.n_train)
    elif split == "valid":
        sl = slice(info.n_train, info.n_train + info.n_valid)
    else:
        sl = slice(0, info.n_test)
    if sl.stop - sl.start != len(images):
        # A copy, so the split does not keep the whole file's array alive.
        images, labels = images[sl].copy(), labels[sl].copy()
    x = torch.from_numpy(images).reshape(len(images), *info.image_shape)  # (N, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))  # (N,)
    return Split(images=x, labels=y, name=name, split=split, info=info)


def dataset_status(
    data_dir: str | os.PathLike | None = None, *, verify: bool = False
) -> list[dict]:
    """One row per registered dataset, for ``vaelab datasets``.

    With a flat ``data_dir`` every MNIST-like dataset finds files of the same names there:
    ``present`` only says the names exist; ``verify=True`` tells the datasets apart.

    Keys: ``name``, ``description``, ``embedded``, ``present`` (all four files found), ``path``
    (the folder searched first, or where the files were found), ``missing`` (file names),
    ``verified`` (None unless ``verify``: then True, or False with the reason in ``error``),
    ``n_train``, ``n_valid``, ``n_test``, ``licence``, ``homepage``. Verifying decompresses and
    hashes every file (about a second for MNIST).
    """
    rows = []
    for info in DATASETS.values():
        dirs = _search_dirs(info, data_dir)
        paths, missing = _locate(info, ROLES, dirs)
        verified: bool | None = None
        error = None
        if verify and not missing:
            try:
                for role in ROLES:
                    _load_verified(info, role, paths[role])
                verified = True
            except DataError as e:
                verified, error = False, str(e)
        folders = {p.parent for p in paths.values()}
        rows.append(
            {
                "name": info.name,
                "description": info.description,
                "embedded": info.embedded,
                "present": not missing,
                "verified": verified,
                "error": error,
                "path": str(folders.pop() if len(folders) == 1 else dirs[0]),
                "missing": [info.files[r].filename for r in missing],
                "n_train": info.n_train,
                "n_valid": info.n_valid,
                "n_test": info.n_test,
                "licence": info.licence,
                "homepage": info.homepage,
            }
        )
    return rows


# --------------------------------------------------------------------------- user arrays


def _check_numeric_dtype(dtype: np.dtype, source: str) -> None:
    if dtype.hasobject:
        raise DataError(
            f"{source}: holds Python objects (an object array is a pickle, which can run code "
            "when loaded); refused: save plain numeric arrays"
        )
    if dtype.kind not in "biuf":
        raise DataError(
            f"{source}: non-numeric array of dtype {dtype} (expected integers, floats or bools)"
        )


def _npy_header(fp, source: str, available: int) -> tuple[tuple[int, ...], np.dtype]:
    """Read and check a .npy header from ``fp`` without reading (or allocating) the data.

    ``available`` is the file's total size: the data that follows the header must be exactly
    as long as the header says.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise DataError(f"{source}: unsupported .npy format version {version}")
    except DataError:
        raise
    except Exception as e:
        # numpy parses the (at most 10 kB) header text with ast/tokenize, whose errors on a
        # malformed header are ValueError, SyntaxError, tokenize.TokenError, ...: all mean
        # "not a .npy file". No data has been read or allocated yet.
        raise DataError(f"{source}: not a valid .npy file ({_first_line(e)})") from None
    _check_numeric_dtype(dtype, source)
    expected = math.prod(shape) * dtype.itemsize
    payload = available - fp.tell()
    if payload != expected:
        what = "truncated" if payload < expected else "trailing bytes"
        raise DataError(
            f"{source}: .npy data is {payload} bytes but its header (shape {shape}, {dtype}) "
            f"needs {expected} ({what})"
        )
    return shape, dtype


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _load_npy(path: Path, max_bytes: int) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise DataError(f"{path}: {size} bytes, over the limit of {max_bytes} bytes")
            _npy_header(f, str(path), size)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot load .npy ({_first_line(e)})") from None


def _load_npz(path: Path, max_bytes: int) -> np.ndarray:
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            if "x" in members:
                key = "x"
            elif len(members) == 1:
                (key,) = members
            else:
                keys = ", ".join(sorted(members)) or "none"
                raise DataError(
                    f"{path}: holds arrays [{keys}]; vaelab reads the array named 'x' or the only "
                    "array of a file (np.savez(path, x=data))"
                )
            info = members[key]
            if info.file_size > max_bytes:
                raise DataError(
                    f"{path}: array {key!r} is {info.file_size} bytes, over the limit of "
                    f"{max_bytes} bytes"
                )
            with zf.open(info) as member:
                _npy_header(member, f"{path}[{key}]", info.file_size)
            with np.load(path, allow_pickle=False) as npz:
                return npz[key]
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz archive ({_first_line(e)})") from None
    except (NotImplementedError, RuntimeError) as e:  # zipfile: unsupported compression/encryption
        raise DataError(f"{path}: unsupported .npz archive ({_first_line(e)})") from None


def _is_number(field_text: str) -> bool:
    try:
        float(field_text)
    except ValueError:
        return False
    return True


def _load_csv(path: Path, max_bytes: int) -> np.ndarray:
    raw = read_file_bounded(path, max_bytes=max_bytes, what="CSV file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text (bad byte at offset {e.start}); expected a numeric CSV"
        ) from None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise DataError(f"{path}: empty CSV file (no rows)")
    # A first row that is not all numbers is a header row.
    skip = first if all(_is_number(f) for f in lines[first].split(",")) else first + 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": reported below
            arr = np.loadtxt(
                io.StringIO("\n".join(lines[skip:])),
                delimiter=",",
                dtype=np.float64,
                ndmin=2,
                comments=None,
            )
    except ValueError as e:
        raise DataError(f"{path}: not a numeric CSV ({_first_line(e)})") from None
    return arr


def _as_examples(arr: np.ndarray, path: Path) -> torch.Tensor:
    if arr.ndim == 0:
        raise DataError(f"{path}: holds a single number; expected (N, D) or (N, C, H, W) data")
    if arr.ndim > 4:
        raise DataError(f"{path}: array of shape {arr.shape}; expected (N, D) or (N, C, H, W)")
    if arr.shape[0] == 0:
        raise DataError(f"{path}: empty (0 examples)")
    if arr.size == 0:
        raise DataError(f"{path}: array of shape {arr.shape} holds no values")
    if arr.dtype == np.uint8:
        # 8-bit data stays 8-bit: the pipeline then binarizes it (Bernoulli) or dequantizes it
        # (Gaussian, with the bits/dim correction) exactly as it does the built-in images
        x = np.ascontiguousarray(arr)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), x.shape))
        raise DataError(
            f"{path}: {int(bad.sum())} non-finite values (NaN, inf, or too large for float32); "
            f"the first at index {first}"
        )
    if x.ndim == 1:
        x = x.reshape(-1, 1)  # (N,) -> (N, 1): one feature per example
    elif x.ndim == 3:
        x = x.reshape(x.shape[0], 1, *x.shape[1:])  # (N, H, W) -> (N, 1, H, W)
    return torch.from_numpy(x)


def load_array(path: str | os.PathLike, *, max_bytes: int = MAX_ARRAY_BYTES) -> torch.Tensor:
    """Load a user's data as ``(N, D)`` or ``(N, C, H, W)``, as stored: uint8 arrays stay uint8
    (8-bit images), everything else becomes float32.

    ``.npy``, ``.npz`` (the array named ``x``, or the only array) and ``.csv`` (numbers separated
    by commas, one example per row; a first row that is not all numbers is a header). ``(N,)`` is
    read as ``(N, 1)`` and ``(N, H, W)`` as ``(N, 1, H, W)``. Never unpickles: object arrays are
    refused before anything is deserialized. Missing, empty, non-numeric, non-finite (NaN/inf)
    or malformed data raises :class:`DataError` naming the file.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = _load_npy(path, max_bytes)
    elif suffix == ".npz":
        arr = _load_npz(path, max_bytes)
    elif suffix == ".csv":
        arr = _load_csv(path, max_bytes)
    else:
        raise DataError(
            f"{path}: unsupported data file type {suffix or '(no suffix)'!r} "
            "(use .npy, .npz or .csv, or a registered dataset name)"
        )
    return _as_examples(arr, path)


def split_array(
    x: torch.Tensor,
    split: str,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
) -> torch.Tensor:
    """The ``split`` part of a seeded random train/valid/test partition of ``x``'s rows.

    Deterministic in ``seed``; every example lands in exactly one split; the valid and test
    sizes are ``round(N * fraction)`` (at least 1) and train gets the rest. Examples keep their
    original order within a split. Raises DataError when a split would be empty.
    """
    _check_split(split)
    if not isinstance(x, torch.Tensor):
        raise InvalidArgumentError(f"x must be a torch.Tensor, got {type(x).__name__}")
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or not all(math.isfinite(f) and f > 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise InvalidArgumentError(
            f"fractions must be three positive numbers summing to 1, got {tuple(fractions)}"
        )
    if x.ndim == 0:
        raise DataError("cannot split a 0-d tensor; expected examples along the first axis")
    n = int(x.shape[0])
    n_valid = max(1, round(n * fr[1]))
    n_test = max(1, round(n * fr[2]))
    n_train = n - n_valid - n_test
    if n_train < 1:
        raise DataError(
            f"{n} examples are too few to split into train/valid/test with fractions {fr}"
        )
    generator = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=generator)
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n - n_test, n)}
    lo, hi = bounds[split]
    idx = perm[lo:hi].sort().values
    return x[idx.to(x.device)]


def load_array_split(
    path: str | os.PathLike,
    split: str,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
) -> Split:
    """:func:`load_array` then :func:`split_array`, as a :class:`Split` with no labels."""
    _check_split(split)
    x = split_array(load_array(path), split, seed=seed, fractions=fractions)
    return Split(images=x, labels=None, name=str(path), split=split, info=None)
