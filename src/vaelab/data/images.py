"""Image folders: PNG, JPEG and BMP files as one ``(N, C, H, W)`` array (uint8; 16-bit grey
folders as float32 levels 0..65535), with labels from class folders. Over 400 lines: one
reader with its two passes and every decision below, which belong together.

Two passes over the files. The first opens each one only far enough to know its size and mode
(Pillow reads the header), so the output size and channel count are decided before any pixel is
decoded; the second decodes one image at a time into the preallocated output. At most one image
is held in memory besides the output.

Decisions, each reported by a notice where it changed something:

- Order: sorted relative paths (POSIX, by code point); ``ids`` are those paths.
- Labels: images in first-level folders (``root/cat/x.png``, and deeper, ``root/cat/a/y.png``)
  are labelled by that folder, the sorted folder names numbered 0, 1, ...; images directly in
  ``root`` have no labels. Both at once is an error: a stray file would otherwise silently
  become unlabelled or be dropped. Names starting with "." (``.DS_Store``, ``.ipynb_checkpoints``)
  are skipped; other files that are not PNG/JPEG/BMP are ignored and counted.
- Channels: all grey → C=1; any colour → C=3, the grey ones replicated. Palette images go
  through their palette (grey palettes are grey). Alpha is dropped (the colour channels are
  kept as stored, not composited onto a background).
- Bit depth: a folder of 16-bit greyscale PNG only is read at 16 bits, as float32 levels
  0..65535 (``describe()["stored_dtype"] == "uint16"``: the value range, dequantization and
  bits/dim are then those of 65,536 levels, and 12-bit data in 16-bit files keep their 4,096
  levels). In a folder that mixes them with 8-bit or colour files, 16-bit greyscale is scaled
  to 8 bits, ``round(v * 255 / 65535)`` (Pillow's own conversion clips every value above 255
  to white), as every file must end on one scale. ``bits=16`` reads new images for a 16-bit
  run: 8-bit files are then scaled up, ``v * 257``. 16-bit colour PNG is decoded by Pillow to
  its high bytes.
- Size: images whose size differs from ``image_size`` (default: the most common size, ties to
  the size met first in file order) are resized to it with Pillow's Lanczos filter, stretched
  where the aspect ratio differs. A JPEG's EXIF orientation is applied first.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vaelab.data.source import RawData, first_line
from vaelab.errors import DataError, InvalidArgumentError
from vaelab.io import open_regular

__all__ = ["IMAGE_SUFFIXES", "read_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# The decoders Pillow may use. Restricting them matters: a file is decoded by its content, not
# its name, and some of Pillow's other plugins hand files to external programs (EPS to
# Ghostscript). The JPEG decoder also opens MPO, the multi-picture JPEG that cameras write.
FORMATS = ("PNG", "JPEG", "BMP")
RESAMPLE = Image.Resampling.LANCZOS
_GREY = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"}
_COLOUR = {"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_ALPHA = {"LA", "La", "PA", "RGBA", "RGBa"}
_SIXTEEN = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
# EXIF orientations 5-8 turn the stored image a quarter turn: width and height swap.
_SWAPS_AXES = {5, 6, 7, 8}


@dataclass
class _Entry:
    """What the first pass learned about one file."""

    rel: str  # path relative to the root, POSIX
    label: int | None
    size: tuple[int, int]  # (width, height) after the EXIF orientation
    colour: bool
    alpha: bool
    sixteen: bool
    orientation: int  # EXIF orientation (1 = as stored)


def _parse_size(image_size) -> tuple[int, int] | None:
    """``image_size`` as ``(height, width)``: None, an int (square) or a pair."""
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        pair = (image_size, image_size)
    elif isinstance(image_size, tuple | list) and len(image_size) == 2:
        pair = tuple(image_size)
    else:
        pair = None
    if pair is None or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise InvalidArgumentError(
            f"image_size must be an int or (height, width), got {image_size!r}"
        )
    if min(pair) < 1:
        raise InvalidArgumentError(f"image_size must be positive, got {image_size!r}")
    return pair


def read_image_folder(
    path: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    bits: int | None = None,
) -> RawData:
    """Read every PNG/JPEG/BMP image under ``path`` (or the one image ``path`` names) as
    ``(N, C, H, W)``, uint8, or float32
    levels 0..65535 for 16-bit grey (``bits``: 8, 16 or None, 16 when every file is 16-bit
    grey).

    ``image_size`` is ``(height, width)`` or one int for square images (default: the most
    common size in the folder); ``channels`` is 1 (grey), 3 (RGB) or None (1 if every image is
    grey, else 3). See the module docstring for the rules on labels, channels, 16-bit files and
    resizing. A missing or empty folder, a folder without images, an unreadable, corrupt or
    truncated image, and images both in the folder and in class folders are each one
    :class:`DataError` line naming the folder or the file.

    ``describe()`` adds ``image_size`` ([H, W]), ``channels``, ``channel_order`` (``"L"`` or
    ``"RGB"``, in ``(N, C, H, W)`` layout), ``classes`` (folder names, index = label, or None),
    ``resample`` and ``counts`` (``images``, ``per_class``, ``resized``, ``grey_to_rgb``,
    ``colour_to_grey``, ``alpha_dropped``, ``sixteen_bit``, ``eight_to_sixteen``,
    ``exif_rotated``, ``ignored_files``) and ``stored_dtype``. New images are read the same way
    with ``read_image_folder(new, image_size=d["image_size"], channels=d["channels"],
    bits=16 if d["stored_dtype"] == "uint16" else 8)``.
    """
    root = Path(path).expanduser()
    size_hw = _parse_size(image_size)
    if channels not in (None, 1, 3):
        raise InvalidArgumentError(f"channels must be 1, 3 or None, got {channels!r}")
    if bits not in (None, 8, 16):
        raise InvalidArgumentError(f"bits must be 8, 16 or None, got {bits!r}")
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    if root.is_file() and root.suffix.lower() in IMAGE_SUFFIXES:
        # one image alone (new rows for a run): its folder's other files are not read
        root, files, classes, ignored, empty_folders = root.parent, [(root.name, None)], [], 0, []
    elif not root.is_dir():
        raise DataError(f"{root}: not a folder (give the folder that holds the images)")
    else:
        files, classes, ignored, empty_folders = _list_images(root)
    entries = [_inspect(root, rel, label) for rel, label in files]
    n = len(entries)

    if size_hw is None:
        # Most common (width, height); Counter keeps first-seen order among equal counts.
        w, h = Counter(e.size for e in entries).most_common(1)[0][0]
    else:
        h, w = size_hw
    colour = any(e.colour for e in entries)
    c = channels if channels is not None else (3 if colour else 1)
    if bits is None:
        bits = 16 if c == 1 and all(e.sixteen for e in entries) else 8
    if bits == 16 and c != 1:
        raise InvalidArgumentError("16-bit images are read as grey: channels must be 1")

    out = np.empty((n, c, h, w), dtype=np.float32 if bits == 16 else np.uint8)
    for i, e in enumerate(entries):
        out[i] = _decode(root, e, c, (w, h), bits == 16)

    counts = {
        "images": n,
        "per_class": None,
        "resized": sum(e.size != (w, h) for e in entries),
        "grey_to_rgb": sum(not e.colour for e in entries) if c == 3 else 0,
        "colour_to_grey": sum(e.colour for e in entries) if c == 1 else 0,
        "alpha_dropped": sum(e.alpha for e in entries),
        "sixteen_bit": sum(e.sixteen for e in entries),
        "eight_to_sixteen": sum(not e.sixteen for e in entries) if bits == 16 else 0,
        "exif_rotated": sum(e.orientation != 1 for e in entries),
        "ignored_files": ignored,
    }
    labels = None
    if classes:
        labels = np.fromiter((e.label for e in entries), dtype=np.int64, count=n)
        counts["per_class"] = np.bincount(labels, minlength=len(classes)).tolist()
    notices = _notices(counts, n, (h, w), c, empty_folders, bits, asked=channels is not None)
    details: dict[str, Any] = {
        "image_size": [h, w],
        "channels": c,
        "channel_order": "RGB" if c == 3 else "L",
        "classes": classes or None,
        "resample": "lanczos",
        "counts": counts,
        "stored_dtype": "uint16" if bits == 16 else "uint8",
    }
    return RawData(
        values=out,
        labels=labels,
        columns=None,
        label_name="folder" if classes else None,
        ids=np.asarray([e.rel for e in entries], dtype=str),
        notices=notices,
        kind="images",
        file=str(root),
        details=details,
    )


def _list_images(root: Path) -> tuple[list[tuple[str, int | None]], list[str], int, list[str]]:
    """``([(relative path, label)], class names, ignored file count, empty class folders)``."""
    found: list[tuple[str, str | None]] = []  # (relative path, first-level folder or None)
    ignored = 0
    seen_dirs: set[str] = set()
    folders_with_images: set[str] = set()
    first_level: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=None):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop, or a folder linked twice: read it once
            dirnames.clear()
            continue
        seen_dirs.add(real)
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if rel_dir == Path("."):
            first_level = list(dirnames)
        top = rel_dir.parts[0] if rel_dir.parts else None
        for name in filenames:
            if name.startswith("."):
                ignored += 1
            elif Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(((rel_dir / name).as_posix(), top))
                if top is not None:
                    folders_with_images.add(top)
            else:
                ignored += 1
    if not found:
        if ignored:
            raise DataError(
                f"{root}: no PNG, JPEG or BMP images (ignored {ignored} other file"
                f"{'s' if ignored != 1 else ''})"
            )
        raise DataError(f"{root}: empty folder (no images)")
    loose = [rel for rel, top in found if top is None]
    classes = sorted(folders_with_images)
    if loose and classes:
        raise DataError(
            f"{root}: {len(loose)} image{'s' if len(loose) != 1 else ''} directly in the folder "
            f"(e.g. {loose[0]!r}) and {len(found) - len(loose)} in class folders "
            f"({', '.join(repr(c) for c in classes[:5])}{', ...' if len(classes) > 5 else ''}); "
            "put every image in a class folder, or none"
        )
    index = {name: i for i, name in enumerate(classes)}
    files = sorted((rel, None if top is None else index[top]) for rel, top in found)
    empty = [d for d in first_level if d not in folders_with_images] if classes else []
    return files, classes, ignored, empty


def _open(root: Path, rel: str) -> Image.Image:
    path = root / rel
    # A FIFO or a device named like an image would block Pillow's open (or stream forever):
    # only a regular file is handed to it.
    f, _ = open_regular(path, "image file", DataError)
    f.close()
    try:
        with warnings.catch_warnings():
            # Pillow warns above 89 M pixels and refuses above twice that (raised below).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path, formats=FORMATS)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable PNG, JPEG or BMP image") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: too large to decode safely ({first_line(e)})") from None
    except OSError as e:
        if e.errno is not None:  # from the system: missing, not permitted, ...
            raise DataError(f"{path}: cannot read ({e.strerror or first_line(e)})") from None
        # from Pillow's parser: "Truncated File Read", ...
        raise DataError(f"{path}: truncated or corrupt image ({first_line(e)})") from None
    except (ValueError, SyntaxError, EOFError) as e:  # Pillow's parsers raise these on bad headers
        raise DataError(f"{path}: corrupt image ({first_line(e)})") from None


def _palette_is_grey(img: Image.Image) -> bool:
    palette = img.getpalette() or []
    rgb = np.asarray(palette[: len(palette) // 3 * 3], dtype=np.int32).reshape(-1, 3)
    return bool((rgb == rgb[:, :1]).all())


def _inspect(root: Path, rel: str, label: int | None) -> _Entry:
    """First pass: size, mode and orientation from the header, no pixels decoded."""
    with _open(root, rel) as img:
        mode = img.mode
        if mode in ("P", "PA"):
            colour = not _palette_is_grey(img)
            alpha = mode == "PA" or "transparency" in img.info
        elif mode in _GREY or mode in _COLOUR:
            colour = mode in _COLOUR
            alpha = mode in _ALPHA
        else:
            raise DataError(f"{root / rel}: unsupported image mode {mode!r}")
        orientation = 1
        if img.format in ("JPEG", "MPO"):
            # A JPEG's EXIF block is in its header; reading it decodes no pixels.
            orientation = int(img.getexif().get(0x0112, 1) or 1)
            orientation = orientation if 1 <= orientation <= 8 else 1
        w, h = img.size
        if orientation in _SWAPS_AXES:
            w, h = h, w
        return _Entry(rel, label, (w, h), colour, alpha, mode in _SIXTEEN, orientation)


def _sixteen_bit_values(img: Image.Image, path: Path) -> np.ndarray:
    """A 16-bit greyscale image's values as int64 ``(H, W)``, checked to lie in 0..65535."""
    v = np.asarray(img).astype(np.int64)  # (H, W) uint16 or int32
    if v.size and (v.min() < 0 or v.max() > 65535):
        raise DataError(
            f"{path}: greyscale values from {v.min()} to {v.max()}, outside 16 bits (0..65535)"
        )
    return v


