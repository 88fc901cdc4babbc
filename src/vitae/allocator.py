"""Freed CPU memory kept for reuse instead of handed back to the kernel.

glibc's ``malloc`` serves every block over 32 MB (and, until it adapts, over 128 KB) straight
from the kernel with ``mmap`` and returns it with ``munmap`` when it is freed, so each training
step of a large network maps its gradients and activations afresh and the kernel zeroes them 4 KB
page by page on first touch. ``import vitae`` therefore tells glibc to take every block from its
heap and keep freed memory there (``mallopt(M_MMAP_MAX, 0)`` and a 1 GB ``M_TRIM_THRESHOLD``).
``python benchmarks/allocator.py`` measures it: a fresh 82 MB ``torch.zeros`` (one bodies weight
gradient) about 21 ms under glibc's default and 2 ms with the memory kept, and the bodies VAE
step 1.4x faster in float32 and 2.7 to 3x in bfloat16. The price: a process's resident memory
stays near its peak rather than shrinking after a large tensor is freed, which is what a training
or evaluation process wants; ``VITAE_MALLOC=system`` leaves glibc as it is. Other C libraries
(and other systems) are left alone. Torch's own ``THP_MEM_ALLOC_ENABLE=1`` (huge pages) was tried
first: slower on the same probes, and erratic from run to run.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30  # bytes free at the heap's top before glibc gives them back
OPT_OUT = "VITAE_MALLOC"


def keep_freed_memory() -> bool:
    """Have glibc keep freed blocks for reuse (see the module docstring); whether it took
    effect: ``False`` off Linux, on another C library, or with ``VITAE_MALLOC=system``."""
    if os.environ.get(OPT_OUT, "") == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process runs on
        libc.gnu_get_libc_version  # noqa: B018  (glibc's alone: the parameters below are glibc's)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
