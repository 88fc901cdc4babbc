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
  ``(2i + 1) / W - 1``), as ``F.grid_sample`` does. The sampler adds the displacement
  ``T_theta(p) - p`` to exactly represented pixel centres, so ``theta = 0`` reproduces the input
  bit for bit (a normalised grid through ``F.grid_sample`` is off by rounding, ~3e-6 on 28x28).
  Hence ``warp(warp(I, theta), theta, inverse=True) = I o T_theta o T_theta^{-1} = I`` up to
  interpolation. A variance image is warped like any other channel.
* ``prepare(theta)`` binds ``theta`` once for several warps (C-VITAE un-warps the input and warps
  the decoded image with the same ``gamma``): ``w = t.prepare(theta); w(x, inverse=True); w(y)``.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vitae.transforms import affine_sampler


def identity_grid(batch: int, height: int, width: int, *, device=None, dtype=None) -> torch.Tensor:
    """Pixel-centre coordinates ``[B, H*W, 2]`` in the normalised frame (x then y)."""
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(1, height * width, 2)
    return grid.expand(batch, -1, -1)


def power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


@functools.lru_cache(maxsize=32)
def _sampling_constants(h: int, w: int, device: torch.device, dtype: torch.dtype):
    """For ``H x W`` images: the padded size, the exact pixel centres of the padded image
    ``[1, H*W, 2]``, the factor that re-normalises a shift to it, and the homogeneous pixel-centre
    coordinates ``[3, H*W]`` of the unpadded image. Constants, cached per size, device and dtype."""
    hp, wp = power_of_two(h), power_of_two(w)
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / wp - 1  # exact: wp is a power of two
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / hp - 1
    centre = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(1, h * w, 2)
    to_padded = torch.tensor([w / wp, h / hp], device=device, dtype=dtype)
    points = torch.cat([identity_grid(1, h, w, device=device, dtype=dtype)[0], torch.ones(h * w, 1, device=device, dtype=dtype)], 1)
    return hp, wp, centre, to_padded, points.t().contiguous()


# from this many pixels on, the affine grid is built as a sum of a per-column and a per-row part
# (one pass over the grid) instead of a matrix product with K = 3 followed by a transpose and an
# add (three passes): faster on 400 x 200 bodies; on 28 x 28 MNIST, where the grid is small, the
# product and its fewer operations are faster
SEPARABLE_PIXELS = 16_384


