"""U-VITAE and C-VITAE: appearance ``z_A`` and perspective ``z_P``, both with prior ``N(0, I)``.

Generative model (both): ``gamma = g_P(z_P)``, ``xbar = g_A(z_A)`` (the image in a canonical
perspective), ``x ~ p(x | T_gamma(xbar))``: the likelihood's parameter images (the mean, and the
variance where it is learned) are warped together, ``warp(xbar, gamma)``.

Inference:
* U-VITAE: ``q(z_P | x)`` and ``q(z_A | x)`` both read the raw image.
* C-VITAE: ``q(z_P | x)``; for the sample of ``z_P``, ``gamma = g_P(z_P)`` undoes the perspective,
  ``x' = T_gamma^{-1}(x)``, and the appearance is encoded from it, ``q(z_A | x')``. The same holds
  in evaluation: the appearance representation is the encoding of the un-warped image (at the
  posterior mean of ``z_P``), never of the raw image.

The ELBO is supplement eq. (term 1 - term 2 - term 3); term 2's expectation over ``q(z_P|x)``
uses the same single sample of ``z_P`` as term 1.
"""

from __future__ import annotations

import torch
from torch import nn

from vitae.models.base import GenerativeModel, Inference, repeat
from vitae.models.networks import Architecture, mlp
from vitae.transforms import Transform

PERSPECTIVE_INIT_SCALE = 1e-3  # last layer of g_P near zero: training starts at the identity warp


class PerspectiveDecoder(nn.Module):
    """``g_P``: an MLP from ``z_P`` to the transformation parameters ``gamma`` (``theta_dim``)."""

    def __init__(self, latent_dim: int, theta_dim: int, hidden: list[int]):
        super().__init__()
        self.net = mlp([latent_dim, *hidden, theta_dim])
        last = self.net[-1]
        nn.init.normal_(last.weight, std=PERSPECTIVE_INIT_SCALE)
        nn.init.zeros_(last.bias)

    def forward(self, z_p: torch.Tensor) -> torch.Tensor:
        return self.net(z_p)


class UVITAE(GenerativeModel):
    """Unconditional VITAE: independent appearance and perspective encoders."""

    conditional = False

    def __init__(
        self,
        image_shape,
        architecture: Architecture,
        likelihood,
        transform: Transform,
        appearance_dim: int = 2,
        perspective_dim: int = 2,
        width: float = 0.5,
        beta: float = 1.0,
    ):
        super().__init__(likelihood, beta=beta)
        self.latent_dims = {"z_A": appearance_dim, "z_P": perspective_dim}
        self.transform = transform
        self.appearance_encoder = architecture.encoder(image_shape, appearance_dim, width)
        channels, height, w = image_shape
        out_shape = (likelihood.out_channels(channels), height, w)
        self.appearance_decoder = architecture.decoder(appearance_dim, out_shape, width)
        self.perspective_encoder = architecture.encoder(image_shape, perspective_dim, width)
        hidden = architecture.perspective_hidden(width)
        self.perspective_decoder = PerspectiveDecoder(perspective_dim, transform.theta_dim, hidden)

    def canonical(self, z_a: torch.Tensor) -> torch.Tensor:
        """``xbar = g_A(z_A)``: the likelihood's parameter images in the canonical perspective."""
        return self.likelihood.params(self.appearance_decoder(z_a))

    def infer(self, x: torch.Tensor, sample: bool = True, repeats: int = 1) -> Inference:
        draw = (lambda q: q.rsample()) if sample else (lambda q: q.mean)
        q_p = self.perspective_encoder(x).repeat(repeats)
        z_p = draw(q_p)
        warp = self.transform.prepare(self.perspective_decoder(z_p))  # T_gamma, both directions
        if self.conditional:  # each sample of z_P undoes its own perspective
            q_a = self.appearance_encoder(warp(repeat(x, repeats), inverse=True))
        else:
            q_a = self.appearance_encoder(x).repeat(repeats)
        z_a = draw(q_a)
        params = warp(self.canonical(z_a))
        return Inference({"z_A": q_a, "z_P": q_p}, {"z_A": z_a, "z_P": z_p}, params)

    def decode_params(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.transform.warp(self.canonical(z["z_A"]), self.perspective_decoder(z["z_P"]))


class CVITAE(UVITAE):
    """Conditional VITAE: the appearance is encoded from the image with its perspective undone."""

    conditional = True
