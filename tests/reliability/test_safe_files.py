"""Safe files at the command line: a run folder from a stranger cannot run code.

Weights are safetensors, everything else JSON or YAML through a safe loader. A pickle (raw or
inside a ``torch.save`` zip), a tampered safetensors header, a config naming a class that is
not a vaelab model, or a YAML file with a ``!!python/object`` tag is refused with one line and
exit status 2. The pickle payloads here would create a marker file if unpickled; it must never
appear.
"""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import torch

from tests.reliability import harness
from tests.reliability.checks import (
    Payload,
    assert_one_line_error,
    assert_unchanged,
    pickle_payload,
    run_cli,
    snapshot,
)

REFUSED_PICKLE = "refusing to load a Python pickle; vaelab reads weights only as safetensors"


def _commands(run, tmp_path) -> dict[str, list[str]]:
    return {
        "evaluate": ["evaluate", str(run), "--k", "5", "--n", "10"],
        "sample": ["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")],
        "reconstruct": ["reconstruct", str(run), "-n", "4", "--out", str(tmp_path / "r.png")],
        "interpolate": ["interpolate", str(run), "--pairs", "2", "--out", str(tmp_path / "i.png")],
        "resume": ["train", "--out", str(run), "--resume", *harness.train_args(2)],
    }


READERS = ["evaluate", "sample", "reconstruct", "interpolate"]


def test_the_payload_is_live(tmp_path):
    """Sanity: the payload really runs code when unpickled, so its absence below means
    something."""
    marker = tmp_path / "ran"
    pickle.loads(pickle_payload(marker))
    assert marker.exists()


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_weights_that_are_a_pickle_are_refused_and_never_run(run, tmp_path, capsys, command, kind):
    marker = tmp_path / "pwned"
    weights = run / "model.safetensors"
    if kind == "pickle":
        weights.write_bytes(pickle_payload(marker))
        needle = REFUSED_PICKLE
    else:
        torch.save({"w": torch.zeros(2), "p": Payload(marker)}, weights)
        needle = "zip archive (torch.save output, which holds a pickle)"
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)[command])
    assert code == 2
    assert_one_line_error(err, str(weights), needle)
    assert not marker.exists()
    assert_unchanged(before, tmp_path)


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_resume_from_a_checkpoint_that_is_a_pickle_is_refused(run, tmp_path, capsys, kind):
    marker = tmp_path / "pwned"
    ckpt = run / "checkpoint.safetensors"
    if kind == "pickle":
        ckpt.write_bytes(pickle_payload(marker))
        needle = REFUSED_PICKLE
    else:
        torch.save({"p": Payload(marker)}, ckpt)
        needle = "zip archive"
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)["resume"])
    assert code == 2
    assert_one_line_error(err, str(ckpt), needle)
    assert not marker.exists()
    assert_unchanged(before, tmp_path)


def test_resume_never_unpickles_the_model_file(run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    (run / "model.safetensors").write_bytes(pickle_payload(marker))
    run_cli(capsys, _commands(run, tmp_path)["resume"])
    assert not marker.exists()


def test_resume_refuses_a_run_whose_model_file_is_a_pickle(run, tmp_path, capsys):
    weights = run / "model.safetensors"
    weights.write_bytes(pickle_payload(tmp_path / "pwned"))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)["resume"])
    assert code == 2
    assert_one_line_error(err, str(weights), REFUSED_PICKLE)
    assert_unchanged(before, tmp_path)


def _tamper_header_length(path) -> None:
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 10**12) + data[8:])


def _tamper_header_json(path) -> None:
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    first = next(k for k in header if k != "__metadata__")
    header[first]["data_offsets"][1] += 10**9  # claims bytes the file does not have
    text = json.dumps(header).encode()
    text += b" " * (n - len(text)) if len(text) <= n else b""
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(data[8 + n :]))


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


TAMPERS = {
    "header-length": (_tamper_header_length, "header length"),
    "header-offsets": (_tamper_header_json, "corrupt safetensors file"),
    "truncated": (_truncate, "truncated"),
}


