"""The interface every generative model shares, and the ELBO / importance weights built on it.

A model names its latent groups (``("z",)`` for a VAE, ``("z_A", "z_P")`` for VITAE) and
implements ``infer(x, sample, repeats)``: the posteriors ``q(. | x)``, one latent value per group (a
sample, or the posterior mean when ``sample=False``) and the likelihood's parameter images
``p(x | z)`` it decodes to (the mean image, and a variance image where the likelihood learns one;
see ``vitae.models.likelihoods``), and ``decode_params(z)``. With ``repeats = K`` it draws ``K``
samples per image, sample-major (``[K*B]``, the order of ``x.repeat(K, ...)``): an encoder that
reads ``x`` alone runs once and its posterior is repeated, which is what makes the importance
weights cheap. Everything else follows here:

* ``forward(x, kl_weight)`` -> ``ModelOutput``: the ELBO per image with its terms (reconstruction
  ``E_q[log p(x|z)]``, one KL per latent group, in closed form) and the training loss
  ``-(recon - kl_weight * kl_penalty) + regulariser``, averaged over the batch. ``kl_penalty``
  is ``beta * sum KL`` unless a model reweights the KL's parts (beta-TCVAE); the warm-up weight
  scales it and nothing else; the reported ELBO always has KL weight 1;
* ``log_weights(x, K)``: importance weights ``log p(x|z) + log p(z) - log q(z|x)`` for
  ``K`` samples, from which ``log p(x)`` is estimated (Burda et al.);
* ``encode``, ``decode``, ``sample``, ``reconstruct`` and ``representation`` (the posterior means
  that the disentanglement metrics score).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from vitae.models.distributions import DiagonalGaussian, standard_normal_log_prob


def repeat(x: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` copies of the batch ``x``, sample-major: ``[n*B, ...]``."""
    return x if n == 1 else x.repeat(n, *([1] * (x.dim() - 1)))


