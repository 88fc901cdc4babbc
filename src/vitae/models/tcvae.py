"""beta-TCVAE (Chen et al. 2018, "Isolating sources of disentanglement in VAEs").

The KL term, averaged over the data, splits into three parts (Chen et al., section 3), per image with
``z ~ q(z | x_i)``:

* index-code mutual information ``MI = log q(z | x_i) - log q(z)``,
* total correlation ``TC = log q(z) - sum_d log q(z_d)``,
* dimension-wise KL ``DWKL = sum_d log q(z_d) - log p(z)``,

where ``q(z) = 1/N sum_n q(z | x_n)`` is the aggregate posterior over the ``N`` training images.
beta-TCVAE weights them ``alpha``, ``beta``, ``gamma``. ``q(z)`` and its marginals ``q(z_d)`` are
estimated from the minibatch ``{x_1 .. x_B}`` as ``log sum_j W_ij q(z_i | x_j)`` with a weight
matrix ``W``:

* minibatch-weighted sampling (MWS, the default; Chen et al., section 4.1): ``W_ij = 1 / (B N)``. It is a
  lower bound on ``log q(z)``, not a consistent estimate: even when the batch is the whole data
  set it is ``log q(z) - log N`` (and ``sum_d log q(z_d) - d log N``); the gaps are constants
  with no effect on the gradients there.
* minibatch-stratified sampling (MSS, Chen et al.'s appendix): ``W_ii = 1 / N`` for the image
  that ``z_i`` was drawn from, ``(N - M) / (N M)`` for one other image of the batch (here the next
  one, cyclically) and ``1 / M`` for the remaining ``M - 1``, with ``M = B - 1``. Every row sums
  to 1. (rtqichen/beta-tcvae's ``_log_importance_weight_matrix`` and its copies write the
  ``1 / N`` entries into the first column instead of the diagonal, and one row sums to more
  than 1.)

The loss uses the closed-form KL plus ``(weight - 1)`` times each estimated part, the same
objective in expectation as ``alpha MI + beta TC + gamma DWKL`` (the three parts add up to
``log q(z|x) - log p(z)``, whose mean is the KL) with less noise, and exactly the VAE's when
``alpha = beta = gamma = 1``. The warm-up weight scales all of it; the reported ELBO is the plain
one. Defaults: ``alpha = gamma = 1`` (Chen et al.); ``beta = 6``, from the middle of the range
Chen et al. and disentanglement_lib sweep (1 to 10): the supplement does not give it.

``dataset_size`` is ``N``, the number of training images, which training passes to
``vitae.models.create``. Without it the batch is taken for the whole data set; so is a batch
larger than ``N`` (evaluation on a bigger split).

In distributed training the minibatch is the global one: each process evaluates its own samples
against the posteriors gathered from every process (``vitae.collectives.gather``), so
``N`` processes with batch ``B / N`` compute the loss of one process with batch ``B``. In eval
mode each process keeps to its own batch.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from vitae.errors import VitaeError
from vitae.models.base import Inference
from vitae.models.distributions import LOG_2PI, DiagonalGaussian, standard_normal_log_prob
from vitae.models.networks import Architecture
from vitae.models.vae import VAE
from vitae import collectives as distributed


def mws_log_weights(batch: int, dataset_size: int) -> torch.Tensor:
    """``log W`` of minibatch-weighted sampling: ``W_ij = 1 / (B N)``."""
    return torch.full((batch, batch), -math.log(batch * dataset_size), dtype=torch.float64)


def mss_log_weights(batch: int, dataset_size: int) -> torch.Tensor:
    """``log W`` of minibatch-stratified sampling: ``1 / N`` on the diagonal, ``(N - M) / (N M)``
    at ``(i, i + 1 mod B)``, ``1 / M`` elsewhere, ``M = B - 1``; rows sum to 1."""
    n, m = dataset_size, batch - 1
    if m == 0:  # a batch of one image has nothing to stand for the other N - 1
        return torch.full((1, 1), -math.log(n), dtype=torch.float64)
    weights = torch.full((batch, batch), 1.0 / m, dtype=torch.float64)
    rows = torch.arange(batch)
    weights[rows, (rows + 1) % batch] = (n - m) / (n * m)
    weights[rows, rows] = 1.0 / n
    return weights.log()


ESTIMATORS = {"mws": mws_log_weights, "mss": mss_log_weights}


def log_aggregate_posterior(z: torch.Tensor, posterior: DiagonalGaussian, dataset_size: int | None, estimator: str = "mws",
                            offset: int = 0):
    """Minibatch estimates of ``log q(z_i)`` and ``sum_d log q(z_id)``, both ``[b]``, for samples
    ``z`` ``[b, d]`` drawn from the posteriors ``[B, d]`` at positions ``offset .. offset + b`` of
    the batch (``z_i ~ q(z | x_i)``). In one process ``b = B``; in distributed training
    ``posterior`` is the global batch gathered from every process and ``z`` this process's
    samples, whose rows of ``W`` are those at their positions in the global batch."""
    batch = posterior.mean.shape[0]
    n = max(dataset_size or batch, batch)
    log_w = ESTIMATORS[estimator](batch, n)[offset:offset + z.shape[0]].to(device=z.device, dtype=z.dtype)
    log_qz, log_qz_marginals = WeightedMixtureLogDensity.apply(z, posterior.mean, posterior.var, log_w)
    return log_qz, log_qz_marginals.sum(-1)


def _normalise(log_terms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In place: ``log_terms`` becomes the softmax over its last axis; returns the logsumexp."""
    peak = log_terms.amax(-1, keepdim=True)
    weights = log_terms.sub_(peak).exp_()
    total = weights.sum(-1, keepdim=True)
    weights.div_(total)
    return weights, (peak + total.log()).squeeze(-1)


