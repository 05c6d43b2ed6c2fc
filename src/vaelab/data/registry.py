"""The registry of built-in datasets: where their files come from, what they hash to, how
they are split.

Splits are fixed: ``train`` is the first ``n_train`` official training images, ``valid`` the
remaining ones, ``test`` the official test set; nothing is shuffled, so every run, every seed
and every tool sees the same examples in each split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vaelab.errors import InvalidArgumentError

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
SPLITS = ("train", "valid", "test")
EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"


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


def get_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``, or InvalidArgumentError listing the known names."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"unknown dataset {name!r} (known: {', '.join(DATASETS)}; for your own data "
            "give a .npy/.npz array, a .csv/.tsv/.parquet table or a folder of images)"
        ) from None


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise InvalidArgumentError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
