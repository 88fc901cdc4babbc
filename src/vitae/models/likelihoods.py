"""Observation models ``p(x | mean)``: each turns a decoder's raw output into the mean image and
scores images under it. The VITAE models warp the mean image (and any variance image) before
scoring, so a likelihood only ever sees images in the observed perspective.

Convention: a decoder outputs ``out_channels(C)`` channels; ``params(output)`` turns them into the
parameter images that are warped (``[B, P*C, H, W]``: the mean, then any variance);
``log_prob(x, params)`` takes ``x`` ``[B, C, H, W]`` and returns ``[B]`` (nats, summed over
pixels); ``mean(params)`` is the mean image ``[B, C, H, W]``.
"""

from __future__ import annotations

import torch
from torch import nn

from vitae.errors import VitaeError


class Bernoulli(nn.Module):
    """Per-pixel Bernoulli with mean ``sigmoid(output)``, for pixels in ``[0, 1]`` (not binarised,
    as in the paper). The mean is clamped to ``[eps, 1 - eps]`` because a warp can move exact
    zeros (the padding outside the image) under a bright pixel, where ``log 0`` would be ``-inf``.
    """

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def out_channels(self, channels: int) -> int:
        return channels

    def params(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params

    def log_prob(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        p = mean.clamp(self.eps, 1 - self.eps)
        return (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)


REGISTRY: dict[str, type[nn.Module]] = {"bernoulli": Bernoulli}


def create(name: str, **options) -> nn.Module:
    if name not in REGISTRY:
        raise VitaeError(f"unknown likelihood '{name}'; choose one of: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**options)
