"""No work is lost to a run folder: vaelab removes or writes over only the files it wrote.

A run folder carries ``vaelab-run.json`` (written first: a run id and the manifest of vaelab's
files). ``--overwrite``, and ``--resume`` of a run killed before its first checkpoint, remove
listed files only; a folder without the marker that is not empty is refused; ``--resume``
without a checkpoint never deletes anything. Each refusal is one line, exit status 2, with
every file in the folder byte-identical afterwards; each guard is also shown accepting what
it must.
"""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import pytest

from tests.reliability import harness
from tests.reliability.checks import (
    assert_one_line_error,
    assert_unchanged,
    run_cli,
    snapshot,
)
from vaelab.cli import main
from vaelab.runs import layout
from vaelab.runs.ownership import MARKER, read_manifest

QUICK = harness.train_args(epochs=1)


def _user_files(folder: Path) -> dict[str, bytes]:
    """A user's own files in ``folder``: a figure, notes in a subfolder, their own TensorBoard
    logs, a hidden file; returns them (relative name -> bytes)."""
    files = {
        "figure.png": b"\x89PNG my figure",
        "notes/todo.txt": b"compare with the baseline",
        "tensorboard/events.out.tfevents.1.mine": b"my own events",
        ".secret": b"keep",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def _assert_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name


def _huggingface_folder(root: Path) -> Path:
    """A model folder from another library: weights, a config, a picture, TensorBoard logs."""
    d = root / "hf-model"
    (d / "tensorboard").mkdir(parents=True)
    (d / "config.json").write_text('{"architectures": ["BertModel"]}')
    (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (d / "picture.png").write_bytes(b"\x89PNG a picture")
    (d / "tensorboard" / "events.out.tfevents.123.host").write_bytes(b"their logs")
    return d


# --------------------------------------------------------------------------------------------
# refused: one line, exit 2, every byte kept
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--overwrite", "--resume", None])
def test_a_folder_that_is_not_a_vaelab_run_is_never_trained_over(tmp_path, capsys, flag):
    folder = _huggingface_folder(tmp_path)
    before = snapshot(tmp_path)
    argv = ["train", "--out", str(folder), *([flag] if flag else []), *QUICK]
    code, _, err = run_cli(capsys, argv)
    assert code == 2
    line = assert_one_line_error(err, str(folder), "config.json", "picture.png")
    assert "not a vaelab run" in line
    assert_unchanged(before, tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["config.json", "model.safetensors", "picture.png", "tensorboard"]
    )


def test_a_home_folder_with_a_config_json_is_refused(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text("{}")
    (home / "holiday.png").write_bytes(b"\x89PNG")
    (home / "tensorboard").mkdir()
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, ["train", "--out", str(home), "--overwrite", *QUICK])
    assert code == 2
    assert_one_line_error(err, str(home), "not a vaelab run directory", "refusing to overwrite")
    assert_unchanged(before, tmp_path)
    assert (home / "tensorboard").is_dir()


def test_resume_of_a_finished_run_whose_checkpoint_is_gone_deletes_nothing(run, tmp_path, capsys):
    mine = _user_files(run)
    (run / "checkpoint.safetensors").unlink()
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, ["train", "--out", str(run), "--resume", *QUICK])
    assert code == 2
    assert_one_line_error(
        err, str(run), "no checkpoint.safetensors to resume from", "it holds", "config.json",
        "Nothing was changed", "--overwrite",
    )  # fmt: skip
    assert_unchanged(before, tmp_path)
    _assert_files(run, mine)


def test_a_users_file_with_a_name_vaelab_would_write_is_never_written_over(run, tmp_path, capsys):
    """The finished run made no pictures (no test evaluation); the user put their own
    samples.png there. Asking for the evaluation now would write samples.png: refused."""
    (run / "samples.png").write_bytes(b"\x89PNG my samples")
    before = snapshot(tmp_path)
    argv = ["train", "--out", str(run), "--resume", *QUICK, "--set", "train.final_eval_n=20"]
    code, _, err = run_cli(capsys, argv)
    assert code == 2
    assert_one_line_error(err, str(run / "samples.png"), "vaelab did not write it", MARKER)
    assert (run / "samples.png").read_bytes() == b"\x89PNG my samples"
    assert_unchanged(before, tmp_path)


@pytest.mark.parametrize("listed", ["../outside.txt", "/etc/hostname", "notes/todo.txt", "."])
def test_a_tampered_manifest_cannot_point_outside_the_run(run, tmp_path, capsys, listed):
    (tmp_path / "outside.txt").write_text("precious")
    _user_files(run)
    meta = json.loads((run / MARKER).read_text())
    meta["files"].append(listed)
    (run / MARKER).write_text(json.dumps(meta))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, ["train", "--out", str(run), "--overwrite", *QUICK])
    assert code == 2
    assert_one_line_error(err, str(run / MARKER), "tampered", "nothing was changed")
    assert_unchanged(before, tmp_path)


def test_a_users_file_named_like_a_run_file_blocks_overwrite_before_anything_goes(
    run, tmp_path, capsys
):
    meta = json.loads((run / MARKER).read_text())
    meta["files"].remove("metrics.jsonl")  # so metrics.jsonl is now the user's
    (run / MARKER).write_text(json.dumps(meta))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, ["train", "--out", str(run), "--overwrite", *QUICK])
    assert code == 2
    assert_one_line_error(err, str(run / "metrics.jsonl"), "vaelab did not write it")
    assert_unchanged(before, tmp_path)


