"""Loading a built-in dataset's split: locate its files, download what is missing, verify,
parse, slice."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab.data import download as _download
from vaelab.data.registry import (
    DATASETS,
    EMBEDDED_DIR,
    ROLES,
    DatasetInfo,
    check_split,
    data_home,
    get_info,
)
from vaelab.data.verify import load_verified
from vaelab.errors import DataError


@dataclass
class Split:
    """One split of a dataset, held in memory.

    ``images`` is uint8 ``(N, 1, 28, 28)`` for registered datasets (scale or binarize it with
    :mod:`vaelab.data.transforms`) and, for a user's data, the examples as stored (uint8 or
    float32, ``(N, D)`` or ``(N, C, H, W)``); ``labels`` is ``(N,)`` (int64 tensor, or a numpy
    array of strings) or None; ``ids`` the rows' ids in the file (numpy) or None.
    """

    images: torch.Tensor
    labels: object | None
    name: str
    split: str
    info: DatasetInfo | None = None
    ids: object | None = None
    rows: object | None = None  # each example's row in the user's file (0-based), or None

    def __len__(self) -> int:
        return int(self.images.shape[0])


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
            # anything by the name counts (a FIFO, a link to a device): it is read, and a
            # thing that is not a regular file is refused there, never passed over silently
            hit = next(
                (folder / n for n in info.files[role].candidates if os.path.lexists(folder / n)),
                None,
            )
            if hit is not None:
                found[role] = hit
                break
        else:
            missing.append(role)
    return found, missing


def load_split(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    cache: dict[tuple[str, Path], np.ndarray] | None = None,
) -> Split:
    """Load one split of a registered dataset, verified, as uint8 images and int64 labels.

    ``split`` is ``"train"`` (the first ``n_train`` official training images), ``"valid"`` (the
    remaining training images) or ``"test"`` (the official test set). Files are looked up in
    ``data_dir`` (flat, or in ``data_dir/<name>/``) if given, else in ``data_home()/<name>/``;
    the .gz or the decompressed file name is accepted. Missing files are downloaded there when
    ``download`` is true. ``mnist-mini`` is read from the copy inside the package.

    ``cache``: the verified arrays of the files read so far, kept by the caller. ``train`` and
    ``valid`` are two slices of the same two files, so with it they are read, verified and
    decoded once, and both splits are views of the one array.
    """
    info = get_info(name)
    check_split(split)
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

    images, labels = (_verified(info, role, paths[role], cache) for role in roles)
    if split == "train":
        sl = slice(0, info.n_train)
    elif split == "valid":
        sl = slice(info.n_train, info.n_train + info.n_valid)
    else:
        sl = slice(0, info.n_test)
    if cache is not None:
        images, labels = images[sl], labels[sl]  # the caller keeps the whole file's array
    elif sl.stop - sl.start != len(images):
        # A copy, so the split does not keep the whole file's array alive.
        images, labels = images[sl].copy(), labels[sl].copy()
    x = torch.from_numpy(images).reshape(len(images), *info.image_shape)  # (N, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))  # (N,)
    return Split(images=x, labels=y, name=name, split=split, info=info)


def _verified(
    info: DatasetInfo, role: str, path: Path, cache: dict[tuple[str, Path], np.ndarray] | None
) -> np.ndarray:
    if cache is None:
        return load_verified(info, role, path)
    if (role, path) not in cache:
        cache[role, path] = load_verified(info, role, path)
    return cache[role, path]


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
                    load_verified(info, role, paths[role])
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
