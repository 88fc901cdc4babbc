"""The common interface of every perspective transformation ``T_gamma``.

Convention (shared by every family)
-----------------------------------
* ``theta``: parameters, shape ``[B, theta_dim]``; ``theta = 0`` is the identity.
* Points: shape ``[B, P, 2]`` in PyTorch's normalised image coordinates, ``x`` (column) then
  ``y`` (row), each in ``[-1, 1]`` from the left/top edge of the first pixel to the right/bottom
  edge of the last one (``align_corners=False``, the same frame as ``F.affine_grid``).
* ``transform_points(p, theta)`` applies ``T_theta`` to ``p``;
  ``transform_points(p, theta, inverse=True)`` applies the exact inverse ``T_theta^{-1}``.
* ``warp(images, theta)`` resamples ``images`` ``[B, C, H, W]`` by backward mapping: the output
  pixel at ``p`` reads the input at ``T_theta(p)``, that is ``warp(I, theta) = I o T_theta``.
  Bilinear interpolation, zeros outside the image, ``align_corners=False`` (pixel centres at
  ``(2i + 1) / W - 1``), as ``F.grid_sample`` does. The sampler works in pixel units from the
  displacement ``T_theta(p) - p``, so ``theta = 0`` reproduces the input bit for bit (a
  normalised grid through ``F.grid_sample`` is off by rounding, ~3e-6 on 28x28). Hence
  ``warp(warp(I, theta), theta, inverse=True) = I o T_theta o T_theta^{-1} = I`` up to
  interpolation. A variance image is warped like any other channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def identity_grid(batch: int, height: int, width: int, *, device=None, dtype=None) -> torch.Tensor:
    """Pixel-centre coordinates ``[B, H*W, 2]`` in the normalised frame (x then y)."""
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(1, height * width, 2)
    return grid.expand(batch, -1, -1)


def power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def sample_displaced(images: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor) -> torch.Tensor:
    """Bilinear read of ``images`` ``[B, C, H, W]`` at the pixel centres moved by ``shift``
    (``[B, H, W]`` each, in normalised units); zeros outside; differentiable in all inputs.

    ``F.grid_sample`` takes absolute normalised coordinates, and ``(2i + 1) / W - 1`` survives its
    round trip to pixel units exactly only when ``W`` is a power of two. The image is therefore
    zero-padded on the right and bottom to powers of two (the value ``grid_sample`` assumes
    outside anyway) and the grid is ``centre + shift``, so a zero shift reads every pixel exactly.
    """
    b, _, h, w = images.shape
    hp, wp = power_of_two(h), power_of_two(w)
    if (hp, wp) != (h, w):
        images = F.pad(images, (0, wp - w, 0, hp - h))
    dtype, device = images.dtype, images.device
    centre_x = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / wp - 1
    centre_y = ((torch.arange(h, device=device, dtype=dtype) * 2 + 1) / hp - 1).unsqueeze(1)
    # a shift of s (normalised to w) is s * w / wp in the padded image's normalised units
    grid = torch.stack([centre_x + shift_x.to(dtype) * (w / wp), centre_y + shift_y.to(dtype) * (h / hp)], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Transform(nn.Module):
    """Base class: a family of invertible spatial transformations indexed by ``theta``.

    Subclasses implement ``transform_points``; ``warp`` follows from it.
    """

    name: str = ""
    theta_dim: int = 0

    def check_theta(self, theta: torch.Tensor) -> None:
        if theta.dim() != 2 or theta.shape[1] != self.theta_dim:
            raise ValueError(
                f"{self.name}: theta must have shape [B, {self.theta_dim}], got {list(theta.shape)}"
            )

    def transform_points(self, points: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def warp(self, images: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        b, _, h, w = images.shape
        grid = identity_grid(b, h, w, device=images.device, dtype=theta.dtype)
        shift = (self.transform_points(grid, theta, inverse=inverse) - grid).reshape(b, h, w, 2)
        return sample_displaced(images, shift[..., 0], shift[..., 1])  # shift is exactly 0 at theta = 0

    def forward(self, images: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        return self.warp(images, theta, inverse=inverse)

    def extra_repr(self) -> str:
        return f"theta_dim={self.theta_dim}"


class MatrixTransform(Transform):
    """A transformation given by a 2x3 matrix ``[A | b]`` acting on ``(x, y, 1)``."""

    def matrix(self, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        """The ``[B, 2, 3]`` matrix of ``T_theta`` (or of its exact inverse)."""
        raise NotImplementedError

    def transform_points(self, points: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        m = self.matrix(theta, inverse=inverse).unsqueeze(1)  # [B, 1, 2, 3]
        # elementwise rather than a batched matmul: with 2x2 blocks bmm is the slower path
        x, y = points[..., :1], points[..., 1:]
        return m[..., 0] * x + m[..., 1] * y + m[..., 2]

    def warp(self, images: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        h, w = images.shape[-2:]
        eye = torch.eye(2, 3, dtype=theta.dtype, device=theta.device)
        d = (self.matrix(theta, inverse=inverse) - eye)[:, :, :, None, None]  # T(p) - p = d [x, y, 1]
        x = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1
        y = ((torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1).unsqueeze(1)
        shift = d[:, :, 0] * x + d[:, :, 1] * y + d[:, :, 2]  # [B, 2, H, W]
        return sample_displaced(images, shift[:, 0], shift[:, 1])



def invert_affine(m: torch.Tensor) -> torch.Tensor:
    """Exact inverse of ``[A | b]``: ``[A^-1 | -A^-1 b]`` (2x2 inverse in closed form)."""
    a, b_, c, d = m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1]
    det = a * d - b_ * c
    inv = torch.stack([torch.stack([d, -b_], -1), torch.stack([-c, a], -1)], -2) / det[:, None, None]
    shift = -(inv @ m[:, :, 2:])
    return torch.cat([inv, shift], dim=2)
