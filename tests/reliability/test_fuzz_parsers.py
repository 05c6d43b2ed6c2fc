"""Fuzzing the parsers a stranger's file reaches: safetensors weights and checkpoints, config
files, a saved model's config.json.

Each must answer any bytes with its own error (``CheckpointError`` / ``ConfigError``, one line
naming the file) and nothing else: no other exception, no hang, no allocation beyond the file's
size. Quick variants (about 200 examples) run by default; large ones under ``-m slow``. The IDX,
gzip, .npy/.npz/.csv parsers are fuzzed in ``tests/data``.
"""

from __future__ import annotations

import json
import shutil
import struct
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from tests.reliability import harness
from vaelab.config import load_file
from vaelab.errors import CheckpointError, ConfigError, VaelabError
from vaelab.io import load_tensors, read_safetensors
from vaelab.models import VAE
from vaelab.models.base import SavableModel
from vaelab.training.checkpoint import load_checkpoint, read_checkpoint
from vaelab.training.state import TrainState

_COMMON = dict(
    database=None,  # no replay of stored examples: every run is a fresh sample
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_FAST = settings(max_examples=200, **_COMMON)
_SLOW = settings(max_examples=4000, **_COMMON)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _one_line(e: BaseException, path: Path) -> None:
    msg = str(e)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg


# --------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------
DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "X"]

_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
_json = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _tensor_entry(draw):
    shape = draw(
        st.one_of(
            st.lists(st.integers(0, 4), max_size=3),
            st.lists(st.integers(-3, 2**62), max_size=4),
        )
    )
    offsets = draw(
        st.one_of(
            st.tuples(st.integers(0, 64), st.integers(0, 64)).map(list),
            st.lists(st.integers(-(2**63), 2**64), max_size=3),
        )
    )
    entry = {"dtype": draw(st.sampled_from(DTYPES)), "shape": shape, "data_offsets": offsets}
    if draw(st.booleans()):
        entry = draw(st.dictionaries(st.sampled_from(list(entry)), _json, max_size=3)) or entry
    return entry


@st.composite
def safetensors_like(draw) -> bytes:
    """A header that looks like safetensors (often subtly wrong) and a payload."""
    header = draw(st.dictionaries(st.text(max_size=8), _tensor_entry(), max_size=3))
    if draw(st.booleans()):
        header["__metadata__"] = draw(
            st.one_of(st.dictionaries(st.text(max_size=6), _json_scalar, max_size=3), _json)
        )
    text = json.dumps(header).encode()
    n = draw(
        st.one_of(
            st.just(len(text)),
            st.integers(0, len(text) + 8),
            st.integers(0, 2**64 - 1),
        )
    )
    payload = draw(st.binary(max_size=96))
    return struct.pack("<Q", n) + text + payload


def _valid_file(metadata: dict[str, str] | None = None) -> bytes:
    return st_save(
        {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3, 1).long()},
        metadata=metadata,
    )


@st.composite
def mutated(draw, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "zero-len"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[:8] = struct.pack("<Q", draw(st.integers(0, len(data))))
    return bytes(data)


_safetensors_inputs = st.one_of(
    st.binary(max_size=200),
    safetensors_like(),
    mutated(_valid_file()),
    mutated(_valid_file({"vaelab_training_state": '{"version": 1}'})),
)


def _check_safetensors(fuzz_dir: Path, data: bytes) -> None:
    path = fuzz_dir / "weights.safetensors"
    path.write_bytes(data)
    try:
        tensors, metadata = read_safetensors(path)
    except CheckpointError as e:
        _one_line(e, path)
        with pytest.raises(CheckpointError):
            load_tensors(path)
        return
    assert isinstance(tensors, dict) and isinstance(metadata, dict)
    assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items())
    # nothing larger than the file itself was made from it
    assert sum(v.numel() * v.element_size() for v in tensors.values()) <= len(data)
    assert load_tensors(path).keys() == tensors.keys()


@_FAST
@given(data=_safetensors_inputs)
def test_fuzz_read_safetensors(fuzz_dir, data):
    _check_safetensors(fuzz_dir, data)


@pytest.mark.slow
@_SLOW
@given(data=_safetensors_inputs)
def test_fuzz_read_safetensors_slow(fuzz_dir, data):
    _check_safetensors(fuzz_dir, data)


def test_valid_and_mutated_examples_behave(fuzz_dir):
    """The seeds of the strategies: a valid file reads back; known corruptions are refused."""
    path = fuzz_dir / "seed.safetensors"
    path.write_bytes(_valid_file({"k": "v"}))
    tensors, metadata = read_safetensors(path)
    assert metadata == {"k": "v"} and tensors["a"].shape == (2, 3)
    for bad in [b"", b"\x80\x04", struct.pack("<Q", 2**63) + b"{}", struct.pack("<Q", 2) + b"[]"]:
        path.write_bytes(bad)
        with pytest.raises(CheckpointError):
            read_safetensors(path)


