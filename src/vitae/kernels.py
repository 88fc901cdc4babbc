"""vitae's compiled CPU kernels: C++ sources shipped with the package, built on first use with the
system's C++ compiler and loaded with ``ctypes`` (no torch headers, no build step at install).

* **Where.** A kernel is built into ``$VITAE_KERNEL_DIR`` (default ``kernels/`` in
  ``$VITAE_CACHE``, else in ``~/.cache/vitae``). Its name hashes its source, the compiler, the
  flags and the CPU: a later process loads it at once, and a home folder shared by different
  machines holds one per kind of CPU. Processes building it at the same time (torchrun's ranks)
  each write a temporary file of their own and rename it into place.
* **Whether.** ``VITAE_KERNELS`` chooses. ``auto`` (the default) uses a kernel where it builds,
  and otherwise says why once and keeps torch's own path. ``torch`` keeps torch's path
  everywhere. ``compiled`` makes a failed build an error. The two paths round differently, so a
  run's numbers depend on which one it took; resume on one machine with the same setting stays
  exact.
* **Threads.** The kernels (``vitae.transforms.affine_sampler``, ``affine_exp``, ``cpab_walk``
  and ``cpab_flows``, ``vitae.models.bernoulli_kernel`` and ``vitae.data.rasterise``) run on torch's
  OpenMP pool: built with ``-fopenmp`` and loaded into a process that runs torch, they share its
  runtime by its soname. Threads of a pool of their own would have to wait for torch's, which
  spin for a while after each of its parallel operations.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Callable

import torch

from vitae import files
from vitae.errors import VitaeError

# -march=native: built for the CPU it runs on (the name hashes that CPU's flags)
FLAGS = ["-O3", "-march=native", "-fopenmp", "-std=c++17", "-shared", "-fPIC"]
# no vector gathers: on the AMD EPYC these kernels were timed on, and on Intel CPUs since the GDS
# microcode, they are slower than scalar loads (the affine warp was much slower with them). GCC 13
# and later spell it -mno-gather, GCC 12 -mtune-ctrl=^use_gather; other compilers and CPUs take
# neither, and the first that compiles is used
NO_GATHER = (["-mno-gather"], ["-mtune-ctrl=^use_gather"], [])
DTYPES = {torch.float32: "f32", torch.float64: "f64"}  # every kernel comes in both, suffixed so
CHOICE = "VITAE_KERNELS"  # "auto" (default), "torch" or "compiled"
KERNEL_DIR = "VITAE_KERNEL_DIR"

_lock = threading.Lock()
_loaded: dict[Path, ctypes.CDLL] = {}
_failed: dict[Path, str] = {}
_warned: set[str] = set()


def choice() -> str:
    value = os.environ.get(CHOICE, "auto")
    if value not in ("auto", "torch", "compiled"):
        raise VitaeError(f"{CHOICE}={value!r} is not a choice of kernels; use auto, torch or compiled")
    return value


def kernel_dir() -> Path:
    """``$VITAE_KERNEL_DIR``, else ``kernels/`` in vitae's cache (``$VITAE_CACHE``, else ``~/.cache/vitae``)."""
    if os.environ.get(KERNEL_DIR):
        return Path(os.environ[KERNEL_DIR])
    return Path(os.environ.get("VITAE_CACHE") or Path.home() / ".cache" / "vitae") / "kernels"


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


def build(source: Path) -> Path:
    """The shared library of ``source``, built now unless this source, compiler, flags and CPU
    have been built for before; raises ``VitaeError`` naming what failed."""
    cxx = compiler()
    if cxx is None:
        raise VitaeError("no C++ compiler found (set CXX, or install g++)")
    key = source.read_bytes() + " ".join([cxx, *FLAGS, repr(NO_GATHER), cpu_flags()]).encode()
    folder = kernel_dir()
    target = folder / f"{source.stem}-{hashlib.sha256(key).hexdigest()[:16]}.so"
    if target.exists():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VitaeError(f"cannot write the compiled {source.stem} to {folder} ({exc.strerror}); set {KERNEL_DIR} "
                         "to a writable folder") from None

    def compile_into(tmp: Path) -> None:
        for extra in NO_GATHER:
            done = subprocess.run([cxx, *FLAGS, *extra, str(source), "-o", str(tmp)], capture_output=True, text=True)
            if not done.returncode:
                return
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise VitaeError(f"{cxx} could not build {source.name}: {last}")

    files.replace_by_path(target, compile_into)  # whole or not there: a reader never loads half a library
    return target