def _scale_16_to_8(img: Image.Image, path: Path) -> Image.Image:
    """A 16-bit greyscale image as 8-bit, round(v * 255 / 65535), not clipped at 255."""
    v = _sixteen_bit_values(img, path)
    return Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8), mode="L")


def _levels_16(frame: Image.Image, sixteen: bool, size_wh: tuple[int, int], path: Path):
    """A grey frame as float32 levels 0..65535 ``(H, W)``: 16-bit values as stored, 8-bit ones
    times 257; resized with Lanczos in floats, then rounded back onto the levels."""
    if sixteen:
        v = _sixteen_bit_values(frame, path).astype(np.float32)
    else:
        v = np.asarray(frame.convert("L"), dtype=np.float32) * 257
    if frame.size != size_wh:
        v = np.asarray(Image.fromarray(v, mode="F").resize(size_wh, RESAMPLE))
        v = np.clip(np.rint(v), 0, 65535)  # Lanczos overshoots at edges
    return v


def _decode(
    root: Path, e: _Entry, channels: int, size_wh: tuple[int, int], deep: bool = False
) -> np.ndarray:
    """Second pass: one image decoded, converted and resized, as ``(C, H, W)`` uint8 (``deep``:
    float32 levels 0..65535, one channel)."""
    path = root / e.rel
    with _open(root, e.rel) as img:
        try:
            if img.format in ("JPEG", "MPO") and e.size != size_wh:
                # Let the JPEG decoder scale down by 1/2, 1/4 or 1/8 while staying at least
                # as large as the target (asked in the stored orientation); Lanczos does the rest.
                w, h = size_wh if e.orientation not in _SWAPS_AXES else size_wh[::-1]
                img.draft(img.mode, (w, h))
            img.load()
            frame = ImageOps.exif_transpose(img) if e.orientation != 1 else img
            if deep:
                if frame.mode in ("P", "PA"):
                    frame = frame.convert("RGBA" if e.alpha else "RGB")
                return _levels_16(frame, e.sixteen, size_wh, path)[None]
            if e.sixteen:
                frame = _scale_16_to_8(frame, path)
            elif frame.mode in ("P", "PA"):
                frame = frame.convert("RGBA" if e.alpha else "RGB")
            frame = frame.convert("L" if channels == 1 else "RGB")  # drops alpha
            if frame.size != size_wh:
                frame = frame.resize(size_wh, RESAMPLE)
            arr = np.asarray(frame)  # (H, W) or (H, W, 3)
        except DataError:
            raise
        except OSError as err:  # "image file is truncated", decoder errors
            raise DataError(f"{path}: truncated or corrupt image ({first_line(err)})") from None
        except (ValueError, SyntaxError, EOFError) as err:
            raise DataError(f"{path}: corrupt image ({first_line(err)})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def _notices(
    counts: dict,
    n: int,
    size_hw: tuple[int, int],
    c: int,
    empty_folders: list[str],
    bits: int,
    asked: bool = False,
) -> list[str]:
    h, w = size_hw
    notes = []
    if counts["ignored_files"]:
        notes.append(f"ignored {_count(counts['ignored_files'], 'file')} (not PNG/JPEG/BMP)")
    if empty_folders:
        shown = ", ".join(repr(d) for d in empty_folders[:5])
        notes.append(f"folders without images are not classes: {shown}")
    if bits == 16 and counts["eight_to_sixteen"]:
        notes.append(
            f"scaled {_count(counts['eight_to_sixteen'], '8-bit image')} to 16 bits (v * 257), "
            "the scale of this run's images"
        )
    elif bits == 16:
        notes.append("read 16-bit greyscale images at 16 bits (levels 0..65535)")
    elif counts["sixteen_bit"]:
        notes.append(
            f"scaled {_count(counts['sixteen_bit'], '16-bit greyscale image')} to 8 bits "
            "(round(v * 255 / 65535)), the scale of the folder's other images"
        )
    if counts["alpha_dropped"]:
        k = counts["alpha_dropped"]
        notes.append(f"dropped the alpha channel (transparency) of {_count(k, 'image')}")
    if counts["grey_to_rgb"]:
        why = "the run's images are colour" if asked else "others are colour"
        notes.append(f"converted {_count(counts['grey_to_rgb'], 'grey image')} to RGB ({why})")
    if counts["colour_to_grey"]:
        why = " (the run's images are grey)" if asked else ""
        notes.append(f"converted {_count(counts['colour_to_grey'], 'colour image')} to grey{why}")
    if counts["exif_rotated"]:
        notes.append(
            f"turned {_count(counts['exif_rotated'], 'JPEG image')} upright (EXIF orientation)"
        )
    if counts["resized"]:
        notes.append(
            f"resized {counts['resized']} of {_count(n, 'image')} to {h}×{w} (height×width; "
            "Lanczos, stretched where the aspect ratio differs)"
        )
    return notes
