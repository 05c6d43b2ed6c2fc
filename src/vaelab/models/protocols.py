"""What a model can do beyond the basics, as typing Protocols.

Every model here has ``prior``, ``decode(z)`` and ``log_joint(x, z)``. The objectives and the
evaluation ask for anything more by type, with ``isinstance(model, Capability)``, so each
capability is declared once, with its contract, instead of being probed attribute by
attribute where it is used.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch.distributions import Distribution


@runtime_checkable
class AmortizedPosterior(Protocol):
    """An encoder: ``encode(x)`` is ``q(z|x)``, one distribution with batch shape ``(B,)``."""

    def encode(self, x: torch.Tensor) -> Distribution: ...


@runtime_checkable
class OwnImportanceWeights(Protocol):
    """A posterior that is not one distribution (several stochastic layers): the model draws
    its own samples and returns the two parts of each log-weight, ``(k, B)`` each:
    ``log p(x|z)`` and ``log p(z) − log q(z|x)``. ``dreg=True`` prepares the
    doubly-reparameterized gradient (Tucker et al. 2018) for a loss ``−logsumexp_k``."""

    def log_weight_terms(
        self, x: torch.Tensor, k: int, dreg: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class ClosedFormExpectation(Protocol):
    """``E_q[log p(x|z)]`` in closed form for a Gaussian ``q`` (linear-Gaussian models)."""

    def expected_log_likelihood(self, x: torch.Tensor, q: Distribution) -> torch.Tensor: ...