@pytest.mark.parametrize("command", ["evaluate", "sample"])
@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampered_weights_are_refused(run, tmp_path, capsys, command, tamper):
    change, needle = TAMPERS[tamper]
    weights = run / "model.safetensors"
    change(weights)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)[command])
    assert code == 2
    line = assert_one_line_error(err, str(weights))
    assert needle in line or "corrupt" in line or "truncated" in line, line
    assert_unchanged(before, tmp_path)


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_resume_from_a_tampered_checkpoint_is_refused(run, tmp_path, capsys, tamper):
    change, _ = TAMPERS[tamper]
    ckpt = run / "checkpoint.safetensors"
    change(ckpt)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)["resume"])
    assert code == 2
    line = assert_one_line_error(err, str(ckpt))
    assert "corrupt" in line or "truncated" in line or "tampered" in line, line
    assert_unchanged(before, tmp_path)


def _rename_class(run, section: str, name: str) -> None:
    meta = json.loads((run / "config.json").read_text())
    if section == "class":
        meta["class"] = name
    else:
        meta["run"]["model_class"] = name
    (run / "config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("command", [*READERS, "resume"])
@pytest.mark.parametrize("name", ["os.system", "SavableModel", "LatentVariableModel"])
def test_config_naming_an_unknown_class_is_refused(run, tmp_path, capsys, command, name):
    """A class path, or one of vaelab's own abstract bases (only a class with its own config
    class is registered, so a base is as unknown as ``os.system``)."""
    _rename_class(run, "class", name)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)[command])
    assert code == 2
    assert_one_line_error(err, str(run / "config.json"), f"unknown model class '{name}'")
    assert_unchanged(before, tmp_path)


@pytest.mark.parametrize("command", [*READERS, "resume"])
def test_config_naming_a_model_no_run_trains_is_refused(run, tmp_path, capsys, command):
    """LinearGaussian is a concrete, loadable model, but not one a run's commands can use."""
    _rename_class(run, "class", "LinearGaussian")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)[command])
    assert code == 2
    assert_one_line_error(err, str(run), "LinearGaussian")
    assert_unchanged(before, tmp_path)


@pytest.mark.parametrize("command", [*READERS, "resume"])
def test_config_json_nested_too_deeply_is_one_line(run, tmp_path, capsys, command):
    (run / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)[command])
    assert code == 2
    assert_one_line_error(err, str(run / "config.json"), "nested too deeply")
    assert_unchanged(before, tmp_path)


def test_resume_with_a_run_config_naming_an_unknown_class_is_refused(run, tmp_path, capsys):
    _rename_class(run, "run", "os.system")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)["resume"])
    assert code == 2
    assert_one_line_error(err, "model_class", "'os.system'")
    assert_unchanged(before, tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        "train: !!python/object/apply:builtins.open [{marker}, w]\n",
        "model: !!python/object/new:builtins.open [{marker}, w]\n",
        "!!python/object/apply:builtins.open [{marker}, w]\n",
        "train:\n  seed: !!python/name:os.system\n",
    ],
)
def test_yaml_config_with_a_python_tag_is_refused_and_never_run(tmp_path, capsys, text):
    marker = tmp_path / "pwned"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(text.format(marker=json.dumps(str(marker))))
    out = tmp_path / "run"
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, ["train", "--config", str(cfg), "--out", str(out)])
    assert code == 2
    assert_one_line_error(err, str(cfg), "not a valid config file", "python/")
    assert not marker.exists()
    assert not out.exists()
    assert_unchanged(before, tmp_path)


def test_pickled_array_dataset_is_refused_and_never_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    data = tmp_path / "evil.npy"
    arr = np.empty(3, dtype=object)
    arr[:] = [Payload(marker), 1, 2]
    np.save(data, arr, allow_pickle=True)
    before = snapshot(tmp_path)
    code, _, err = run_cli(
        capsys, ["train", "--dataset", str(data), "--out", str(tmp_path / "run"), "--quiet"]
    )
    assert code == 2
    assert_one_line_error(err, str(data), "pickle")
    assert not marker.exists()
    assert_unchanged(before, tmp_path)