class Inference:
    """One pass through a model: posteriors and latent values per group, and the likelihood's
    parameter images ``params`` ``[B, P*C, H, W]``. A model whose parameter images are just
    ``likelihood.params`` of the decoder's raw output gives that ``output`` and the ``likelihood``
    instead: the likelihood then scores the raw output directly (cheaper), and ``params`` is
    computed only if something asks for it."""

    def __init__(self, posteriors: dict[str, DiagonalGaussian], z: dict[str, torch.Tensor],
                 params: torch.Tensor | None = None, output: torch.Tensor | None = None,
                 likelihood: nn.Module | None = None):
        if params is None and (output is None or likelihood is None):
            raise ValueError("Inference needs params, or the decoder's output and the likelihood that reads it")
        self.posteriors, self.z, self.output = posteriors, z, output
        self._params, self._likelihood = params, likelihood

    @property
    def params(self) -> torch.Tensor:
        if self._params is None:
            self._params = self._likelihood.params(self.output)
        return self._params

    def log_prob(self, likelihood: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` per image, from the raw output where there is one (cheaper)."""
        if self.output is not None and hasattr(likelihood, "log_prob_output"):
            return likelihood.log_prob_output(x, self.output)
        return likelihood.log_prob(x, self.params)


@dataclass
class ModelOutput:
    """Loss (a scalar to minimise) and the per-image ELBO ``[B]`` with its terms."""

    loss: torch.Tensor
    elbo: torch.Tensor
    recon: torch.Tensor
    kl: dict[str, torch.Tensor]
    regularizer: torch.Tensor = field(default_factory=lambda: torch.tensor(0.0))


class GenerativeModel(nn.Module):
    """Base class: subclasses set ``latent_dims`` and implement ``infer`` and ``decode_params``."""

    latent_dims: dict[str, int]

    def __init__(self, likelihood: nn.Module, beta: float = 1.0):
        super().__init__()
        self.likelihood = likelihood
        self.beta = beta

    # -- what a subclass provides -------------------------------------------------------------
    def infer(self, x: torch.Tensor, sample: bool = True, repeats: int = 1) -> Inference:
        raise NotImplementedError

    def decode_params(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        """The likelihood's parameter images for latent values ``{group: [B, d]}``."""
        raise NotImplementedError

    def kl_penalty(self, inference: Inference, kl: dict[str, torch.Tensor]) -> torch.Tensor:
        """The KL part of the loss per image ``[B]``, before the warm-up weight: ``beta`` times
        the closed-form KL by default; beta-TCVAE weights the KL's decomposition instead."""
        return self.beta * sum(kl.values())

    def regularizer(self, inference: Inference) -> torch.Tensor:
        """An extra loss term on the whole batch, not scaled by the warm-up (DIP-VAE's moment
        matching); none by default."""
        return inference.z[next(iter(inference.z))].new_zeros(())

    # -- what follows ---------------------------------------------------------------------------
    def check_images(self, x: torch.Tensor, name: str = "x") -> None:
        """``x`` must be images ``[B, C, H, W]`` of the model's shape (``image_shape``, set by
        ``vitae.models.create``); a shape check only, so it costs no GPU synchronisation."""
        shape = getattr(self, "image_shape", None)
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or (shape is not None and tuple(x.shape[1:]) != shape):
            need = f"[B, {', '.join(map(str, shape))}]" if shape is not None else "[B, C, H, W]"
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be images {need}, got {got}")

    def forward(self, x: torch.Tensor, kl_weight: float = 1.0) -> ModelOutput:
        self.check_images(x)
        inference = self.infer(x, sample=True)
        recon = inference.log_prob(self.likelihood, x)
        kl = {name: q.kl_to_standard_normal() for name, q in inference.posteriors.items()}
        kl_total = sum(kl.values())
        regularizer = self.regularizer(inference)
        loss = -(recon - kl_weight * self.kl_penalty(inference, kl)).mean() + regularizer
        return ModelOutput(loss=loss, elbo=recon - kl_total, recon=recon, kl=kl, regularizer=regularizer)

    def log_weights(self, x: torch.Tensor, n_samples: int) -> torch.Tensor:
        """``[n_samples, B]`` importance log-weights ``log p(x, z) - log q(z | x)``."""
        self.check_images(x)
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a whole number of at least 1, got {n_samples!r}")
        batch = x.shape[0]
        inference = self.infer(x, sample=True, repeats=n_samples)
        log_w = inference.log_prob(self.likelihood, repeat(x, n_samples))
        for name, q in inference.posteriors.items():
            z = inference.z[name]
            log_w = log_w + standard_normal_log_prob(z) - q.log_prob(z)
        return log_w.view(n_samples, batch)

    def encode(self, x: torch.Tensor) -> dict[str, DiagonalGaussian]:
        """The posteriors per latent group (for C-VITAE, ``q(z_A | x')`` at the mean ``z_P``)."""
        self.check_images(x)
        return self.infer(x, sample=False).posteriors

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means of every group, concatenated in ``latent_dims`` order: ``[B, d]``."""
        posteriors = self.encode(x)
        return torch.cat([posteriors[name].mean for name in self.latent_dims], dim=1)

    def decode(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean images ``[B, C, H, W]`` (contiguous, whatever layout the decoder computes in) for
        latent values ``{group: [B, d]}``."""
        return self.likelihood.mean(self.decode_params(z)).contiguous()

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean images decoded from the posterior means."""
        self.check_images(x)
        return self.likelihood.mean(self.infer(x, sample=False).params).contiguous()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` mean images decoded from the prior ``N(0, I)``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a whole number of at least 0, got {n!r}")
        device = next(self.parameters()).device
        z = {
            name: torch.randn(n, dim, generator=generator, device=generator.device if generator else device).to(device)
            for name, dim in self.latent_dims.items()
        }
        return self.decode(z)
