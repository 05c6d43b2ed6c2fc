"""Models: the VAE and the exact latent-variable models that explain it."""

from vaelab.models.base import MODEL_REGISTRY, SavableModel
from vaelab.models.discrete_latent import DiscreteLatent, DiscreteLatentConfig
from vaelab.models.hierarchical import HierarchicalVAE, HierarchicalVAEConfig
from vaelab.models.linear_gaussian import LinearGaussian, LinearGaussianConfig
from vaelab.models.vae import VAE, VAEConfig

__all__ = [
    "MODEL_REGISTRY",
    "VAE",
    "DiscreteLatent",
    "DiscreteLatentConfig",
    "HierarchicalVAE",
    "HierarchicalVAEConfig",
    "LinearGaussian",
    "LinearGaussianConfig",
    "SavableModel",
    "VAEConfig",
]