def load(source: Path, declare: Callable[[ctypes.CDLL], ctypes.CDLL]) -> ctypes.CDLL | None:
    """The loaded kernel of ``source`` (``declare`` sets its functions' argument types), or
    ``None`` where torch's path is to be used (see the module)."""
    wanted = choice()
    if wanted == "torch":
        return None
    library = _loaded.get(source)
    if library is not None:
        return library
    with _lock:
        if source not in _loaded and source not in _failed:
            try:
                _loaded[source] = declare(ctypes.CDLL(str(build(source))))
            except (VitaeError, OSError) as exc:
                _failed[source] = str(exc)
                if wanted == "auto" and str(exc) not in _warned:  # a missing compiler: one warning for all
                    _warned.add(str(exc))
                    warnings.warn(f"vitae's compiled {source.stem} is unavailable, torch's path is used: {exc}",
                                  RuntimeWarning, stacklevel=3)
        if source not in _loaded and wanted == "compiled":
            raise VitaeError(f"{CHOICE}=compiled, but the compiled {source.stem} is unavailable: {_failed[source]}")
        return _loaded.get(source)


def forget() -> None:
    """Drop what was loaded and what failed, so that the next use builds or loads afresh (tests)."""
    with _lock:
        _loaded.clear()
        _failed.clear()
        _warned.clear()


class Kernel:
    """One C++ source of the package and its functions: ``functions`` maps each name to its
    ``ctypes`` argument types (each function exists per dtype of ``dtypes``, ``NAME_f32`` and
    ``NAME_f64`` by default, and returns nothing, or the ``ctypes`` type that ``returns`` names
    for it). ``kernel(name, dtype, *args)`` calls it and hands back what it returns."""

    def __init__(self, source: Path, functions: dict[str, list], dtypes: tuple[torch.dtype, ...] = tuple(DTYPES),
                 returns: dict[str, type] | None = None):
        self.source, self.functions, self.dtypes, self.returns = source, functions, dtypes, returns or {}

    def _declare(self, library: ctypes.CDLL) -> ctypes.CDLL:
        for name, argtypes in self.functions.items():
            for suffix in (DTYPES[dtype] for dtype in self.dtypes):
                function = getattr(library, f"{name}_{suffix}")
                function.argtypes, function.restype = argtypes, self.returns.get(name)
        return library

    def library(self) -> ctypes.CDLL | None:
        """The loaded library, or ``None`` where torch's path is to be used (see the module)."""
        return load(self.source, self._declare)

    def usable(self, t: torch.Tensor) -> bool:
        """Whether ``t`` can take this kernel: one of its dtypes on the CPU, outside
        ``torch.compile``'s tracing, with the library loaded."""
        return (t.device.type == "cpu" and t.dtype in self.dtypes and not torch.compiler.is_compiling()
                and self.library() is not None)

    def __call__(self, name: str, dtype: torch.dtype, *args):
        return getattr(self.library(), f"{name}_{DTYPES[dtype]}")(*args)


def check_input(name: str, t, shape: str, fits: Callable[[torch.Tensor], bool]) -> None:
    """The kernels' argument check: ``t`` must be a float32 or float64 tensor on the CPU whose
    shape ``fits`` (described as ``shape``, e.g. ``[B, 6]``); else a ``ValueError`` that names
    ``name`` and says what it got."""
    if isinstance(t, torch.Tensor) and t.dtype in DTYPES and t.device.type == "cpu" and fits(t):
        return
    got = f"{t.dtype} {list(t.shape)} on {t.device}" if isinstance(t, torch.Tensor) else type(t).__name__
    raise ValueError(f"{name} must be a {shape} float32 or float64 tensor on the CPU, got {got}")


def pointer(t: torch.Tensor | None) -> ctypes.c_void_p:
    """A tensor's data for a kernel (``None``: a null pointer, for an output not wanted)."""
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)
