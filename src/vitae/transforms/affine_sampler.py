"""The affine families' bilinear warp on the CPU as one compiled pass (``affine_sampler.cpp``).

``F.grid_sample`` needs the whole sampling grid as a tensor, and its gradient comes back as one
per pixel, which ``affine_grid``'s backward then reduces to the six numbers of the matrix; for the
exact identity the image is also padded to powers of two (``vitae.transforms.base``). For an
affine warp all of that is arithmetic on the matrix: the kernel computes each pixel's source point
from it as it goes, and sums the matrix's gradient per image while it visits the pixels. The
frame, the zeros outside and the bit-exact identity are those of ``base.displaced_sample``; values
agree with it to rounding (tests in ``tests/transforms/test_affine_sampler.py``).

It is used for float32 and float64 images on the CPU wherever it can be built: on first use, with
the system's C++ compiler (``$CXX``, else ``c++``, ``g++``), into ``$VITAE_KERNEL_DIR`` (default
``~/.cache/vitae/kernels``), under a name that hashes the source and the flags, so a later run
loads it and processes building it at once each write their own file. ``VITAE_SAMPLER=torch``
keeps ``F.grid_sample`` (the path everywhere else: CUDA, other dtypes, and a machine where the
build fails, which says why once); ``VITAE_SAMPLER=compiled`` makes a failed build an error.
The two paths round differently, so a run's numbers depend on which one it took; resume on the
same machine stays exact. ``python benchmarks/warp_cost.py`` times the warp both ways.

First derivatives only (``once_differentiable``): nothing in vitae differentiates a warp twice.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from vitae.errors import VitaeError

SOURCE = Path(__file__).with_name("affine_sampler.cpp")
# -march=native: the library is built for the CPU it runs on (its name hashes that CPU's flags, so a
# home folder shared by different machines holds one per kind); -fopenmp: torch's OpenMP pool
FLAGS = ["-O3", "-march=native", "-fopenmp", "-std=c++17", "-shared", "-fPIC"]
# no vector gathers: on this AMD EPYC, and on Intel CPUs since the GDS microcode, they are slower
# than scalar loads (the bodies' warp forward and backward 2.7x and 2.4x slower with them). GCC 13
# and later spell it -mno-gather, GCC 12 -mtune-ctrl=^use_gather; other compilers and CPUs take
# neither, and the first that compiles is used
NO_GATHER = (["-mno-gather"], ["-mtune-ctrl=^use_gather"], [])
CHOICE = "VITAE_SAMPLER"  # "auto" (default), "torch" or "compiled"
KERNEL_DIR = "VITAE_KERNEL_DIR"
DTYPES = {torch.float32: "f32", torch.float64: "f64"}

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failure: str | None = None


def choice() -> str:
    value = os.environ.get(CHOICE, "auto")
    if value not in ("auto", "torch", "compiled"):
        raise VitaeError(f"{CHOICE}={value!r} is not a sampler; use auto, torch or compiled")
    return value


def kernel_dir() -> Path:
    if os.environ.get(KERNEL_DIR):
        return Path(os.environ[KERNEL_DIR])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vitae" / "kernels"


def compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++"):
        if name and shutil.which(name):
            return name
    return None


def cpu_flags() -> str:
    """What the CPU can do, as ``/proc/cpuinfo`` lists it (Linux), else the platform's name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def build() -> Path:
    """The compiled sampler's shared library, built now unless this source, compiler, flags and
    CPU have been built for before; raises ``VitaeError`` naming what failed."""
    cxx = compiler()
    if cxx is None:
        raise VitaeError("no C++ compiler found (set CXX, or install g++)")
    key = SOURCE.read_bytes() + " ".join([cxx, *FLAGS, repr(NO_GATHER), cpu_flags()]).encode()
    folder = kernel_dir()
    target = folder / f"affine_sampler-{hashlib.sha256(key).hexdigest()[:16]}.so"
    if target.exists():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise VitaeError(f"cannot write the compiled sampler to {folder} ({exc.strerror}); set {KERNEL_DIR} to a "
                         "writable folder") from None
    try:
        for extra in NO_GATHER:
            done = subprocess.run([cxx, *FLAGS, *extra, str(SOURCE), "-o", tmp], capture_output=True, text=True)
            if not done.returncode:
                break
        else:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise VitaeError(f"{cxx} could not build {SOURCE.name}: {last}")
        os.replace(tmp, target)  # whole or not there: a reader never loads half a library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _declare(library: ctypes.CDLL) -> ctypes.CDLL:
    p, i = ctypes.c_void_p, ctypes.c_int
    for suffix in DTYPES.values():
        getattr(library, f"vitae_affine_forward_{suffix}").argtypes = [p, p, p, p, p, p, i]
        getattr(library, f"vitae_affine_backward_{suffix}").argtypes = [p, p, p, p, p, p, p, p, p, i]
        for kind in ("forward", "backward"):
            getattr(library, f"vitae_affine_{kind}_{suffix}").restype = None
    return library


