"""Weights load by parsing, not sniffing: every real header length reads back (issue 11).

A safetensors file starts with its header length as a little-endian u64. A length of 640,
896, 1152 or 1408 bytes starts with ``0x80 0x02..0x05``, a pickle's PROTO opcode, which a
sniffing check refused. These tests sweep every header length from 2 bytes to 4 KiB (each
residue mod 256 included) and random tensor dicts through the real writer.
"""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.checks import Payload
from vaelab.errors import CheckpointError
from vaelab.io import read_safetensors, save_tensors

_DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def _file_with_header_length(n: int) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A valid, unpadded safetensors file whose header is exactly ``n`` bytes of JSON."""
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    entry = {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    tensors = {"w": t}
    header = {"w": entry}
    text = json.dumps(header, separators=(",", ":"))
    if len(text) > n:  # too short for a tensor: an empty file of tensors
        header, tensors, text = {}, {}, "{}"
    with_meta = json.dumps({**header, "__metadata__": {"p": ""}}, separators=(",", ":"))
    if len(with_meta) <= n:  # fill exactly with a metadata string
        header["__metadata__"] = {"p": "x" * (n - len(with_meta))}
        text = json.dumps(header, separators=(",", ":"))
    else:  # JSON allows trailing whitespace, and the format pads with spaces
        text += " " * (n - len(text))
    raw = text.encode()
    assert len(raw) == n
    data = b"".join(v.numpy().tobytes() for v in tensors.values())
    return struct.pack("<Q", n) + raw + data, tensors


def test_every_header_length_up_to_4_kib_reads_back(tmp_path):
    path = tmp_path / "w.safetensors"
    lengths = range(2, 4097)
    assert {n % 256 for n in lengths} == set(range(256))
    for n in lengths:
        blob, tensors = _file_with_header_length(n)
        path.write_bytes(blob)
        got, _ = read_safetensors(path)
        assert got.keys() == tensors.keys(), n
        for k, v in tensors.items():
            assert torch.equal(got[k], v), n


@pytest.mark.parametrize("n", [640, 896, 1152, 1408])
def test_header_lengths_that_look_like_a_pickle_opcode_load(tmp_path, n):
    blob, tensors = _file_with_header_length(n)
    assert blob[0] == 0x80 and 2 <= blob[1] <= 5  # what the old check took for a pickle
    path = tmp_path / "w.safetensors"
    path.write_bytes(blob)
    assert torch.equal(read_safetensors(path)[0]["w"], tensors["w"])


_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40
).filter(lambda s: s != "__metadata__")


@st.composite
def tensor_dicts(draw):
    n = draw(st.integers(0, 12))
    names = draw(st.lists(_names, min_size=n, max_size=n, unique=True))
    out = {}
    for name in names:
        dtype = draw(st.sampled_from(list(_DTYPES)))
        shape = draw(st.lists(st.integers(0, 5), max_size=4))
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
        t = torch.randn(shape, generator=g, dtype=torch.float64) * 50
        out[name] = t.to(dtype)
    meta = draw(st.one_of(st.none(), st.dictionaries(_names, st.text(max_size=300), max_size=3)))
    return out, meta


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=tensor_dicts())
def test_random_tensor_dicts_round_trip_bit_for_bit(tmp_path_factory, case):
    tensors, meta = case
    path = tmp_path_factory.mktemp("rt") / "t.safetensors"
    save_tensors(path, tensors, metadata=meta)
    got, got_meta = read_safetensors(path)
    assert got_meta == (meta or {})
    assert got.keys() == tensors.keys()
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        # bit for bit: compare the raw bytes (NaN-safe, -0.0-safe)
        assert (
            got[k].numpy().tobytes() == v.numpy().tobytes()
            if v.dtype != torch.bfloat16
            else (torch.equal(got[k].view(torch.int16), v.view(torch.int16)))
        ), k


def test_the_header_lengths_of_real_files_cover_every_residue_the_writer_makes(tmp_path):
    """The library pads its header to a multiple of 8; across names of growing length its
    header lengths take every such residue mod 256, and every one of them loads."""
    path = tmp_path / "t.safetensors"
    residues = set()
    for i in range(1, 400):
        tensors = {"p" * i: torch.ones(3)}
        save_tensors(path, tensors)
        (n,) = struct.unpack("<Q", path.read_bytes()[:8])
        residues.add(n % 256)
        assert torch.equal(read_safetensors(path)[0]["p" * i], tensors["p" * i])
    assert residues == set(range(0, 256, 8))


# ---------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_pickle_is_refused_with_its_own_line_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "ran"
    path = tmp_path / "w.safetensors"
    path.write_bytes(pickle.dumps(Payload(marker), protocol=protocol))
    with pytest.raises(CheckpointError, match="refusing to load a Python pickle") as e:
        read_safetensors(path)
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_a_torch_save_archive_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "w.safetensors"
    torch.save({"w": torch.zeros(2), "p": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="zip archive"):
        read_safetensors(path)
    assert not marker.exists()


def _valid(tmp_path) -> bytes:
    path = tmp_path / "v.safetensors"
    save_tensors(path, {"a": torch.arange(10.0), "b": torch.ones(2, 2)})
    return path.read_bytes()


def _header(blob: bytes) -> tuple[int, dict]:
    (n,) = struct.unpack("<Q", blob[:8])
    return n, json.loads(blob[8 : 8 + n])


def _rewrite(blob: bytes, change) -> bytes:
    n, header = _header(blob)
    change(header)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + blob[8 + n :]


@pytest.mark.parametrize(
    ("name", "mangle", "needle"),
    [
        ("empty", lambda b: b"", "only 0 bytes"),
        ("seven bytes", lambda b: b[:7], "only 7 bytes"),
        ("truncated data", lambda b: b[:-4], "truncated"),
        ("trailing bytes", lambda b: b + b"\0" * 4, "bytes after the last tensor"),
        ("huge length", lambda b: struct.pack("<Q", 2**63) + b[8:], "header length"),
        ("header not JSON", lambda b: struct.pack("<Q", 4) + b"{{{{" + b[12:], "not valid JSON"),
        ("header a list", lambda b: struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (
            "unknown dtype",
            lambda b: _rewrite(b, lambda h: h["a"].update(dtype="F128")),
            "unknown dtype",
        ),
        (
            "shape disagrees",
            lambda b: _rewrite(b, lambda h: h["a"].update(shape=[11])),
            "spans",
        ),
        (
            "negative size",
            lambda b: _rewrite(b, lambda h: h["a"].update(shape=[-10])),
            "invalid shape",
        ),
        (
            "overlapping tensors",
            lambda b: _rewrite(b, lambda h: h["b"].update(data_offsets=h["a"]["data_offsets"])),
            "",
        ),
        (
            "extra key",
            lambda b: _rewrite(b, lambda h: h["a"].update(code="os.system")),
            "dtype, shape and offsets",
        ),
        (
            "metadata not strings",
            lambda b: _rewrite(b, lambda h: h.update(__metadata__={"k": 1})),
            "metadata",
        ),
    ],
)
def test_a_damaged_file_is_refused_with_one_line_naming_the_cause(tmp_path, name, mangle, needle):
    path = tmp_path / "w.safetensors"
    path.write_bytes(mangle(_valid(tmp_path)))
    with pytest.raises(CheckpointError) as e:
        read_safetensors(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    assert needle in message, message


def test_the_guard_accepts_what_the_format_allows(tmp_path):
    """Zero-size tensors, no tensors at all, padding spaces and a null metadata are valid."""
    path = tmp_path / "w.safetensors"
    header = {
        "__metadata__": None,
        "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},
        "v": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
    }
    text = json.dumps(header).encode() + b"   "
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes([1, 2, 3]))
    tensors, meta = read_safetensors(path)
    assert meta == {} and tensors["e"].shape == (0, 3)
    assert tensors["v"].tolist() == [1, 2, 3]
    path.write_bytes(struct.pack("<Q", 2) + b"{}")
    assert read_safetensors(path) == ({}, {})


def test_only_regular_files_are_read(tmp_path):
    import os

    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_safetensors(fifo)  # would block forever if opened
    link = tmp_path / "zero.safetensors"
    link.symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_safetensors(link)
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_safetensors(tmp_path)


def test_a_numpy_file_is_not_taken_for_weights(tmp_path):
    path = tmp_path / "w.safetensors"
    np.save(path.with_suffix(".npy"), np.zeros(3))
    path.write_bytes(path.with_suffix(".npy").read_bytes())
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_safetensors(path)
