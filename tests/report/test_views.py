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
