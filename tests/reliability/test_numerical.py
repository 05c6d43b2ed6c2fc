"""Numerical safety: a non-finite loss or gradient never reaches the weights.

Non-finite steps are injected in process (a NaN batch from the data pipeline, a NaN loss, a
finite loss with a NaN gradient) and absurd learning rates are given on the command line. A
skipped step must leave weights and optimizer moments bit for bit as they were; a run of them
rolls back to the last checkpoint with the learning rate ×0.1; persistent ones stop the run
with one clear line and the best model intact.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.reliability import harness
from vaelab.cli import main
from vaelab.data import pipeline as data_mod
from vaelab.io import load_tensors
from vaelab.models.base import SavableModel
from vaelab.training import steps as steps_mod
from vaelab.training import trainer as trainer_mod
from vaelab.training.checkpoint import read_checkpoint
from vaelab.training.steps import Objective


def _args(epochs: int, *extra: str) -> list[str]:
    return [*harness.train_args(epochs), *extra]


class _Calls:
    """Counts calls; ``bad(i)`` says whether call ``i`` (1-based) is to be poisoned."""

    def __init__(self, bad):
        self.n = 0
        self.bad = bad
        self.poisoned = 0

    def next(self) -> bool:
        self.n += 1
        hit = self.bad(self.n)
        self.poisoned += hit
        return hit


def _poison_batches(monkeypatch, bad) -> _Calls:
    calls = _Calls(bad)
    original = data_mod.DataPipeline.train_batch

    def train_batch(self, x, generator):
        out = original(self, x, generator)
        return out * float("nan") if calls.next() else out

    monkeypatch.setattr(data_mod.DataPipeline, "train_batch", train_batch)
    return calls


def _poison_loss(monkeypatch, bad, *, gradient_only: bool = False) -> _Calls:
    """A NaN loss, or (``gradient_only``) a finite loss whose gradient is NaN.

    The poison goes into the autograd objective, so the hand-written step is switched off
    (NaN batches, ``_poison_batches``, go through whichever step the run uses).
    """
    monkeypatch.setattr(steps_mod, "unsupported_reason", lambda *a: "poisoned in this test")
    calls = _Calls(bad)
    original = Objective.terms

    def terms(self, model, x, beta):
        out = original(self, model, x, beta)
        if calls.next():
            if gradient_only:
                p = next(model.parameters())
                # sqrt'(0) = inf and 0·inf = NaN: the value stays finite, the gradient does not
                out.loss = out.loss + 0.0 * torch.sqrt(p.sum() - p.sum().detach())
            else:
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Objective, "terms", terms)
    return calls


def _state(trainer) -> dict[str, torch.Tensor]:
    out = {f"model/{k}": v.detach().clone() for k, v in trainer.model.state_dict().items()}
    for i, st in trainer.optimizer.state.items():
        for k, v in st.items():
            out[f"optim/{id(i)}/{k}"] = torch.as_tensor(v).clone()
    return out


def _watch_steps(monkeypatch) -> list[tuple[bool, bool]]:
    """Record, per step, (step was non-finite, weights and moments unchanged by it)."""
    seen: list[tuple[bool, bool]] = []
    original = trainer_mod.Trainer._train_step

    def step(self, x, beta):
        before = _state(self)
        stats, found_inf = original(self, x, beta)
        after = _state(self)
        same = before.keys() == after.keys() and all(
            torch.equal(before[k], after[k]) for k in before
        )
        seen.append((bool(found_inf.item()), same))
        return stats, found_inf

    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", step)
    return seen


def _all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())


def _checkpoint_tensors(run_dir) -> dict[str, torch.Tensor]:
    _, tensors = read_checkpoint(run_dir / "checkpoint.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith(("model/", "optim/"))}


@pytest.mark.parametrize("poison", ["batch", "loss", "gradient"])
def test_non_finite_steps_are_skipped_counted_and_never_reach_the_weights(
    tmp_path, capsys, monkeypatch, poison
):
    bad_calls = {5, 6, 17, 40}
    bad = bad_calls.__contains__
    if poison == "batch":
        calls = _poison_batches(monkeypatch, bad)
    else:
        calls = _poison_loss(monkeypatch, bad, gradient_only=poison == "gradient")
    seen = _watch_steps(monkeypatch)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *_args(2)]) == 0
    out = capsys.readouterr().out
    assert calls.poisoned == 4
    # exactly the poisoned steps were found non-finite, and each left the state untouched
    assert [i for i, (bad_step, _) in enumerate(seen, 1) if bad_step] == sorted(bad_calls)
    assert all(same for bad_step, same in seen if bad_step)
    assert not any(same for bad_step, same in seen if not bad_step)  # good steps do move
    rows = harness.metrics_rows(run)
    assert [r["skipped_steps"] for r in rows] == [3, 4]  # cumulative: 3 in epoch 1, 1 in 2
    assert all(math.isfinite(r["train_elbo"]) for r in rows)
    assert "skipped 4 non-finite steps, 0 rollbacks" in out
    assert _all_finite(_checkpoint_tensors(run))
    assert _all_finite(load_tensors(run / "model.safetensors"))


def test_a_run_of_non_finite_steps_rolls_back_with_a_lower_learning_rate(
    tmp_path, capsys, monkeypatch
):
    # Steps 40-47 (mid epoch 2) get a NaN loss. With a check every 3 steps, the bad run is
    # seen at step 45 (6 in a row >= 5): back to the checkpoint of step 42 (kept: its weights
    # were untouched by the 3 bad steps before it). The replay's first two steps are still
    # poisoned (the poison counts calls), then training goes on at lr ×0.1.
    calls = _poison_loss(monkeypatch, lambda i: 40 <= i < 48)
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--out",
            str(run),
            *_args(3, "--set", "train.max_bad_steps=5", "--set", "train.max_rollbacks=2"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert calls.poisoned == 8
    assert (
        "6 non-finite steps in a row: rolled back to the last checkpoint (epoch 2, step 10), "
        "learning rate ×0.1"
    ) in captured.err.splitlines()
    assert "1 rollbacks" in captured.out
    meta, tensors = read_checkpoint(run / "checkpoint.safetensors")
    state = meta["state"]
    assert state["rollbacks"] == 1
    assert state["lr_scale"] == pytest.approx(0.1)
    assert meta["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.1)
    assert state["skipped_steps"] == 8
    rows = harness.metrics_rows(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[0]["lr"] == pytest.approx(1e-3) and rows[2]["lr"] == pytest.approx(1e-4)
    assert _all_finite(tensors)


def test_persistent_non_finite_steps_stop_with_one_line_and_the_best_model_intact(
    tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    best_then: dict[str, bytes] = {}
    original = Objective.terms

    def terms(self, model, x, beta):  # from step 40 on, every loss is NaN
        out = original(self, model, x, beta)
        terms.n += 1
        if terms.n >= 40:
            if not best_then:
                best_then["bytes"] = (run / "model.safetensors").read_bytes()
            out.loss = out.loss * float("nan")
        return out

    terms.n = 0
    args = _args(3, "--set", "train.max_bad_steps=5", "--set", "train.max_rollbacks=2")
    with monkeypatch.context() as m:
        m.setattr(Objective, "terms", terms)
        m.setattr(steps_mod, "unsupported_reason", lambda *a: "poisoned in this test")
        code = main(["train", "--out", str(run), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("vaelab: error: training diverged: ")
    assert "after 2 rollbacks" in lines[-1] and "(epoch 1)" in lines[-1]
    assert str(run / "model.safetensors") in lines[-1]
    assert sum("rolled back" in line for line in lines) == 2
    for line in lines[:-1]:  # everything else is the per-epoch log or a rollback notice
        assert line.startswith(("epoch ", "5 non-finite", "6 non-finite")), line
    # the best model is the one of epoch 1, untouched, and usable
    assert (run / "model.safetensors").read_bytes() == best_then["bytes"]
    model = SavableModel.load(run)
    assert _all_finite(dict(model.state_dict()))
    assert _all_finite(_checkpoint_tensors(run))
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "5", "--n", "20", "--json"]) == 0


def _check_every_checkpoint(monkeypatch) -> list[bool]:
    """Read back each checkpoint the run writes; record whether all its tensors are finite."""
    finite: list[bool] = []
    original = trainer_mod.Trainer.save_checkpoint

    def save(self):
        original(self)
        finite.append(_all_finite(_checkpoint_tensors(self.run_dir)))

    monkeypatch.setattr(trainer_mod.Trainer, "save_checkpoint", save)
    return finite


@pytest.mark.parametrize(
    "lr",
    [
        "1e6",
        "1e30",
        "1e39",
    ],
)
def test_absurd_learning_rate_never_puts_non_finite_weights_on_disk(
    tmp_path, capsys, monkeypatch, lr
):
    finite = _check_every_checkpoint(monkeypatch)
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--out",
            str(run),
            *_args(2, "--lr", lr, "--set", "train.max_bad_steps=5"),
        ]
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), err
    if code == 2:
        last = err.strip().splitlines()[-1]
        assert last.startswith("vaelab: error: training diverged: "), last
        assert "model.safetensors" in last
    assert finite and all(finite), finite
    assert _all_finite(load_tensors(run / "model.safetensors"))
    SavableModel.load(run)