# --------------------------------------------------------------------------------------------
# accepted: vaelab's files go, the user's stay byte for byte
# --------------------------------------------------------------------------------------------
def test_overwrite_replaces_only_the_files_vaelab_wrote(run, tmp_path, capsys):
    mine = _user_files(run)
    old_id = read_manifest(run).run_id
    old_weights = (run / "model.safetensors").read_bytes()
    code, _, err = run_cli(
        capsys, ["train", "--out", str(run), "--overwrite", *QUICK, "--seed", "3"]
    )
    assert code == 0, err
    _assert_files(run, mine)
    assert read_manifest(run).run_id != old_id
    assert (run / "model.safetensors").read_bytes() != old_weights
    assert json.loads((run / "config.json").read_text())["run"]["train"]["seed"] == 3


def test_resume_after_a_kill_before_the_first_checkpoint_keeps_the_users_files(
    reference_run, tmp_path, capsys
):
    """A marked run that holds only what a run writes before its first checkpoint (config and
    initial weights) starts over; the user's files in it stay."""
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *harness.TRAIN_ARGS]) == 0
    for name in ("checkpoint.safetensors", "metrics.jsonl"):
        (run / name).unlink()
    mine = _user_files(run)
    code, _, err = run_cli(capsys, ["train", "--out", str(run), "--resume", *harness.TRAIN_ARGS])
    assert code == 0, err
    assert "starting the run from the beginning" in err
    _assert_files(run, mine)
    assert harness.differences(reference_run.run_dir, run) == []


def test_resume_after_a_kill_right_after_the_marker_starts_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / MARKER).write_text(
        json.dumps({"format": "vaelab-run", "version": 1, "run_id": "x", "files": []})
    )
    (run / ".vaelab-run.lock").write_text("999999\n")  # a dead writer's PID
    code, _, err = run_cli(capsys, ["train", "--out", str(run), "--resume", *QUICK])
    assert code == 0, err
    assert (run / "checkpoint.safetensors").is_file()


@pytest.mark.parametrize("flag", [None, "--overwrite", "--resume"])
def test_an_empty_folder_is_accepted(tmp_path, capsys, flag):
    run = tmp_path / "empty"
    run.mkdir()
    code, _, err = run_cli(capsys, ["train", "--out", str(run), *([flag] if flag else []), *QUICK])
    assert code == 0, err
    assert set(read_manifest(run).files) >= set(layout.TRAINER_FILES)


def test_a_run_made_before_runs_were_marked_resumes_and_keeps_the_users_files(
    run, tmp_path, capsys
):
    (run / MARKER).unlink()  # as vaelab wrote runs until now
    mine = _user_files(run)
    code, _, err = run_cli(
        capsys, ["train", "--out", str(run), "--resume", *harness.train_args(epochs=2)]
    )
    assert code == 0, err
    _assert_files(run, mine)
    listed = set(read_manifest(run).files)
    assert listed >= set(layout.TRAINER_FILES) and "figure.png" not in listed


def test_default_run_names_are_unique_within_one_second(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(layout.time, "strftime", lambda fmt: "20250101-120000")
    for _ in range(2):
        code, _, err = run_cli(capsys, ["train", *QUICK])
        assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "mnist-mini-20250101-120000",
        "mnist-mini-20250101-120000-2",
    ]


def test_a_default_run_that_fails_to_start_leaves_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_cli(capsys, ["train", *QUICK, "--dataset", str(tmp_path / "nope.npy")])
    assert code == 2
    assert list((tmp_path / "runs").iterdir()) == []


def test_claim_default_run_dir_makes_a_new_folder_each_time(tmp_path, monkeypatch):
    monkeypatch.setattr(layout.time, "strftime", lambda fmt: "T")
    made = [layout.claim_default_run_dir(tmp_path, "data") for _ in range(3)]
    assert [p.name for p in made] == ["data-T", "data-T-2", "data-T-3"]
    assert all(p.is_dir() for p in made)


class _EventWriter:
    """Stands in for TensorBoard's SummaryWriter (not installed here): it writes an event
    file named as TensorBoard names them."""

    def __init__(self, logdir: str):
        Path(logdir).mkdir(parents=True, exist_ok=True)
        (Path(logdir) / f"events.out.tfevents.{time.time_ns()}.host.1").write_bytes(b"events")

    def add_scalar(self, *args):
        pass

    def flush(self):
        pass

    def close(self):
        pass


@pytest.fixture
def tensorboard(monkeypatch):
    module = types.SimpleNamespace(SummaryWriter=_EventWriter)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)


def test_overwrite_removes_vaelabs_event_files_and_keeps_the_users(tmp_path, capsys, tensorboard):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *QUICK]) == 0
    assert "tensorboard/" in read_manifest(run).files
    (ours,) = (run / "tensorboard").iterdir()
    (run / "tensorboard" / "my-notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, ["train", "--out", str(run), "--overwrite", *QUICK])
    assert code == 0, err
    assert not ours.exists()  # the old run's events went with it
    assert (run / "tensorboard" / "my-notes.txt").read_text() == "mine"


def test_a_users_own_tensorboard_folder_is_left_alone(run, tmp_path, capsys, tensorboard):
    """The run was made without TensorBoard; the folder beside it is the user's."""
    mine = _user_files(run)
    code, _, err = run_cli(capsys, ["train", "--out", str(run), "--overwrite", *QUICK])
    assert code == 0, err
    assert "no TensorBoard events for this run" in err
    _assert_files(run, mine)
    assert [p.name for p in (run / "tensorboard").iterdir()] == ["events.out.tfevents.1.mine"]
