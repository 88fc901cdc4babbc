"""Encoder and decoder networks of the paper's architectures, by name.

``mnist_mlp`` is supplement Table 1: the mean and the variance encoders are separate MLPs
(128, 64 units, LeakyReLU(0.1)) ending in ``d`` linear / softplus units; the decoder is an MLP
(64, 64) ending in ``D`` units. ``width`` scales every hidden layer: the VITAE models use about
half the neurons per encoder/decoder (``width = 0.5``) so that their total size matches a VAE's.

Convention: encoders take images ``[B, C, H, W]`` and return a ``DiagonalGaussian`` over
``[B, d]``; decoders take ``[B, d]`` and return the raw output ``[B, C, H, W]`` (the likelihood
turns it into a mean image).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vitae.errors import VitaeError
from vitae.models.distributions import DiagonalGaussian

LEAKY_SLOPE = 0.1
MIN_VARIANCE = 1e-6  # keeps log(var) finite when softplus underflows


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with LeakyReLU(0.1) between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(LEAKY_SLOPE))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """``q(z | x) = N(mu(x), diag(sigma^2(x)))`` with separate mean and variance MLPs."""

    def __init__(self, image_shape, latent_dim: int, hidden: list[int]):
        super().__init__()
        n_in = int(torch.Size(image_shape).numel())
        self.mean_net = mlp([n_in, *hidden, latent_dim])
        self.var_net = mlp([n_in, *hidden, latent_dim])

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        flat = x.flatten(1)
        return DiagonalGaussian(self.mean_net(flat), F.softplus(self.var_net(flat)) + MIN_VARIANCE)


class MLPDecoder(nn.Module):
    """An MLP from ``z`` to ``prod(out_shape)`` units, reshaped to ``out_shape``."""

    def __init__(self, latent_dim: int, out_shape, hidden: list[int]):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = mlp([latent_dim, *hidden, int(torch.Size(out_shape).numel())])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)


@dataclass(frozen=True)
class Architecture:
    """Hidden-layer sizes of one architecture at full width, and the image shape it expects
    (``None`` where any size works)."""

    encoder_hidden: tuple[int, ...]
    decoder_hidden: tuple[int, ...]
    image_shape: tuple[int, int, int] | None = None

    def scaled(self, sizes: tuple[int, ...], width: float) -> list[int]:
        return [max(1, round(n * width)) for n in sizes]

    def check(self, image_shape) -> None:
        if self.image_shape is not None and tuple(image_shape) != self.image_shape:
            raise VitaeError(
                f"this architecture expects images of shape {self.image_shape}, the data has {tuple(image_shape)}; "
                "choose the architecture that fits the data"
            )

    def encoder(self, image_shape, latent_dim: int, width: float = 1.0) -> nn.Module:
        self.check(image_shape)
        return MLPEncoder(image_shape, latent_dim, self.scaled(self.encoder_hidden, width))

    def decoder(self, latent_dim: int, out_shape, width: float = 1.0) -> nn.Module:
        return MLPDecoder(latent_dim, out_shape, self.scaled(self.decoder_hidden, width))


ARCHITECTURES: dict[str, Architecture] = {
    "mnist_mlp": Architecture(encoder_hidden=(128, 64), decoder_hidden=(64, 64), image_shape=(1, 28, 28)),
}


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise VitaeError(f"unknown architecture '{name}'; choose one of: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]
