"""VAE and beta-VAE: one latent group ``z``, ``q(z | x)`` and ``p(x | z)`` from the architecture's
encoder and decoder. beta-VAE (Higgins et al. 2017) weights the KL term by ``beta`` in the loss;
the reported ELBO always has weight 1."""

from __future__ import annotations

import torch

from vitae.models.base import GenerativeModel, Inference
from vitae.models.networks import Architecture


class VAE(GenerativeModel):
    def __init__(self, image_shape, architecture: Architecture, likelihood, latent_dim: int = 4, beta: float = 1.0):
        super().__init__(likelihood, beta=beta)
        self.latent_dims = {"z": latent_dim}
        self.encoder = architecture.encoder(image_shape, latent_dim)
        channels, height, width = image_shape
        self.decoder = architecture.decoder(latent_dim, (likelihood.out_channels(channels), height, width))

    def infer(self, x: torch.Tensor, sample: bool = True, repeats: int = 1) -> Inference:
        q = self.encoder(x).repeat(repeats)
        z = q.rsample() if sample else q.mean
        output = self.decoder(z)
        return Inference({"z": q}, {"z": z}, output=output, likelihood=self.likelihood)

    def decode_params(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.likelihood.params(self.decoder(z["z"]))


class BetaVAE(VAE):
    def __init__(self, image_shape, architecture: Architecture, likelihood, latent_dim: int = 4, beta: float = 4.0):
        super().__init__(image_shape, architecture, likelihood, latent_dim=latent_dim, beta=beta)
