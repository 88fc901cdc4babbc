"""CPAB's stepping integrator on the CPU as a compiled kernel (``cpab_walk.cpp``), for
``vitae.transforms.cpab``: the same walk as its eager ``_walk`` (the same steps, sub-steps and
cell choices; values to rounding) and the same hand-written gradient, with each point's steps in
registers instead of gathers, index lists and scatters of whole arrays per step. The backward
walks each point again rather than keeping the record of its steps. Where the CPU has AVX-512
and an image has at most 64 cells in double (128 in float), the kernel walks L points at a time
in its vector lanes (16 in float, 8 in double): the same end points bit for bit as its scalar
walk, the gradients to rounding (summed in another order). ``VECTOR = False`` keeps the scalar
walk (tests compare the two).

Used for float32 and float64 on the CPU wherever it builds (``vitae.kernels``; ``VITAE_KERNELS=torch``
keeps the eager walk, as do CUDA and other dtypes). Tests in ``tests/transforms/test_cpab_walk.py``;
``python benchmarks/cpab.py`` and ``benchmarks/table5.py --trained-epochs 3`` time it.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from vitae import kernels
from vitae.kernels import pointer

P, N, I = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
KERNEL = kernels.Kernel(Path(__file__).with_name("cpab_walk.cpp"),
                        {"vitae_cpab_walk": [P, P, P, N, P, P, P, N, P, P, I, I],
                         "vitae_cpab_walk_back": [P, P, P, N, P, P, P, N, P, P, P, P, P, P, I, I],
                         "vitae_cpab_vector_lanes": []},
                        returns={"vitae_cpab_vector_lanes": ctypes.c_int})
VECTOR = True  # the vector walk where it applies; False: the scalar walk


def vector_lanes(dtype: torch.dtype) -> int:
    """The vector walk's lanes in ``dtype`` on this CPU: 0 where it was not built (no AVX-512) or
    the kernel is not in use."""
    return KERNEL("vitae_cpab_vector_lanes", dtype) if KERNEL.library() is not None else 0


def usable(x: torch.Tensor) -> bool:
    """Whether points ``x`` take the compiled walk (float32 or float64 on the CPU)."""
    return KERNEL.usable(x)


class Walk:
    """What the backward needs of one compiled walk: its start points, cells and tables."""

    def __init__(self, x, y, start, coarse, fine, nx: int, ny: int, n_steps: int, n_sub: int):
        self.x, self.y, self.start = x.contiguous(), y.contiguous(), start.to(torch.int32).contiguous()
        self.coarse, self.fine = coarse.contiguous(), fine.contiguous()
        self.geometry = (ctypes.c_int32 * 5)(nx, ny, 4 * nx * ny, n_steps, n_sub)
        self.vector = int(VECTOR)  # the backward walks again as the forward did

    def _common(self):
        return (pointer(self.x), pointer(self.y), pointer(self.start), self.x.shape[0], pointer(self.coarse),
                pointer(self.fine), self.geometry, self.coarse.shape[1])

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        x1, y1 = torch.empty_like(self.x), torch.empty_like(self.y)
        KERNEL("vitae_cpab_walk", self.x.dtype, *self._common(), pointer(x1), pointer(y1), torch.get_num_threads(),
               self.vector)
        return x1, y1

    def back(self, gx, gy, grad_coarse, grad_fine, need_points: bool):
        """Adds the gradient of the walk's end points ``(gx, gy)`` to ``grad_coarse`` and
        ``grad_fine`` (``[6, R]``, contiguous); the gradient to the start points, or ``None, None``."""
        gx, gy = gx.to(self.x.dtype).contiguous(), gy.to(self.x.dtype).contiguous()
        out_x = torch.empty_like(gx) if need_points else None
        out_y = torch.empty_like(gy) if need_points else None
        KERNEL("vitae_cpab_walk_back", self.x.dtype, *self._common(), pointer(gx), pointer(gy), pointer(grad_coarse),
               pointer(grad_fine), pointer(out_x), pointer(out_y), torch.get_num_threads(), self.vector)
        return out_x, out_y


def walk(x, y, coarse, fine, start, nx: int, ny: int, n_steps: int, n_sub: int):
    """``cpab._walk``'s result through the kernel: the end points and the record for ``back``."""
    record = Walk(x, y, start, coarse, fine, nx, ny, n_steps, n_sub)
    x1, y1 = record.forward()
    return x1, y1, record