def _affine_grid(d: torch.Tensor, h: int, w: int, centre: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``centre + [x, y, 1] d`` at every pixel, ``[B, H, W, 2]``, for ``d`` ``[B, 3, 2]`` (already
    in the padded image's units). Exactly ``centre`` where ``d = 0``, by either route."""
    b = d.shape[0]
    if h * w < SEPARABLE_PIXELS:
        rows = d.transpose(1, 2).reshape(b * 2, 3)
        return ((rows @ points).view(b, 2, h * w).transpose(1, 2) + centre).view(b, h, w, 2)
    # [x, y, 1] d = x d[0] + (y d[1] + d[2]): a part that varies along a row (with the centre's
    # x, which does too) plus one that varies down a column (with the centre's y)
    grid = centre.view(h, w, 2)
    xs, ys = points[0, :w], points[1, ::w]
    column_centre = torch.stack([grid[0, :, 0], torch.zeros_like(xs)], dim=-1)  # [W, 2]: (x_c, 0)
    row_centre = torch.stack([torch.zeros_like(ys), grid[:, 0, 1]], dim=-1)  # [H, 2]: (0, y_r)
    along = torch.addcmul(column_centre + d[:, 2:3], xs.view(1, w, 1), d[:, 0:1])  # [B, W, 2]
    down = torch.addcmul(row_centre, ys.view(1, h, 1), d[:, 1:2])  # [B, H, 2]
    return along.unsqueeze(1) + down.unsqueeze(2)


def displaced_sample(images: torch.Tensor, shift: torch.Tensor | None = None, affine_shift: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear read of ``images`` ``[B, C, H, W]`` at every pixel centre ``p`` moved to
    ``p + shift(p)`` (normalised units); zeros outside; differentiable in all inputs.

    Give either ``shift`` ``[B, H, W, 2]``, or ``affine_shift``, a ``[B, 3, 2]`` matrix ``D`` with
    ``shift(p) = [x, y, 1] D`` (the affine families: the grid of the whole batch is then one matrix
    product ``[B*2, 3] @ [3, H*W]``, far cheaper on a CPU than ``B`` tiny batched products).

    ``F.grid_sample`` takes absolute normalised coordinates, and ``(2i + 1) / W - 1`` survives its
    round trip to pixel units exactly only when ``W`` is a power of two. The image is therefore
    zero-padded on the right and bottom to powers of two (the value ``grid_sample`` assumes
    outside anyway) and the grid is ``centre + shift``, so a zero shift reads every pixel exactly.
    On the CPU, a ``shift`` takes the compiled sampler where it builds
    (``vitae.transforms.affine_sampler.shift_sample``): the same reads without padding or grid.
    """
    if affine_shift is None and affine_sampler.usable(images):
        return affine_sampler.shift_sample(images, shift)  # no padding and no grid: the compiled sampler
    b, _, h, w = images.shape
    hp, wp, centre, to_padded, points = _sampling_constants(h, w, images.device, images.dtype)
    if (hp, wp) != (h, w):
        images = F.pad(images, (0, wp - w, 0, hp - h))
    if affine_shift is None:
        # one factor for both axes when they are padded alike: a scalar product, far cheaper on a
        # CPU than a broadcast over a last dimension of 2 (and the same numbers)
        scale = w / wp if w / wp == h / hp else to_padded
        grid = centre.view(1, h, w, 2) + shift.to(images.dtype) * scale
    else:
        grid = _affine_grid(affine_shift.to(images.dtype) * to_padded, h, w, centre, points)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Transform(nn.Module):
    """Base class: a family of invertible spatial transformations indexed by ``theta``.

    Subclasses implement ``transform_points``; ``warp`` and ``prepare`` follow from it.
    """

    name: str = ""
    theta_dim: int = 0

    def check_theta(self, theta: torch.Tensor) -> None:
        if not isinstance(theta, torch.Tensor) or theta.dim() != 2 or theta.shape[1] != self.theta_dim:
            got = list(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__
            raise ValueError(f"{self.name}: theta must have shape [B, {self.theta_dim}], got {got}")

    def check_images(self, images: torch.Tensor, theta: torch.Tensor) -> None:
        """``images`` must be ``[B, C, H, W]`` with theta's ``B`` (never silently broadcast)."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] != theta.shape[0]:
            got = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{self.name}: images must have shape [{theta.shape[0]}, C, H, W] (theta's batch), got {got}")

    def check_points(self, points: torch.Tensor, theta: torch.Tensor) -> None:
        if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[0] != theta.shape[0] \
                or points.shape[-1] != 2:
            got = list(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
            raise ValueError(f"{self.name}: points must have shape [{theta.shape[0]}, P, 2], got {got}")

    def transform_points(self, points: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def warp(self, images: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        self.check_images(images, theta)
        b, _, h, w = images.shape
        grid = identity_grid(b, h, w, device=images.device, dtype=theta.dtype)
        shift = self.transform_points(grid, theta, inverse=inverse) - grid  # exactly 0 at theta = 0
        return displaced_sample(images, shift=shift.reshape(b, h, w, 2))

    def prepare(self, theta: torch.Tensor) -> Callable[..., torch.Tensor]:
        """``warp`` with ``theta`` bound: ``prepare(theta)(images, inverse=False)``."""
        self.check_theta(theta)

        def warp(images: torch.Tensor, inverse: bool = False) -> torch.Tensor:
            return self.warp(images, theta, inverse=inverse)

        return warp

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
        self.check_points(points, theta)
        m = self.matrix(theta, inverse=inverse)
        return points @ m[:, :, :2].transpose(1, 2) + m[:, :, 2].unsqueeze(1)

    def warp(self, images: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        self.check_images(images, theta)
        return warp_affine(images, self.matrix(theta, inverse=inverse))

    def prepare(self, theta: torch.Tensor) -> Callable[..., torch.Tensor]:
        """One matrix for both directions: the inverse is the closed-form ``[A^-1 | -A^-1 b]``
        of the forward matrix (for the diffeomorphic family this saves a second ``matrix_exp``)."""
        self.check_theta(theta)
        forward = self.matrix(theta)
        backward = invert_affine(forward)

        def warp(images: torch.Tensor, inverse: bool = False) -> torch.Tensor:
            self.check_images(images, theta)
            return warp_affine(images, backward if inverse else forward)

        return warp


def warp_affine(images: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``warp`` for the ``[B, 2, 3]`` matrix ``m``: the displacement is ``[x, y, 1] (m - [I | 0])^T``.
    On the CPU, the compiled sampler where it can (``vitae.transforms.affine_sampler``)."""
    if affine_sampler.usable(images):
        return affine_sampler.affine_sample(images, m)
    eye = torch.eye(2, 3, dtype=m.dtype, device=m.device)
    return displaced_sample(images, affine_shift=(m - eye).transpose(1, 2))


def invert_rows(a: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Rows ``[..., 6]`` (``[A | b]`` row by row, along ``dim``) of the exact inverse
    ``[A^-1 | -A^-1 b]``, the 2x2 inverse in closed form; the identity maps to itself exactly.
    ``dim=0`` takes CPAB's tables ``[6, R]`` as they are: six contiguous rows, no transposes."""
    l00, l01, b0, l10, l11, b1 = a.unbind(dim)
    det = l00 * l11 - l01 * l10
    i00, i01, i10, i11 = l11 / det, -l01 / det, -l10 / det, l00 / det
    return torch.stack([i00, i01, -(i00 * b0 + i01 * b1), i10, i11, -(i10 * b0 + i11 * b1)], dim=dim)


def invert_affine(m: torch.Tensor) -> torch.Tensor:
    """Exact inverse of ``[A | b]`` matrices ``[..., 2, 3]``: ``[A^-1 | -A^-1 b]``."""
    return invert_rows(m.flatten(-2)).unflatten(-1, (2, 3))
