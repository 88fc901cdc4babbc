"""CPAB's cell maps over one sub-step and one step on the CPU as a compiled kernel
(``cpab_flows.cpp``): ``cpab.flows(a, t, (n_sub,))``, the same closed form (the linear part as
``mu I + N``, Horner for ``phi_1``, squarings, then the sub-step composed ``n_sub`` times for the
step; values to rounding), and its gradient by reverse mode through the same operations, in
place of a chain of some sixty small tensor operations and their backward per training step.

Used for float32 and float64 on the CPU wherever it builds (``vitae.kernels``;
``VITAE_KERNELS=torch`` keeps ``cpab.flows``, as do CUDA and other dtypes). Tests in
``tests/transforms/test_cpab_flows.py``.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from vitae import kernels
from vitae.kernels import pointer

P, N, I, D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
KERNEL = kernels.Kernel(Path(__file__).with_name("cpab_flows.cpp"),
                        {"vitae_cpab_flows": [P, P, P, N, D, I, I, I, I],
                         "vitae_cpab_flows_back": [P, P, P, P, N, D, I, I, I, I]})


def usable(a: torch.Tensor) -> bool:
    """Whether the maps ``a`` take the kernel (float32 or float64 on the CPU)."""
    return KERNEL.usable(a)


def squarings(a: torch.Tensor, t: float) -> int:
    """``cpab.flows``'s number of squarings: the time scaled so that the entrywise norm of every
    cell's ``t L`` is at most 1/2."""
    norm = float(a.detach().view(2, 3, -1)[:, :2].abs().sum((0, 1)).max()) * t if a.numel() else 0.0
    return max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0.5 else 0


class _Flows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, t: float, n_sub: int):
        a = a.contiguous()
        k = squarings(a, t)
        order = 8 if a.dtype == torch.float64 else 6
        fine, coarse = torch.empty_like(a), torch.empty_like(a)
        args = (a.shape[1], t * 0.5**k, k, order, n_sub, torch.get_num_threads())
        KERNEL("vitae_cpab_flows", a.dtype, pointer(a), pointer(fine), pointer(coarse), *args)
        ctx.save_for_backward(a)
        ctx.args = args
        return fine, coarse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_fine, grad_coarse):
        (a,) = ctx.saved_tensors
        grad_fine = grad_fine.to(a.dtype).contiguous() if grad_fine is not None else None
        grad_coarse = grad_coarse.to(a.dtype).contiguous() if grad_coarse is not None else None
        grad = torch.empty_like(a)
        KERNEL("vitae_cpab_flows_back", a.dtype, pointer(a), pointer(grad_fine), pointer(grad_coarse), pointer(grad),
               *ctx.args)
        return grad, None, None


def step_maps(a: torch.Tensor, t: float, n_sub: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``cpab.flows(a, t, (n_sub,))`` through the kernel: the maps ``[6, R]`` of every cell over
    the time ``t`` (the sub-step) and ``n_sub t`` (the step), for the velocity maps ``a``
    ``[6, R]``; differentiable in ``a``. Callers check ``usable(a)`` first."""
    kernels.check_input("a", a, "[6, R]", lambda t: t.dim() == 2 and t.shape[0] == 6)
    if not (isinstance(n_sub, int) and n_sub >= 1) or not t > 0:
        raise ValueError(f"t must be positive and n_sub a positive integer, got t={t!r}, n_sub={n_sub!r}")
    return _Flows.apply(a, float(t), n_sub)
