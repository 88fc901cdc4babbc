"""The diagonal Gaussian used for every posterior and prior, without ``torch.distributions``'
argument validation (it costs more than the small networks here)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vitae import collectives

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over the last axis."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


@dataclass
class DiagonalGaussian:
    """``N(mean, diag(var))`` over the last axis; ``mean`` and ``var`` are ``[..., d]``."""

    mean: torch.Tensor
    var: torch.Tensor

    def repeat(self, n: int) -> "DiagonalGaussian":
        """The same distribution for ``n`` copies of the batch, sample-major (as ``x.repeat(n, ...)``)."""
        return self if n == 1 else DiagonalGaussian(self.mean.repeat(n, 1), self.var.repeat(n, 1))

    def rsample(self) -> torch.Tensor:
        """A reparameterised sample (under several processes, this process's rows of the global
        batch's noise: ``vitae.collectives.noise_like``)."""
        return self.mean + self.var.sqrt() * collectives.noise_like(self.mean)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((z - self.mean).pow(2) / self.var + self.var.log() + LOG_2PI).sum(-1)

    def kl_to_standard_normal(self) -> torch.Tensor:
        """``KL(N(mean, var) || N(0, I))`` in closed form, summed over the last axis."""
        return 0.5 * (self.var + self.mean.pow(2) - 1 - self.var.log()).sum(-1)
