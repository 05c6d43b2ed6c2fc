#!/usr/bin/env python
"""Regenerate the MNIST slice embedded in vaelab (the ``mnist-mini`` dataset).

    python scripts/make_embedded_mnist.py [--source ../shared/data/mnist] [--check]

Reads the four official MNIST files (gzip or raw; their *decompressed* sha256 are checked against
the published values below), keeps the first 9,000 training images and labels and the first
1,000 test images and labels, and writes them as IDX files compressed with a fixed gzip header
(no file name, mtime 0, OS byte 255, deflate level 9) into src/vaelab/data/embedded/. The same
input gives the same bytes on every run with the same zlib; the decompressed content is the same
everywhere. It prints the sha256 of each output (decompressed, then .gz) for
``vaelab.data.registry.DATASETS["mnist-mini"]``. ``--check`` compares against the files already
there instead of writing.

Needs only the standard library.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "mnist"
DEST = REPO / "src" / "vaelab" / "data" / "embedded"

N_TRAIN_KEPT = 9_000  # split by vaelab: first 8,000 train, last 1,000 valid
N_TEST_KEPT = 1_000

# sha256 of the decompressed official files, as listed in ../shared/data/mnist/README.md and
# matching the canonical .gz downloads (whose own sha256 are in tensorflow_datasets'
# url_checksums/mnist.txt).
SOURCES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
OUTPUTS = {  # output name -> (source name, number of leading examples kept)
    "mnist-mini-train-images-idx3-ubyte.gz": ("train-images-idx3-ubyte", N_TRAIN_KEPT),
    "mnist-mini-train-labels-idx1-ubyte.gz": ("train-labels-idx1-ubyte", N_TRAIN_KEPT),
    "mnist-mini-t10k-images-idx3-ubyte.gz": ("t10k-images-idx3-ubyte", N_TEST_KEPT),
    "mnist-mini-t10k-labels-idx1-ubyte.gz": ("t10k-labels-idx1-ubyte", N_TEST_KEPT),
}


def read_source(folder: Path, name: str) -> bytes:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.exists():
            raw = candidate.read_bytes()
            data = zlib.decompress(raw, wbits=31) if raw[:2] == b"\x1f\x8b" else raw
            digest = hashlib.sha256(data).hexdigest()
            if digest != SOURCES[name]:
                sys.exit(f"{candidate}: sha256 {digest} is not the official {SOURCES[name]}")
            return data
    sys.exit(f"{folder}: neither {name}.gz nor {name} found")


def head(idx: bytes, n: int) -> bytes:
    """The first ``n`` examples of a ubyte IDX file, as a complete IDX file."""
    if idx[:3] != b"\x00\x00\x08":
        raise ValueError("expected a ubyte IDX file")
    ndim = idx[3]
    dims = struct.unpack(f">{ndim}I", idx[4 : 4 + 4 * ndim])
    if dims[0] < n:
        raise ValueError(f"only {dims[0]} examples, asked for {n}")
    per_example = 1
    for d in dims[1:]:
        per_example *= d
    start = 4 + 4 * ndim
    header = idx[:4] + struct.pack(f">{ndim}I", n, *dims[1:])
    return header + idx[start : start + n * per_example]


def gzip_deterministic(data: bytes) -> bytes:
    """RFC 1952 gzip member with a fixed header: no name, mtime 0, XFL 2 (best), OS 255."""
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\xff"
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY)
    body = deflate.compress(data) + deflate.flush()
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--dest", type=Path, default=DEST)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)

    sources = {name: read_source(args.source, name) for name in SOURCES}
    total = 0
    same = True
    for out_name, (src_name, n) in OUTPUTS.items():
        content = head(sources[src_name], n)
        gz = gzip_deterministic(content)
        total += len(gz)
        target = args.dest / out_name
        if args.check:
            identical = target.exists() and target.read_bytes() == gz
            same &= identical
            print(f"{out_name}: {'identical' if identical else 'DIFFERS'}")
        else:
            target.write_bytes(gz)
        print(f"  {out_name}: {n} examples, {len(gz)} bytes")
        print(f"    sha256 (decompressed) {hashlib.sha256(content).hexdigest()}")
        print(f"    sha256 (.gz)          {hashlib.sha256(gz).hexdigest()}")
    print(f"total {total} bytes")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
