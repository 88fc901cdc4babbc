"""The Bernoulli log-likelihood on the CPU as one compiled pass (``bernoulli.cpp``): each image's
``sum x log p + (1 - x) log(1 - p)`` and, where a gradient is wanted, every pixel's derivative of
it, from the decoder's logits or from a (warped) mean. ``vitae.models.likelihoods`` takes this path
for float32 and float64 images on the CPU wherever the kernel builds (``vitae.kernels``;
``VITAE_KERNELS=torch`` keeps torch's element-wise chain, which also stays the path on CUDA and
for other dtypes). Values agree with torch's path to rounding (tests in
``tests/models/test_bernoulli_kernel.py``).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from vitae import kernels
from vitae.kernels import pointer

P, D, N, I = ctypes.c_void_p, ctypes.c_double, ctypes.c_int64, ctypes.c_int
KERNEL = kernels.Kernel(Path(__file__).with_name("bernoulli.cpp"),
                        {"vitae_bernoulli_logits": [P, P, D, P, P, N, N, I], "vitae_bernoulli_mean": [P, P, D, D, P, P, N, N, I]})
MAX_BOUND = 80.0  # exp(-80) is still a normal float: the kernel's exp stops short of subnormals


def _usable(x: torch.Tensor, t: torch.Tensor) -> bool:
    return (x.shape == t.shape and x.dim() >= 2 and x.dtype == t.dtype and x.device == t.device
            and x.numel() > 0 and KERNEL.usable(t))


def takes_logits(x: torch.Tensor, logits: torch.Tensor, bound: float) -> bool:
    """Whether images ``x`` and ``logits`` (``[B, ...]``, one shape and dtype) clamped to
    ``+-bound`` take the compiled path."""
    return 0 < bound <= MAX_BOUND and _usable(x, logits)


def takes_mean(x: torch.Tensor, mean: torch.Tensor, eps: float) -> bool:
    """Whether images ``x`` and a ``mean`` (``[B, ...]``, one shape and dtype) clamped to
    ``[eps, 1 - eps]`` take the compiled path."""
    return mean.dtype in kernels.DTYPES and torch.finfo(mean.dtype).tiny <= eps < 0.5 and _usable(x, mean)


def _image_major(t: torch.Tensor) -> bool:
    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


def _in_blocks(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``t`` in one layout, each image's pixels in one block (plain or channels-last);
    a copy only where they are not."""
    if not _image_major(t):
        t = t.contiguous()
    if any(a != b and size > 1 for a, b, size in zip(x.stride(), t.stride(), t.shape)):
        x = torch.empty_like(t).copy_(x)
    return x, t


def _run(name: str, x: torch.Tensor, t: torch.Tensor, bounds: tuple[float, ...], grad: bool):
    x, t = _in_blocks(x, t)
    sums = t.new_empty(t.shape[0])
    pixel_grad = torch.empty_like(t) if grad else None
    KERNEL(name, t.dtype, pointer(x), pointer(t), *bounds, pointer(sums), pointer(pixel_grad), t.shape[0],
           t[0].numel(), torch.get_num_threads())
    return sums, pixel_grad


def from_logits(x: torch.Tensor, logits: torch.Tensor, bound: float, grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per image ``sum x l - softplus(l)`` for ``l = clamp(logits, -bound, bound)`` ``[B]``, and
    with ``grad`` each pixel's ``x - sigmoid(l)`` (zero where the clamp holds ``l``; ``None``
    without). Callers check ``takes_logits`` first."""
    if not 0 < bound <= MAX_BOUND:
        raise ValueError(f"bound must be in (0, {MAX_BOUND}], got {bound!r}")
    return _run("vitae_bernoulli_logits", x, logits, (bound,), grad)


def from_mean(x: torch.Tensor, mean: torch.Tensor, eps: float, grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per image ``sum x log p + (1 - x) log(1 - p)`` for ``p = clamp(mean, eps, 1 - eps)``
    ``[B]``, and with ``grad`` each pixel's ``(x - p) / (p (1 - p))`` (zero where the clamp moved
    the mean). Callers check ``takes_mean`` first."""
    if not torch.finfo(mean.dtype).tiny <= eps < 0.5:
        raise ValueError(f"eps must be in [{torch.finfo(mean.dtype).tiny}, 0.5) for {mean.dtype}, got {eps!r}")
    return _run("vitae_bernoulli_mean", x, mean, (eps, 1 - eps), grad)
