"""Which files of a run folder are vaelab's: the marker ``vaelab-run.json`` and its manifest.

A run folder gets its marker before any other file: the format, a run id, and the manifest,
the names of the files vaelab writes there. A writer *claims* a name (adds it to the manifest,
in one atomic write of the marker) before it first writes that file, so the manifest covers
everything vaelab wrote, even after a kill at any moment; a name that already exists without
being listed is somebody else's file and is refused, never written over. Removing a run
(``--overwrite``, the restart of a run killed before its first checkpoint) removes listed
files only: a user's own files in the folder survive byte for byte.

A listed name is one file directly in the run folder, or ``NAME/`` for a folder whose files a
writer names itself (TensorBoard's event files); for such a folder only the files matching the
pattern in :data:`FOLDER_FILES` are vaelab's. A marker from a stranger can therefore name
nothing outside the run folder, and no pattern of its own.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from vaelab._version import __version__
from vaelab.errors import CheckpointError, excerpt
from vaelab.io import atomic_write_json, read_json

MARKER = "vaelab-run.json"
LOCK_FILE = ".vaelab-run.lock"  # see vaelab.runs.lock
FORMAT = "vaelab-run"
VERSION = 1
# The files vaelab writes inside a folder it lists (``NAME/``), by the folder's name.
FOLDER_FILES = {"tensorboard": "events.out.tfevents.*"}
_MAX_MARKER_BYTES = 2**20
_MAX_NAME = 255
# vaelab.io.atomic_write_bytes writes `.NAME.<random>.tmp` first (mkstemp's random part is
# lower-case letters, digits and underscores).
_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]+\.tmp$")


@dataclass
class Manifest:
    """The parsed marker: the run's id and the names vaelab writes (or wrote) in its folder."""

    run_id: str
    files: list[str] = field(default_factory=list)
    created: str = ""

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "run_id": self.run_id,
            "created": self.created,
            "vaelab_version": __version__,
            "files": sorted(self.files),
        }


def _valid_name(name) -> bool:
    """A file directly in the run folder (or ``NAME/``), never the marker, the lock or ``..``."""
    if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME or "\0" in name:
        return False
    stem = name[:-1] if name.endswith("/") else name
    return bool(stem) and "/" not in stem and stem not in (".", "..", MARKER, LOCK_FILE)


def read_manifest(run_dir: Path) -> Manifest | None:
    """The run folder's manifest, None for a folder without a marker; a damaged marker is an
    error, so nothing is ever removed on its word."""
    path = Path(run_dir) / MARKER
    if not path.exists() and not path.is_symlink():
        return None
    meta = read_json(path, "run marker", max_bytes=_MAX_MARKER_BYTES)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vaelab run marker; nothing in the folder was changed")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: run marker version {excerpt(meta.get('version'))} is not supported "
            f"(expected {VERSION}); nothing in the folder was changed"
        )
    files, run_id = meta.get("files"), meta.get("run_id")
    if not isinstance(run_id, str) or not isinstance(files, list):
        raise CheckpointError(f"{path}: run marker without a run id or a file list; tampered")
    bad = [f for f in files if not _valid_name(f)]
    if bad:
        raise CheckpointError(
            f"{path}: run marker lists {excerpt(bad[0])}, which is not a file of the run "
            "folder; tampered, nothing was changed"
        )
    created = meta.get("created")
    return Manifest(run_id=run_id, files=list(files), created=str(created or ""))


def _write(run_dir: Path, manifest: Manifest) -> None:
    path = Path(run_dir) / MARKER
    try:
        atomic_write_json(path, manifest.to_json())
    except OSError as e:
        raise CheckpointError(
            f"{path}: could not write the run marker ({e.strerror or e})"
        ) from None


def _fresh(files: list[str]) -> Manifest:
    return Manifest(
        run_id=uuid.uuid4().hex, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), files=files
    )


def mark_new_run(run_dir: Path) -> Manifest:
    """Write a fresh marker (a new run id, no files yet): the first file of every new run."""
    manifest = _fresh([])
    _write(run_dir, manifest)
    return manifest


def claim(run_dir: Path, names) -> None:
    """List ``names`` as vaelab's before they are first written.

    A name already listed costs one read of the marker. A name that exists in the folder
    without being listed belongs to somebody else: refused, with the file left as it is.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise CheckpointError(f"{run_dir}: no {MARKER}; not a run folder vaelab started")
    new = [n for n in names if n not in manifest.files]
    for name in new:
        target = run_dir / name.rstrip("/")
        if target.exists() or target.is_symlink():
            raise CheckpointError(
                f"{target}: exists but vaelab did not write it (it is not listed in {MARKER}); "
                "move it away: vaelab never writes over a file it did not write"
            )
    if new:
        manifest.files += new
        _write(run_dir, manifest)


def adopt(run_dir: Path, names) -> None:
    """Mark a run folder made before runs carried a marker, listing those of ``names`` (the
    files such versions wrote) that exist. Only a folder with a vaelab checkpoint is adopted."""
    run_dir = Path(run_dir)
    _write(run_dir, _fresh([n for n in names if (run_dir / n.rstrip("/")).exists()]))


def temp_files(run_dir: Path, names) -> list[Path]:
    """Temporary files of atomic writes of ``names`` (or of the marker) a kill left behind."""
    wanted = {n.rstrip("/") for n in names} | {MARKER}
    out = []
    for p in Path(run_dir).iterdir():
        m = _TEMP.match(p.name)
        if m and m.group("name") in wanted and p.is_file() and not p.is_symlink():
            out.append(p)
    return out


def remove_temp_files(run_dir: Path) -> None:
    """Remove what killed atomic writes of the marked run's files left behind."""
    manifest = read_manifest(run_dir)
    for path in temp_files(run_dir, manifest.files if manifest else []):
        path.unlink(missing_ok=True)


def owned_files(run_dir: Path, manifest: Manifest) -> list[Path]:
    """The files of the folder the manifest makes vaelab's (existing ones only)."""
    run_dir = Path(run_dir)
    out = []
    for name in manifest.files:
        path = run_dir / name.rstrip("/")
        if name.endswith("/"):
            pattern = FOLDER_FILES.get(name[:-1])
            if pattern and path.is_dir() and not path.is_symlink():
                out += [p for p in path.glob(pattern) if p.is_file() and not p.is_symlink()]
        elif path.is_symlink() or path.is_file():
            out.append(path)
    return out + temp_files(run_dir, manifest.files)


def foreign_entries(run_dir: Path, manifest: Manifest | None, legacy_names=()) -> list[Path]:
    """What in the folder is not vaelab's: neither the marker, the lock, a listed file (or
    folder), nor a temporary file of one (``legacy_names`` stand in for the list of an
    unmarked folder's temporary files)."""
    run_dir = Path(run_dir)
    listed = set(manifest.files) if manifest else set()
    ours = {MARKER, LOCK_FILE} | {n.rstrip("/") for n in listed}
    temps = set(temp_files(run_dir, listed or legacy_names))
    return sorted(p for p in run_dir.iterdir() if p.name not in ours and p not in temps)


def remove_owned(run_dir: Path, manifest: Manifest) -> None:
    """Remove the manifest's files (links themselves, never their targets), then the listed
    folders if that left them empty. Everything else stays."""
    for path in owned_files(run_dir, manifest):
        path.unlink(missing_ok=True)
    for name in manifest.files:
        folder = Path(run_dir) / name.rstrip("/")
        if name.endswith("/") and folder.is_dir() and not folder.is_symlink():
            try:
                folder.rmdir()
            except OSError:  # not empty: somebody else's files are in it
                pass
