import pytest

# A small, quick model for tests that exercise the loop rather than the learning.
TINY = [
    "--hidden",
    "32",
    "--latent-dim",
    "4",
    "--batch-size",
    "256",
    "--set",
    "train.final_eval_k=20",
    "--set",
    "train.final_eval_n=100",
    "--quiet",
]


@pytest.fixture(autouse=True)
def _isolated_data_home(tmp_path, monkeypatch):
    """No test reads or writes the user's dataset cache."""
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "vaelab-data"))
