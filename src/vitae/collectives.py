"""The collectives of several processes, one model (``torch.distributed``), as the models need them:
beta-TCVAE's estimator and DIP-VAE's covariance see the global batch through ``gather``. Below both
the models and the training loop (``vitae.training.distributed`` starts and joins the processes);
with one process every helper is the identity.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional

T = TypeVar("T")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes the run folder and shows progress."""
    return rank() == 0


def backend() -> str:
    return dist.get_backend() if is_distributed() else "none"


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's ``tensor`` concatenated along the first axis in rank order, with gradients
    flowing back to each process's own part."""
    if not is_distributed():
        return tensor
    return torch.cat(dist_functional.all_gather(tensor))


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over processes (a copy; no gradient)."""
    if not is_distributed():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total


def mean_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over processes: non-finite on every process if it is on one."""
    return sum_over_processes(tensor) / world_size() if is_distributed() else tensor


def gather_objects(value: T) -> list[T]:
    """Every process's ``value`` (picklable), in rank order."""
    if not is_distributed():
        return [value]
    values = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


_splitting = False


@contextmanager
def split_batch():
    """The block trains on this process's rows of a global batch (every process's rows of equal
    size): ``noise_like`` then draws the global batch's noise."""
    global _splitting
    previous, _splitting = _splitting, True
    try:
        yield
    finally:
        _splitting = previous


def noise_like(local: torch.Tensor) -> torch.Tensor:
    """Standard normal noise of ``local``'s shape. Inside ``split_batch`` with several processes,
    the noise of the whole global batch ``[W * B, ...]`` is drawn (every process draws the same
    numbers, from the same seed) and this process's rows are taken: together the processes see
    the noise that one process training the global batch would, so N processes train the model
    of one, up to float rounding."""
    if not (_splitting and is_distributed()):
        return torch.randn_like(local)
    n = local.shape[0]
    full = torch.randn((world_size() * n, *local.shape[1:]), dtype=local.dtype, device=local.device)
    return full[rank() * n:(rank() + 1) * n]
