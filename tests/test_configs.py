"""Every shipped recipe resolves and builds its model."""

from pathlib import Path

import pytest

from vaelab.config import resolve
from vaelab.models.build import build_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_there_are_recipes():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_resolves_and_builds(path):
    cfg = resolve(path)
    model = build_model(cfg, (1, 28, 28))
    assert sum(p.numel() for p in model.parameters()) > 0
    if "iwae" in path.parts:
        assert cfg.train.final_eval_k == 5000
        assert cfg.data.binarize == "dynamic"