class WeightedMixtureLogDensity(torch.autograd.Function):
    """``log sum_j W_ij q(z_i | x_j)`` ``[b]`` and, per dimension, ``log sum_j W_ij q(z_ik | x_j)``
    ``[b, d]``, for samples ``z`` ``[b, d]``, ``q(. | x_j) = N(mean_j, diag(var_j))`` with ``mean``
    and ``var`` ``[B, d]``, and ``log W`` ``[b, B]`` (constant); ``b = B`` but in distributed training.

    The backward is written out because through autograd the estimator took about 5 times as
    long (it keeps every ``[d, B, B]`` intermediate and reduces broadcast gradients with strided
    sums), enough to make a beta-TCVAE step twice a VAE step on the MNIST MLP. Writing
    ``l_ijk = log q(z_ik | x_j) = c_jk + z_ik b_jk - z_ik^2 a_jk / 2`` with ``a = 1/var``,
    ``b = mean/var``, the gradient reaching ``l_ijk`` is ``G_ijk = g_i P_ij + h_ik Q_ijk``
    (``g``, ``h``: the incoming gradients; ``P``, ``Q``: the softmax weights over ``j`` of the joint
    and the per-dimension sums), and every input's gradient is a few sums of ``G`` against
    ``1, z, z^2, a, b``: matrix products with ``P`` and ``Q``. Tested with ``gradcheck``.
    """

    @staticmethod
    def forward(ctx, z, mean, var, log_w):
        inv_var = var.reciprocal()
        scaled_mean = mean * inv_var
        const = -0.5 * (mean * scaled_mean + var.log() + LOG_2PI)
        # layout [k, i, j], contiguous in j: the reductions over j run along memory
        z_k = z.T.contiguous().unsqueeze(2)
        log_terms = torch.addcmul(const.T.contiguous().unsqueeze(1), z_k, scaled_mean.T.contiguous().unsqueeze(1))
        log_terms.addcmul_(z_k * z_k, inv_var.T.contiguous().unsqueeze(1), value=-0.5)
        joint_weights, log_joint = _normalise(log_terms.sum(0).add_(log_w))
        marginal_weights, log_marginals = _normalise(log_terms.add_(log_w))
        ctx.save_for_backward(z, mean, inv_var, scaled_mean, joint_weights, marginal_weights)
        return log_joint, log_marginals.T

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_joint, grad_marginals):
        z, mean, inv_var, scaled_mean, p, q = ctx.saved_tensors
        batch, dims = z.shape
        components = mean.shape[0]
        # sums over j (the posteriors) of G_ijk times a_jk and b_jk: [b, 2, d]
        ab = torch.stack([inv_var, scaled_mean], 1)
        rows = (p @ ab.view(components, 2 * dims)).view(batch, 2, dims) * grad_joint.view(batch, 1, 1)
        per_dim = torch.stack([torch.stack([torch.mv(q[k], inv_var[:, k]), torch.mv(q[k], scaled_mean[:, k])]) for k in range(dims)], -1)
        rows = rows + per_dim.transpose(0, 1) * grad_marginals.unsqueeze(1)
        grad_z = rows[:, 1] - z * rows[:, 0]
        # sums over i (the samples) of G_ijk times 1, z_ik and z_ik^2: [B, 3, d]
        powers = torch.stack([torch.ones_like(z), z, z * z], 1)
        cols = (p.T @ (grad_joint.view(batch, 1, 1) * powers).view(batch, 3 * dims)).view(components, 3, dims)
        cols = cols + torch.bmm((grad_marginals.unsqueeze(1) * powers).permute(2, 1, 0), q).permute(2, 1, 0)
        total, first, second = cols.unbind(1)
        grad_mean = inv_var * (first - mean * total)
        grad_var = 0.5 * inv_var * (inv_var * (second - 2 * mean * first + mean * mean * total) - total)
        return grad_z, grad_mean, grad_var, None