def test_deeply_nested_safetensors_header_is_refused(fuzz_dir):
    path = fuzz_dir / "deep.safetensors"
    header = b"[" * 100_000 + b"]" * 100_000
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError):
        read_safetensors(path)


# --------------------------------------------------------------------------------------------
# training checkpoints
# --------------------------------------------------------------------------------------------
_meta_text = st.one_of(
    st.text(max_size=40),
    _json.map(json.dumps),
    st.fixed_dictionaries(
        {"version": st.sampled_from([1, 1, 1, 2, "1", None, True])},
        optional={"state": _json, "param_groups": _json},
    ).map(json.dumps),
)


@st.composite
def checkpoint_like(draw) -> bytes:
    """A readable safetensors file shaped like a checkpoint of ``torch.nn.Linear(3, 1)``."""
    metadata = draw(
        st.one_of(
            st.dictionaries(st.text(max_size=6), st.text(max_size=10), max_size=2),
            _meta_text.map(lambda m: {"vaelab_training_state": m}),
        )
    )
    tensors = {}
    if draw(st.integers(0, 4)):  # usually weights that fit the model
        tensors = {"model/weight": torch.zeros(1, 3), "model/bias": torch.zeros(1)}
    names = draw(
        st.lists(
            st.sampled_from(
                [
                    "model/weight",
                    "model/extra",
                    "optim/0/step",
                    "optim/0/exp_avg",
                    "optim/x/y",
                    "optim/1",
                    "rng/torch",
                    "rng/data",
                    "other",
                ]
            ),
            max_size=4,
            unique=True,
        )
    )
    for n in names:
        tensors[n] = torch.zeros(draw(st.integers(0, 3)))
    return st_save(tensors, metadata=metadata)


def _check_read_checkpoint(fuzz_dir: Path, data: bytes) -> None:
    path = fuzz_dir / "checkpoint.safetensors"
    path.write_bytes(data)
    try:
        meta, tensors = read_checkpoint(path)
    except CheckpointError as e:
        _one_line(e, path)
        return
    assert isinstance(meta, dict) and meta.get("version") == 1
    assert isinstance(tensors, dict)


_checkpoint_inputs = st.one_of(checkpoint_like(), _safetensors_inputs)


@_FAST
@given(data=_checkpoint_inputs)
def test_fuzz_read_checkpoint(fuzz_dir, data):
    _check_read_checkpoint(fuzz_dir, data)


@pytest.mark.slow
@_SLOW
@given(data=_checkpoint_inputs)
def test_fuzz_read_checkpoint_slow(fuzz_dir, data):
    _check_read_checkpoint(fuzz_dir, data)


@_FAST
@given(data=checkpoint_like())
def test_fuzz_load_checkpoint_into_a_model(fuzz_dir, data):
    path = fuzz_dir / "restore.safetensors"
    path.write_bytes(data)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters())
    try:
        state = load_checkpoint(path, model, optimizer, steps_per_epoch=1, epochs=1)
    except CheckpointError as e:
        _one_line(e, path)
        return
    assert isinstance(state, TrainState) and isinstance(state.rng, dict)


# --------------------------------------------------------------------------------------------
# config files
# --------------------------------------------------------------------------------------------
_YAML_TOKENS = [
    "train:",
    "model:",
    "data:",
    " lr:",
    " epochs:",
    " hidden:",
    "\n",
    "  ",
    "- ",
    ": ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "&a ",
    "*a",
    "!!python/object/apply:os.system ",
    "!!binary ",
    "!!str ",
    "!!set ",
    "!!omap ",
    "? ",
    "1e-3",
    "3",
    "-1",
    ".nan",
    ".inf",
    "null",
    "true",
    "~",
    "#",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "|\n",
    ">\n",
    "\t",
    "\x00",
    "\ufeff",
    "2001-01-01",
    "0x1F",
    "0o17",
    "1_000",
    "<<: *a\n",
]
_TAGS = [
    "!!python/object/apply:os.system ",
    "!!binary ",
    "!!str ",
    "!!int ",
    "!!float ",
    "!!set ",
    "!!omap ",
    "!!timestamp ",
    "!!bool ",
]
_yaml_like = st.lists(st.sampled_from(_YAML_TOKENS), max_size=30).map("".join)
_yaml_tagged = st.lists(st.sampled_from(_YAML_TOKENS + _TAGS * 3), max_size=30).map("".join)
_config_bytes = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=120).map(lambda s: s.encode("utf-8", "surrogatepass")),
    _yaml_like.map(str.encode),
    _json.map(lambda v: json.dumps(v).encode()),
)
_SUFFIXES = st.sampled_from([".yaml", ".yml", ".json"])


def _check_load_file(fuzz_dir: Path, data: bytes, suffix: str) -> None:
    path = fuzz_dir / f"config{suffix}"
    path.write_bytes(data)
    try:
        out = load_file(path)
    except ConfigError as e:
        _one_line(e, path)
        return
    assert isinstance(out, dict)


@_FAST
@given(data=_config_bytes, suffix=_SUFFIXES)
def test_fuzz_load_config_file(fuzz_dir, data, suffix):
    _check_load_file(fuzz_dir, data, suffix)


