"""The bilinear warp on the CPU as one compiled pass (``affine_sampler.cpp``): the affine
families' (``affine_sample``, from a 2x3 matrix per image) and any other (``shift_sample``, from
a displacement per pixel, as ``base.displaced_sample`` takes it: CPAB's).

``F.grid_sample`` needs the whole sampling grid as a tensor, and its gradient comes back as one
per pixel, which ``affine_grid``'s backward then reduces to the six numbers of the matrix; for the
exact identity the image is also padded to powers of two (``vitae.transforms.base``). For an
affine warp all of that is arithmetic on the matrix: the kernel computes each pixel's source point
from it as it goes, and sums the matrix's gradient per image while it visits the pixels. The
frame, the zeros outside and the bit-exact identity are those of ``base.displaced_sample``; values
agree with it to rounding (tests in ``tests/transforms/test_affine_sampler.py``).

For a displacement per pixel, the kernel saves ``F.grid_sample``'s padding to powers of two and
its grid: it reads each pixel at its own position plus the displacement, in pixel units, so a zero
displacement copies the pixel bit for bit, and its gradient to the displacement is written per
pixel (tests in ``tests/transforms/test_shift_sampler.py``).

It is used for float32 and float64 images on the CPU wherever it can be built (``vitae.kernels``:
built on first use with the system's C++ compiler, ``VITAE_KERNELS=torch`` keeps
``F.grid_sample``, which also stays the path on CUDA and for other dtypes).
``python benchmarks/warp_cost.py`` times the warp both ways.

First derivatives only (``once_differentiable``): nothing in vitae differentiates a warp twice.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from vitae import kernels
from vitae.kernels import pointer

P, I = ctypes.c_void_p, ctypes.c_int
KERNEL = kernels.Kernel(Path(__file__).with_name("affine_sampler.cpp"),
                        {"vitae_affine_forward": [P, P, P, P, P, P, I], "vitae_affine_backward": [P] * 9 + [I],
                         "vitae_shift_forward": [P, P, P, P, P, P, I], "vitae_shift_backward": [P] * 9 + [I]})


def usable(images: torch.Tensor) -> bool:
    """Whether ``images`` take the compiled path: a CPU tensor of float32 or float64 with no more
    pixels than its offsets (``int32``) reach, outside ``torch.compile``'s tracing."""
    return images.dim() == 4 and 0 < images[0].numel() < 2**31 and KERNEL.usable(images)


def _dense(t: torch.Tensor) -> bool:
    return all(stride > 0 or size == 1 for size, stride in zip(t.shape, t.stride()))


def _in_rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` with its pixels in rows (a row's stride W times a pixel's: plain or channels-last),
    as the kernel reads them; a copy only for other layouts, or where an address repeats."""
    if _dense(t) and t.stride(2) == t.shape[3] * t.stride(3):
        return t
    return t.contiguous()


def _shape(t: torch.Tensor):
    return (ctypes.c_int64 * 4)(*t.shape), (ctypes.c_int64 * 4)(*t.stride())


class _Sample(torch.autograd.Function):
    """The kernel's warp of ``images`` from ``source``, a ``[B, 2, 3]`` matrix (``kind``
    ``"affine"``) or a ``[B, H, W, 2]`` displacement (``"shift"``), contiguous."""

    @staticmethod
    def forward(ctx, images: torch.Tensor, source: torch.Tensor, kind: str) -> torch.Tensor:
        images = _in_rows(images)
        out = torch.empty_like(images)  # the input's layout (channels-last stays so)
        sizes, strides = _shape(images)
        _, out_strides = _shape(out)
        KERNEL(f"vitae_{kind}_forward", images.dtype, pointer(images), sizes, strides, pointer(source), pointer(out),
               out_strides, torch.get_num_threads())
        ctx.save_for_backward(images, source)
        ctx.kind = kind
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        images, source = ctx.saved_tensors
        want_images, want_source, _ = ctx.needs_input_grad
        grad_out = _in_rows(grad_out)  # an expanded gradient (of a sum, say) is copied
        grad_images = torch.empty_like(images) if want_images else None  # zeroed by the kernel
        grad_source = torch.empty_like(source) if want_source else None
        sizes, strides = _shape(images)
        _, grad_out_strides = _shape(grad_out)
        grad_images_strides = _shape(grad_images)[1] if grad_images is not None else strides
        KERNEL(f"vitae_{ctx.kind}_backward", images.dtype, pointer(images), sizes, strides, pointer(source),
               pointer(grad_out), grad_out_strides, pointer(grad_images), grad_images_strides, pointer(grad_source),
               torch.get_num_threads())
        return grad_images, grad_source, None


def _check_images(images) -> None:
    kernels.check_input("images", images, "[B, C, H, W]", lambda t: t.dim() == 4)


def _check_shape(name: str, t, shape: tuple[int, ...], of: str) -> None:
    """``t`` (``name``) must have ``shape``, that ``of`` the images."""
    if not isinstance(t, torch.Tensor) or t.shape != shape:
        got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must have shape [{', '.join(map(str, shape))}] ({of}), got {got}")


def affine_sample(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``warp`` of ``images`` ``[B, C, H, W]`` by the ``[B, 2, 3]`` matrices ``[A | b]`` through
    the compiled kernel; differentiable in both. Callers check ``usable(images)`` first."""
    _check_images(images)
    _check_shape("matrix", matrix, (images.shape[0], 2, 3), "the images' batch")
    return _Sample.apply(images, matrix.to(images.dtype).contiguous(), "affine")


def shift_sample(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``base.displaced_sample(images, shift=shift)`` through the compiled kernel: ``images``
    ``[B, C, H, W]`` read at every pixel centre moved by ``shift`` ``[B, H, W, 2]`` (normalised
    units), bilinear, zeros outside; differentiable in both. Callers check ``usable(images)`` first."""
    _check_images(images)
    b, _, h, w = images.shape
    _check_shape("shift", shift, (b, h, w, 2), "the images' batch and size")
    return _Sample.apply(images, shift.to(images.dtype).contiguous(), "shift")
