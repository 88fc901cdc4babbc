"""The diffeomorphic affine family's ``expm`` on the CPU as a compiled kernel (``affine_exp.cpp``):
``[A | b] = expm([[g11, g12, g13], [g21, g22, g14], [0, 0, 0]])`` for a batch of parameters, and
its gradient, each matrix by scaling and squaring in double precision (its own number of
squarings, so that one image's matrix does not depend on the rest of the batch) and the gradient
by reverse-mode differentiation of those same operations. ``torch.linalg.matrix_exp`` stays the
path on CUDA, for other dtypes and with ``VITAE_KERNELS=torch`` (``vitae.kernels``). Tests in
``tests/transforms/test_affine_exp.py``.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from vitae import kernels
from vitae.kernels import pointer

P, N, I = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
KERNEL = kernels.Kernel(Path(__file__).with_name("affine_exp.cpp"),
                        {"vitae_affine_exp": [P, P, N, I], "vitae_affine_exp_back": [P, P, P, N, I]})


def usable(theta: torch.Tensor) -> bool:
    """Whether ``theta`` ``[B, 6]`` takes the compiled ``expm`` (float32 or float64 on the CPU)."""
    return KERNEL.usable(theta)


class _Expm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta: torch.Tensor) -> torch.Tensor:
        theta = theta.contiguous()
        out = torch.empty_like(theta)
        KERNEL("vitae_affine_exp", theta.dtype, pointer(theta), pointer(out), theta.shape[0], torch.get_num_threads())
        ctx.save_for_backward(theta)
        return out.view(-1, 2, 3)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (theta,) = ctx.saved_tensors
        grad = grad.to(theta.dtype).reshape(-1, 6).contiguous()
        grad_theta = torch.empty_like(theta)
        KERNEL("vitae_affine_exp_back", theta.dtype, pointer(theta), pointer(grad), pointer(grad_theta), theta.shape[0],
               torch.get_num_threads())
        return grad_theta


def expm(theta: torch.Tensor) -> torch.Tensor:
    """The ``[B, 2, 3]`` top rows of ``expm`` of each ``theta`` ``[B, 6]`` (row by row, bottom
    row zero); differentiable. Callers check ``usable(theta)`` first."""
    kernels.check_input("theta", theta, "[B, 6]", lambda t: t.dim() == 2 and t.shape[1] == 6)
    return _Expm.apply(theta)
