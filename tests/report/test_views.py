"""What the report computes from the model: traversals sweep the right coordinate."""

from __future__ import annotations

import pytest
import torch

from vaelab import VAE
from vaelab.errors import InvalidArgumentError
from vaelab.viz.traversals import traversals


def test_traversals_set_one_coordinate_to_the_swept_values_and_keep_the_others():
    torch.manual_seed(0)
    vae = VAE(latent_dim=4, hidden=(8,), data_shape=(1, 3, 3), prior_std=2.0)
    z0 = torch.randn(2, 4)
    out = traversals(vae, z0, dims=[1, 3], steps=5, span=3.0)
    assert out.shape == (2 * 2 * 5, 1, 3, 3)
    values = torch.linspace(-6.0, 6.0, 5)  # ±3 prior standard deviations of 2
    for i, dim in enumerate([1, 3]):
        for e in range(2):
            z = z0[e].repeat(5, 1)
            z[:, dim] = values
            rows = out[(i * 2 + e) * 5 : (i * 2 + e + 1) * 5]
            with torch.no_grad():
                assert torch.allclose(rows, vae.decode(z).mean, atol=1e-6)
    with pytest.raises(InvalidArgumentError, match="dims"):
        traversals(vae, z0, dims=[4])


def _latents(n: int, dims: int, labels: bool = True):
    import numpy as np

    from vaelab.report.model_views import Latents

    torch.manual_seed(0)
    mean = torch.randn(n, dims)
    return Latents(
        mean=mean,
        std=torch.ones(n, dims),
        labels=np.arange(n) % 10 if labels else None,
        kl=None,
    )


def test_latent_map_is_pca_without_umap_and_adds_umap_when_installed(monkeypatch):
    import importlib.util
    import sys
    import types

    from vaelab.report import model_views

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "umap" else real_find_spec(name, *a),
    )
    lat = _latents(200, 5)
    html = model_views._latent_map(lat, "test")
    assert html.count("<img") == 1 and "UMAP" not in html

    seen = {}

    class FakeUMAP:  # stands in for umap-learn: records what it was given
        def __init__(self, n_components, random_state):
            seen["args"] = (n_components, random_state)

        def fit_transform(self, data):
            seen["data"] = data
            return data[:, :2] * 2

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "umap" else real_find_spec(name, *a),
    )
    monkeypatch.setattr(model_views, "UMAP_POINTS", 150)
    html = model_views._latent_map(lat, "test")
    assert html.count("<img") == 2 and "UMAP latent map" in html
    assert seen["args"] == (2, 0)
    # UMAP sees the first UMAP_POINTS means, as doubles, unchanged
    assert seen["data"].shape == (150, 5)
    assert torch.equal(torch.from_numpy(seen["data"]), lat.mean[:150].double())

    # two latent dimensions are drawn as they are, and a handful of points gets PCA only
    for lat in (_latents(150, 2, labels=False), _latents(model_views.UMAP_MIN_POINTS - 1, 5)):
        seen.clear()
        assert model_views._latent_map(lat, "test").count("<img") == 1 and not seen
    assert (
        model_views._latent_map(_latents(model_views.UMAP_MIN_POINTS, 5), "test").count("<img") == 2
    )


def test_histogram_draws_the_finite_values_and_survives_the_rest():
    import numpy as np

    from vaelab.report import figures

    finite = np.array([-10.0, -12.0, -11.0, -10.5])
    with_bad = np.concatenate([finite, [-np.inf, np.nan, np.inf]])
    marks = np.array([-np.inf, -12.0])
    png = figures.histogram(with_bad, "t", "log p(x)", marks)
    assert png.startswith(b"\x89PNG")
    # the same picture as of the finite values alone
    assert png == figures.histogram(finite, "t", "log p(x)", np.array([-12.0]))
    assert figures.histogram(np.array([np.nan]), "t", "x").startswith(b"\x89PNG")