def _rewrite_checkpoint(path, change_meta=None, change_tensors=None) -> None:
    """Re-save a checkpoint as a valid safetensors file with altered JSON or tensor names."""
    from safetensors.torch import save_file

    from vaelab.training.checkpoint import read_checkpoint

    meta, tensors = read_checkpoint(path)
    if change_meta:
        meta = change_meta(meta)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    if change_tensors:
        tensors = change_tensors(tensors)
    save_file(tensors, str(path), metadata={"vaelab_training_state": json.dumps(meta)})


def _without(d, key):
    return {k: v for k, v in d.items() if k != key}


_TAMPERED_CONTENTS = {
    "no-param-groups": (lambda m: _without(m, "param_groups"), None),
    "param-groups-garbage": (lambda m: {**m, "param_groups": [{"lr": "x"}]}, None),
    "extra-model-tensor": (None, lambda t: {**t, "model/evil": torch.zeros(1)}),
    "no-state": (lambda m: _without(m, "state"), None),
    "state-not-a-mapping": (lambda m: {**m, "state": "x"}, None),
    "state-epoch-a-string": (
        lambda m: {**m, "state": {**m["state"], "epoch": "zero", "done": False}},
        None,
    ),
    "optim-name-without-key": (None, lambda t: {**t, "optim/1": torch.zeros(1)}),
    "optim-name-not-an-index": (None, lambda t: {**t, "optim/x/step": torch.zeros(1)}),
    "rng-missing": (None, lambda t: {k: v for k, v in t.items() if not k.startswith("rng/")}),
    # right types, wrong values: each would steer the run (uphill, too long, ...) if accepted
    "lr-scale-negative": (lambda m: _state(m, lr_scale=-1.0), None),
    "lr-scale-not-from-rollbacks": (lambda m: _state(m, lr_scale=0.5), None),
    "epoch-negative": (lambda m: _state(m, epoch=-3), None),
    "epoch-beyond-the-run": (lambda m: _state(m, epoch=50, global_step=50 * 32, done=True), None),
    "since-best-beyond-epoch": (lambda m: _state(m, epochs_since_best=9), None),
    "stopped-early-not-done": (lambda m: _state(m, stopped_early=True, done=False), None),
    "betas-out-of-range": (lambda m: _group(m, betas=[5.0, 5.0]), None),
    "maximize": (lambda m: _group(m, maximize=True), None),
    "weight-decay": (lambda m: _group(m, weight_decay=-1.0), None),
    "moment-wrong-shape": (None, lambda t: _tensor(t, "exp_avg", lambda v: v.reshape(-1)[:1])),
    "second-moment-negative": (None, lambda t: _tensor(t, "exp_avg_sq", lambda v: v - 1)),
    "moment-nan": (None, lambda t: _tensor(t, "exp_avg", lambda v: v * float("nan"))),
    "step-negative": (None, lambda t: _tensor(t, "step", lambda v: v - 10**6)),
    "weight-nan": (None, lambda t: _tensor(t, "model/", lambda v: v * float("nan"))),
}


def _state(meta, **changes):
    return {**meta, "state": {**meta["state"], **changes}}


def _group(meta, **changes):
    return {**meta, "param_groups": [{**meta["param_groups"][0], **changes}]}


def _tensor(tensors, part: str, change):
    """Change the first tensor whose name holds ``part``."""
    name = next(k for k in sorted(tensors) if part in k and tensors[k].is_floating_point())
    return {**tensors, name: change(tensors[name]).contiguous()}


@pytest.mark.parametrize(
    "variant",
    list(_TAMPERED_CONTENTS),
)
def test_resume_from_a_checkpoint_with_tampered_contents_is_refused(run, tmp_path, capsys, variant):
    change_meta, change_tensors = _TAMPERED_CONTENTS[variant]
    ckpt = run / "checkpoint.safetensors"
    _rewrite_checkpoint(ckpt, change_meta, change_tensors)
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, _commands(run, tmp_path)["resume"])
    assert code == 2
    assert_one_line_error(err, str(ckpt))
    assert_unchanged(before, tmp_path)