@pytest.mark.slow
@_SLOW
@given(data=_config_bytes, suffix=_SUFFIXES)
def test_fuzz_load_config_file_slow(fuzz_dir, data, suffix):
    _check_load_file(fuzz_dir, data, suffix)


@_FAST
@given(data=_yaml_tagged.map(str.encode))
def test_fuzz_load_config_file_with_yaml_tags(fuzz_dir, data):
    _check_load_file(fuzz_dir, data, ".yaml")


@pytest.mark.parametrize(
    "text",
    ["!!int a", "!!float a", "!!float", "!!int", "train: {lr: !!float fast}", "!!timestamp x"],
)
def test_malformed_tagged_yaml_scalar_is_a_config_error(fuzz_dir, text):
    path = fuzz_dir / "tagged.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not a valid config file"):
        load_file(path)


@pytest.mark.parametrize(
    "suffix, text",
    [(".yaml", "[" * 5_000 + "]" * 5_000), (".json", "[" * 100_000 + "]" * 100_000)],
)
def test_deeply_nested_config_file_is_refused(fuzz_dir, suffix, text):
    path = fuzz_dir / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_file(path)


def test_config_with_a_non_string_key_is_refused(fuzz_dir):
    from vaelab.config import resolve

    path = fuzz_dir / "intkey.yaml"
    path.write_text("{1: 2, model_clas: VAE}\n")
    with pytest.raises(ConfigError, match="unknown config key"):
        resolve(path)


# --------------------------------------------------------------------------------------------
# a saved model's config.json
# --------------------------------------------------------------------------------------------
_FIELDS = [
    "data_shape",
    "latent_dim",
    "hidden",
    "activation",
    "arch",
    "conv_channels",
    "likelihood",
    "gaussian_variance",
    "gaussian_std",
    "gaussian_min_std",
    "prior_std",
    "learn_prior_std",
    "min_posterior_std",
    "latent_dims",
    "n_components",
    "data_dim",
    "min_std",
    "bogus",
]
_small = st.one_of(
    st.integers(-2, 12),
    st.lists(st.integers(-1, 12), max_size=3),
    st.sampled_from(["relu", "tanh", "mlp", "conv", "bernoulli", "gaussian", "scalar", "x"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
_model_config = st.fixed_dictionaries(
    {
        "class": st.sampled_from(
            [
                "VAE",
                "VAE",
                "HierarchicalVAE",
                "LinearGaussian",
                "DiscreteLatent",
                "os.system",
                "SavableModel",
            ]
        ),
        "format_version": st.sampled_from([1, 1, 1, 2, "1", None]),
        "config": st.dictionaries(st.sampled_from(_FIELDS), _small, max_size=5),
    }
).map(lambda d: json.dumps(d).encode())
_config_json_bytes = st.one_of(
    st.binary(max_size=120), _json.map(lambda v: json.dumps(v).encode()), _model_config
)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    return VAE(latent_dim=2, hidden=(4,), data_shape=(1, 4, 4)).save(
        tmp_path_factory.mktemp("saved") / "model"
    )


def _check_model_load(saved_model: Path, fuzz_dir: Path, data: bytes) -> None:
    d = fuzz_dir / "model"
    if not d.exists():
        shutil.copytree(saved_model, d)
    (d / "config.json").write_bytes(data)
    try:
        model = SavableModel.load(d)
    except VaelabError as e:  # one line at the command line
        assert "\n" not in str(e), str(e)
        return
    assert isinstance(model, SavableModel)


@_FAST
@given(data=_config_json_bytes)
def test_fuzz_model_load_config_json(saved_model, fuzz_dir, data):
    _check_model_load(saved_model, fuzz_dir, data)


@pytest.mark.slow
@_SLOW
@given(data=_config_json_bytes)
def test_fuzz_model_load_config_json_slow(saved_model, fuzz_dir, data):
    _check_model_load(saved_model, fuzz_dir, data)


def test_config_json_with_absurd_sizes_is_refused_without_allocating(saved_model, tmp_path):
    d = shutil.copytree(saved_model, tmp_path / "model")
    meta = json.loads((d / "config.json").read_text())
    meta["config"]["data_shape"] = [1, 100_000, 100_000]
    meta["config"]["hidden"] = [1000]
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="config.json|model.safetensors"):
        SavableModel.load(d)


def test_config_json_describing_an_impossible_model_names_the_file(saved_model, tmp_path):
    d = shutil.copytree(saved_model, tmp_path / "model")
    (d / "config.json").write_text(
        json.dumps({"class": "HierarchicalVAE", "format_version": 1, "config": {"data_shape": []}})
    )
    with pytest.raises(CheckpointError, match="config.json"):
        SavableModel.load(d)


def test_harness_constants_match_the_data():
    """(Guards the kill harness's arithmetic: mnist-mini has 8000 training images.)"""
    from vaelab.data import load_split

    n = len(load_split("mnist-mini", "train"))
    assert -(-n // 256) == harness.STEPS_PER_EPOCH  # ceil(n / batch 256)