class BetaTCVAE(VAE):
    """A VAE whose loss weights the KL's parts: ``alpha`` MI, ``beta`` TC, ``gamma`` DWKL."""

    def __init__(
        self,
        image_shape,
        architecture: Architecture,
        likelihood,
        latent_dim: int = 4,
        alpha: float = 1.0,
        beta: float = 6.0,
        gamma: float = 1.0,
        estimator: str = "mws",
        dataset_size: int | None = None,
    ):
        if estimator not in ESTIMATORS:
            raise VitaeError(f"beta_tcvae: unknown estimator '{estimator}'; choose one of: {', '.join(ESTIMATORS)}")
        if dataset_size is not None and dataset_size < 1:
            raise VitaeError(f"beta_tcvae: dataset_size must be a positive number of images, got {dataset_size}")
        super().__init__(image_shape, architecture, likelihood, latent_dim=latent_dim, beta=beta)
        self.alpha, self.gamma = alpha, gamma
        self.estimator, self.dataset_size = estimator, dataset_size

    def decomposition(self, inference: Inference) -> dict[str, torch.Tensor]:
        """Per-image estimates ``[B]`` of ``mi``, ``tc`` and ``dwkl`` at the sampled ``z``."""
        q, z = inference.posteriors["z"], inference.z["z"]
        batch, offset = q, 0
        if self.training:  # the estimator's batch is the global one, gathered from every process
            batch = DiagonalGaussian(distributed.gather(q.mean), distributed.gather(q.var))
            offset = distributed.rank() * z.shape[0]
        log_qz, log_qz_marginals = log_aggregate_posterior(z, batch, self.dataset_size, self.estimator, offset)
        return {
            "mi": q.log_prob(z) - log_qz,
            "tc": log_qz - log_qz_marginals,
            "dwkl": log_qz_marginals - standard_normal_log_prob(z),
        }

    def kl_penalty(self, inference: Inference, kl: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = self.decomposition(inference)
        reweighted = (self.alpha - 1) * parts["mi"] + (self.beta - 1) * parts["tc"] + (self.gamma - 1) * parts["dwkl"]
        return kl["z"] + reweighted