def library() -> ctypes.CDLL | None:
    """The loaded kernel, or ``None`` where ``F.grid_sample`` is to be used (see the module)."""
    global _library, _failure
    wanted = choice()
    if wanted == "torch":
        return None
    if _library is not None:
        return _library
    with _lock:
        if _library is None and _failure is None:
            try:
                _library = _declare(ctypes.CDLL(str(build())))
            except (VitaeError, OSError) as exc:
                _failure = str(exc)
                if wanted == "auto":
                    warnings.warn(f"the compiled affine sampler is unavailable, warps use F.grid_sample: {_failure}",
                                  RuntimeWarning, stacklevel=3)
        if _library is None and wanted == "compiled":
            raise VitaeError(f"{CHOICE}=compiled, but the compiled affine sampler is unavailable: {_failure}")
        return _library


def usable(images: torch.Tensor) -> bool:
    """Whether ``images`` take the compiled path: a CPU tensor of float32 or float64 with no more
    pixels than its offsets (``int32``) reach, outside ``torch.compile``'s tracing."""
    return (images.device.type == "cpu" and images.dtype in DTYPES and images.dim() == 4
            and 0 < images[0].numel() < 2**31 and not torch.compiler.is_compiling() and library() is not None)


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


def _ptr(t: torch.Tensor | None):
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)


class _AffineSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        images = _in_rows(images)
        out = torch.empty_like(images)  # the input's layout (channels-last stays so)
        sizes, strides = _shape(images)
        _, out_strides = _shape(out)
        kernel = getattr(library(), f"vitae_affine_forward_{DTYPES[images.dtype]}")
        kernel(_ptr(images), sizes, strides, _ptr(matrix), _ptr(out), out_strides, torch.get_num_threads())
        ctx.save_for_backward(images, matrix)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        images, matrix = ctx.saved_tensors
        want_images, want_matrix = ctx.needs_input_grad
        grad_out = _in_rows(grad_out)  # an expanded gradient (of a sum, say) is copied
        grad_images = torch.empty_like(images) if want_images else None  # zeroed by the kernel
        grad_matrix = torch.empty_like(matrix) if want_matrix else None
        sizes, strides = _shape(images)
        _, grad_out_strides = _shape(grad_out)
        grad_images_strides = _shape(grad_images)[1] if grad_images is not None else strides
        kernel = getattr(library(), f"vitae_affine_backward_{DTYPES[images.dtype]}")
        kernel(_ptr(images), sizes, strides, _ptr(matrix), _ptr(grad_out), grad_out_strides, _ptr(grad_images),
               grad_images_strides, _ptr(grad_matrix), torch.get_num_threads())
        return grad_images, grad_matrix


def affine_sample(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``warp`` of ``images`` ``[B, C, H, W]`` by the ``[B, 2, 3]`` matrices ``[A | b]`` through
    the compiled kernel; differentiable in both. Callers check ``usable(images)`` first."""
    if not isinstance(matrix, torch.Tensor) or matrix.shape != (images.shape[0], 2, 3):
        got = list(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix).__name__
        raise ValueError(f"matrix must have shape [{images.shape[0]}, 2, 3] (the images' batch), got {got}")
    return _AffineSample.apply(images, matrix.to(images.dtype).contiguous())
