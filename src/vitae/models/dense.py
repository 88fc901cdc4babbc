"""Dense layers whose float32 products on the CPU go through oneDNN rather than MKL.

torch sends a float32 ``F.linear`` on the CPU to MKL. On the AMD EPYC these models were timed on,
MKL ran a 4096^3 product at 185 GFLOP/s where oneDNN, which torch also carries (its convolutions
and bfloat16 products), ran it at 422, and the bodies encoder's first layer (64 x 80,000 x 256) in
17.5 against 8.2 ms (``python benchmarks/dense.py``, one run; it also times whole steps both
ways). ``linear`` therefore computes ``x W^T + b`` and its gradients (``dx = dy W``,
``dW = dy^T x``, ``db = sum dy``) with oneDNN's product (``torch.ops.mkldnn._linear_pointwise``,
which reads transposed operands in place).

Where: float32 products of at least ``MIN_PRODUCT`` multiply-adds on the CPU, outside bfloat16
autocast (whose products torch already gives to oneDNN) and ``torch.compile``'s tracing, where
torch was built with oneDNN, unless ``VITAE_KERNELS=torch`` (which keeps torch's own path
everywhere, as on CUDA and for float64). The results are the product's in another summation
order, equal to MKL's to rounding (``tests/models/test_dense.py``), and the same bits on every
call, so a resumed run still ends where an uninterrupted one does. First derivatives only:
nothing in vitae differentiates a network twice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from vitae import kernels

ONEDNN = True  # False: torch's own F.linear everywhere (benchmarks and tests compare the two)
# multiply-adds of a product (rows x in x out) from which oneDNN takes it: below, its fixed cost
# of some 20 us a call outweighs the faster arithmetic (512 x 128 x 64, forward and backward: 248
# against 321 us; 512 x 784 x 128: 2.4 against 1.2 ms; timed while building this)
MIN_PRODUCT = 5_000_000


def available() -> bool:
    """Whether this torch carries oneDNN's product (x86 and ARM builds with oneDNN do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def usable(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether ``linear(x, weight, bias)`` takes oneDNN's product (see the module docstring): also
    only for products of at least ``MIN_PRODUCT`` multiply-adds, and operands that fit together
    (sizes, dtypes, devices; others go to ``F.linear``, whose error names them)."""
    if not (x.dim() >= 1 and weight.dim() == 2 and x.shape[-1] == weight.shape[1] > 0):
        return False
    if bias is not None and not (bias.shape == (weight.shape[0],) and bias.dtype == x.dtype and bias.device == x.device):
        return False
    rows = x.numel() // x.shape[-1]
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and rows * weight.numel() >= MIN_PRODUCT and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling() and ONEDNN and kernels.choice() != "torch" and available())


def _plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` (2-D) as oneDNN reads it in place: rows or columns contiguous; a copy otherwise (an
    expanded gradient, a strided slice)."""
    return t if t.is_contiguous() or t.t().is_contiguous() else t.contiguous()


def _product(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a b^T (+ bias)`` by oneDNN: ``a`` ``[N, K]``, ``b`` ``[M, K]``, either may be a transposed view."""
    return torch.ops.mkldnn._linear_pointwise(_plain(a), _plain(b), bias, "none", [], "")


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _product(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        want_x, want_weight, want_bias = ctx.needs_input_grad
        grad_x = _product(grad, weight.t()) if want_x else None  # dy W
        grad_weight = _product(grad.t(), x.t()) if want_weight else None  # dy^T x
        grad_bias = grad.sum(0) if ctx.has_bias and want_bias else None
        return grad_x, grad_weight, grad_bias


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN where ``usable``; ``x`` ``[..., in]``."""
    if not usable(x, weight, bias):
        return F.linear(x, weight, bias)
    if x.dim() == 2:
        return _Linear.apply(x, weight, bias)
    flat = _Linear.apply(x.reshape(-1, x.shape[-1]), weight, bias)
    return flat.reshape(*x.shape[:-1], weight.shape[0])


class Dense(nn.Linear):
    """``nn.Linear`` (the same parameters, initialisation and checkpoints) computed by ``linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
