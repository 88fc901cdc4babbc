"""DIP-VAE (Kumar et al. 2018, "Variational inference of disentangled latent concepts from
unlabeled observations").

A VAE whose loss adds a penalty pulling a covariance ``C`` of the aggregate posterior towards
the identity:

    lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2

* DIP-VAE-II (``variant="ii"``, the default): ``C = E_x[diag(sigma^2(x))] + Cov_x[mu(x)]``, the
  covariance of ``z`` under ``q(z)``;
* DIP-VAE-I (``variant="i"``): ``C = Cov_x[mu(x)]``.

Both as disentanglement_lib computes them over the batch: the covariance of the means is centred
over the batch axis and divided by ``B``; ``E_x[diag(sigma^2)]`` is the batch mean of the
variances; in distributed training the batch is the global one, gathered from every process
while training. The penalty is an extra loss term, not a KL, so the KL warm-up does not scale it.

Defaults (the supplement gives none): ``lambda_od = 10``, and ``lambda_d = lambda_od`` for
DIP-VAE-II, ``10 * lambda_od`` for DIP-VAE-I (disentanglement_lib's ``lambda_d_factor``).
"""

from __future__ import annotations

import torch

from vitae.errors import VitaeError
from vitae.models.base import Inference
from vitae.models.distributions import DiagonalGaussian
from vitae.models.networks import Architecture
from vitae.models.vae import VAE
from vitae import collectives as distributed

LAMBDA_D_FACTOR = {"i": 10.0, "ii": 1.0}


def covariance_of_means(mean: torch.Tensor) -> torch.Tensor:
    """``Cov[mu]`` ``[d, d]`` over the batch of means ``[B, d]``: centred, divided by ``B``."""
    centred = mean - mean.mean(0, keepdim=True)
    return centred.T @ centred / mean.shape[0]


def dip_covariance(posterior: DiagonalGaussian, variant: str = "ii") -> torch.Tensor:
    """The matrix DIP-VAE pulls towards ``I``: ``Cov[mu]``, plus ``E[diag(sigma^2)]`` for II."""
    cov = covariance_of_means(posterior.mean)
    return cov + torch.diag(posterior.var.mean(0)) if variant == "ii" else cov


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """``lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2``."""
    diagonal = torch.diagonal(cov)
    off_diagonal = cov - torch.diag(diagonal)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()


class DIPVAE(VAE):
    def __init__(
        self,
        image_shape,
        architecture: Architecture,
        likelihood,
        latent_dim: int = 4,
        lambda_od: float = 10.0,
        lambda_d: float | None = None,
        variant: str = "ii",
        beta: float = 1.0,
    ):
        if variant not in LAMBDA_D_FACTOR:
            raise VitaeError(f"dip_vae: unknown variant '{variant}'; choose one of: {', '.join(LAMBDA_D_FACTOR)}")
        super().__init__(image_shape, architecture, likelihood, latent_dim=latent_dim, beta=beta)
        self.variant, self.lambda_od = variant, lambda_od
        self.lambda_d = LAMBDA_D_FACTOR[variant] * lambda_od if lambda_d is None else lambda_d

    def regularizer(self, inference: Inference) -> torch.Tensor:
        q = inference.posteriors["z"]
        if self.training:  # the covariance of the global batch, gathered from every process
            q = DiagonalGaussian(distributed.gather(q.mean), distributed.gather(q.var))
        return dip_penalty(dip_covariance(q, self.variant), self.lambda_od, self.lambda_d)
