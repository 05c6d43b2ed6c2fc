"""Fetching a registered dataset's files from its mirrors, verified before they are kept.

Each file is streamed into a temporary file beside its destination, checked against the
registry's sha256 (of the canonical .gz or of the decompressed content), fsynced, and only then
renamed into place: an interrupted or corrupt download never sits under the final name.
"""

from __future__ import annotations

import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from vaelab._version import __version__
from vaelab.data.registry import ROLES, DatasetInfo, RemoteFile
from vaelab.data.verify import verify_file_bytes
from vaelab.errors import DataError, InvalidArgumentError
from vaelab.io import fsync_dir

__all__ = ["fetch"]

MAX_DOWNLOAD_BYTES = 256 * 2**20  # the largest file registered is ~26 MB
_CHUNK = 1 << 16
_PROGRESS_MIN_BYTES = 1 << 20


class _MirrorFailed(Exception):
    """One URL did not yield a verified file; the message is one line for the final report."""


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return f"timed out after {timeout:g} s"
        return _one_line(getattr(reason, "strerror", None) or reason)
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    return _one_line(f"{type(exc).__name__}: {exc}")


def _url(mirror: str, filename: str) -> str:
    return mirror.rstrip("/") + "/" + filename


def _download_one(
    url: str, target: Path, rf: RemoteFile, dataset: str, *, timeout: float, max_bytes: int
) -> None:
    tmp: str | None = None
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"vaelab/{__version__}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > max_bytes:
                raise _MirrorFailed(f"{total} bytes announced, over the {max_bytes}-byte limit")
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            with (
                os.fdopen(fd, "wb") as out,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=target.name,
                    file=sys.stderr,
                    leave=False,
                    # None: shown only on a terminal.
                    disable=None if (total or 0) >= _PROGRESS_MIN_BYTES else True,
                ) as bar,
            ):
                received = 0
                while chunk := response.read(_CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise _MirrorFailed(f"more than {max_bytes} bytes received")
                    out.write(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        if total is not None and received != total:
            raise _MirrorFailed(f"connection closed after {received} of {total} bytes")
        verify_file_bytes(rf, Path(tmp).read_bytes(), source=url, dataset=dataset)
        os.replace(tmp, target)
        tmp = None
        fsync_dir(target.parent)
    except _MirrorFailed:
        raise
    except DataError as e:  # the bytes arrived but are not the registered file
        raise _MirrorFailed(_one_line(e, 600)) from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        # URLError, HTTPError and socket timeouts are OSErrors; ValueError: a malformed URL.
        raise _MirrorFailed(_describe(e, timeout)) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def fetch(
    info: DatasetInfo,
    dest: str | os.PathLike,
    roles: Iterable[str] | None = None,
    *,
    timeout: float = 30,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> None:
    """Download the files of ``info`` that are missing from ``dest``, trying mirrors in order.

    ``roles`` picks files (``"train_images"``, ...; default all four). A file already in
    ``dest`` (its .gz or decompressed name) is left alone: :func:`vaelab.data.load_split`
    verifies what it reads. Raises one-line :class:`DataError` naming the files still missing,
    every mirror tried with its failure, and the folder where the files can be put by hand.
    """
    roles = tuple(ROLES if roles is None else roles)
    for role in roles:
        if role not in info.files:
            raise InvalidArgumentError(
                f"unknown file role {role!r} for {info.name} (known: {', '.join(info.files)})"
            )
    dest = Path(dest).expanduser()
    todo = [
        role
        for role in roles
        # whatever is there by the name (a FIFO included) is read and judged, never replaced
        if not any(os.path.lexists(dest / name) for name in info.files[role].candidates)
    ]
    if not todo:
        return
    names = ", ".join(info.files[r].filename for r in todo)
    if not info.mirrors:
        raise DataError(f"{info.name}: no download mirror is known for {names}; put them in {dest}")
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"{dest}: cannot create the download folder ({e.strerror or e}); "
            "set VAELAB_DATA to a writable folder or pass --data-dir DIR holding the files"
        ) from None
    for i, role in enumerate(todo):
        rf = info.files[role]
        failures = []
        for mirror in info.mirrors:
            url = _url(mirror, rf.filename)
            try:
                _download_one(
                    url, dest / rf.filename, rf, info.name, timeout=timeout, max_bytes=max_bytes
                )
                break
            except _MirrorFailed as e:
                failures.append(f"{url} ({e})")
        else:
            # Every mirror failed for this file: a network outage would fail the rest too, so
            # stop here and name everything still missing.
            missing = ", ".join(info.files[r].filename for r in todo[i:])
            if created:  # leave no empty folder behind a failed first download
                try:
                    dest.rmdir()
                except OSError:
                    pass
            raise DataError(
                f"could not download {info.name} file(s) {missing}: tried "
                f"{'; '.join(failures)}; download them by hand into {dest} "
                "or pass --data-dir DIR pointing at a folder that holds them"
            )
