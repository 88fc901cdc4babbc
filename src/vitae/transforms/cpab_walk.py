"""CPAB's stepping integrator on the CPU as a compiled kernel (``cpab_walk.cpp``), for
``vitae.transforms.cpab``: the same walk as its eager ``_walk`` (the same steps, sub-steps and
cell choices; values to rounding) and the same hand-written gradient, with each point's steps in
registers instead of gathers, index lists and scatters of whole arrays per step. The backward
walks each point again rather than keeping the record of its steps.

Used for float32 and float64 on the CPU wherever it builds (``vitae.kernels``; ``VITAE_KERNELS=torch``
keeps the eager walk, as do CUDA and other dtypes). Tests in ``tests/transforms/test_cpab_walk.py``;
``python benchmarks/cpab.py`` and ``benchmarks/table5.py --trained-epochs 3`` time it.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from vitae import kernels

SOURCE = Path(__file__).with_name("cpab_walk.cpp")
DTYPES = {torch.float32: "f32", torch.float64: "f64"}


def _declare(library: ctypes.CDLL) -> ctypes.CDLL:
    p, n, i = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in DTYPES.values():
        forward = getattr(library, f"vitae_cpab_walk_{suffix}")
        forward.argtypes, forward.restype = [p, p, p, n, p, p, p, n, p, p, i], None
        backward = getattr(library, f"vitae_cpab_walk_back_{suffix}")
        backward.argtypes, backward.restype = [p, p, p, n, p, p, p, n, p, p, p, p, p, p, i], None
    return library


def usable(x: torch.Tensor) -> bool:
    """Whether points ``x`` take the compiled walk: float32 or float64 on the CPU, outside
    ``torch.compile``'s tracing, where the kernel loads."""
    return (x.device.type == "cpu" and x.dtype in DTYPES and not torch.compiler.is_compiling()
            and kernels.load(SOURCE, _declare) is not None)


def _ptr(t: torch.Tensor | None):
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)


class Walk:
    """What the backward needs of one compiled walk: its start points, cells and tables."""

    def __init__(self, x, y, start, coarse, fine, nx: int, ny: int, n_steps: int, n_sub: int):
        self.x, self.y, self.start = x.contiguous(), y.contiguous(), start.to(torch.int32).contiguous()
        self.coarse, self.fine = coarse.contiguous(), fine.contiguous()
        self.geometry = (ctypes.c_int32 * 5)(nx, ny, 4 * nx * ny, n_steps, n_sub)
        self.suffix = DTYPES[x.dtype]

    def _common(self):
        return (_ptr(self.x), _ptr(self.y), _ptr(self.start), self.x.shape[0], _ptr(self.coarse), _ptr(self.fine),
                self.geometry, self.coarse.shape[1])

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        x1, y1 = torch.empty_like(self.x), torch.empty_like(self.y)
        kernel = getattr(kernels.load(SOURCE, _declare), f"vitae_cpab_walk_{self.suffix}")
        kernel(*self._common(), _ptr(x1), _ptr(y1), torch.get_num_threads())
        return x1, y1

    def back(self, gx, gy, grad_coarse, grad_fine, need_points: bool):
        """Adds the gradient of the walk's end points ``(gx, gy)`` to ``grad_coarse`` and
        ``grad_fine`` (``[6, R]``, contiguous); the gradient to the start points, or ``None, None``."""
        gx, gy = gx.to(self.x.dtype).contiguous(), gy.to(self.x.dtype).contiguous()
        out_x = torch.empty_like(gx) if need_points else None
        out_y = torch.empty_like(gy) if need_points else None
        kernel = getattr(kernels.load(SOURCE, _declare), f"vitae_cpab_walk_back_{self.suffix}")
        kernel(*self._common(), _ptr(gx), _ptr(gy), _ptr(grad_coarse), _ptr(grad_fine), _ptr(out_x), _ptr(out_y),
               torch.get_num_threads())
        return out_x, out_y


def walk(x, y, coarse, fine, start, nx: int, ny: int, n_steps: int, n_sub: int):
    """``cpab._walk``'s result through the kernel: the end points and the record for ``back``."""
    record = Walk(x, y, start, coarse, fine, nx, ny, n_steps, n_sub)
    x1, y1 = record.forward()
    return x1, y1, record
