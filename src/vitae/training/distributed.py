"""Several processes, one model: the plumbing for PyTorch's distributed data parallel (DDP).

``torchrun`` starts one process per GPU (or per CPU slot) on every machine and tells each, through
the environment, its ``RANK``, its ``LOCAL_RANK`` on its machine and the ``WORLD_SIZE``. Training
is distributed exactly when ``WORLD_SIZE > 1``; otherwise every helper here is the identity, so a
plain ``vitae train`` runs the single-process code unchanged.

Conventions:

* ``batch_size`` is the global batch ``B``. Process ``r`` of ``W`` trains on the ``r``-th
  contiguous chunk of ``B / W`` images of every global batch, so the chunks concatenated in rank
  order are the single-process batch, in the same order (MSS's weights depend on it).
* The data order is the sampler's job. ``torch.utils.data.DistributedSampler`` derives each
  epoch's permutation from ``(seed, epoch)`` and so needs ``set_epoch`` every epoch, or it repeats
  the first epoch's order. Here every process seeds the same data generator, draws one
  permutation of the training set per epoch from it, and a resume restores its state on every
  process: each epoch is shuffled anew and identically everywhere, the generator's state being
  the epoch's, and the single-process order is the distributed one.
* Batch statistics (beta-TCVAE's estimator, DIP-VAE's covariance) see the global batch through
  ``gather``. Its backward sums the gradients of every process's copy of a global term, and DDP
  averages the processes' gradients: together the single-process gradient.
* The timeout (``VITAE_DIST_TIMEOUT`` seconds, default 300) bounds every wait for the other
  processes, at start-up and at each collective; past it a process fails with a ``VitaeError``
  instead of hanging.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, Iterable, Iterator, TypeVar

import torch
import torch.distributed as dist

from vitae.collectives import (backend, gather, gather_objects, is_distributed, is_main, mean_over_processes,  # noqa: F401
                               noise_like, rank, split_batch, sum_over_processes, world_size)
from vitae.errors import VitaeError

TIMEOUT_VARIABLE = "VITAE_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 300

T = TypeVar("T")


def local_rank() -> int:
    """This process's index on its machine: the GPU it uses."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def _timeout() -> int:
    raw = os.environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT))
    if not raw.isdigit() or int(raw) < 1:
        raise VitaeError(f"{TIMEOUT_VARIABLE} must be a whole number of seconds, at least 1, got '{raw}'")
    return int(raw)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def process_group():
    """Join the other processes when torchrun started several, and leave at the end.

    gloo carries CPU tensors and nccl CUDA ones. Joining ends with a barrier, so a process that
    cannot reach the others (a wrong address, a closed port, a missing machine) fails here, on
    every process that is waiting, with a ``VitaeError`` after the timeout.
    """
    requested = int(os.environ.get("WORLD_SIZE", "1"))
    if requested <= 1 or dist.is_initialized():
        yield
        return
    timeout, me = _timeout(), os.environ.get("RANK", "?")
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    try:
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo",
                                timeout=timedelta(seconds=timeout))
        dist.barrier()
    except (RuntimeError, TimeoutError, ValueError) as exc:
        if dist.is_initialized():
            dist.destroy_process_group()
        raise VitaeError(
            f"process {me} of {requested} could not reach the others at {where} within {timeout} s "
            f"({_first_line(exc)}); check that every machine runs torchrun with the same --nnodes and "
            f"--rdzv_endpoint, that the port is open between them, or raise {TIMEOUT_VARIABLE}") from None
    try:
        yield
    except dist.DistError as exc:
        raise VitaeError(f"process {me} of {requested} lost contact with the others ({_first_line(exc)}); "
                         "another process probably failed: see its error") from None
    finally:
        dist.destroy_process_group()


def check_batch_size(batch_size: int) -> None:
    if batch_size % world_size():
        raise VitaeError(f"batch_size {batch_size} is not divisible by the {world_size()} processes; batch_size "
                         f"is the global batch, so choose a multiple of {world_size()} or another number of processes")


def local_batches(batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """This process's chunk of every global batch of indices. A last, short batch is cut to a
    multiple of the world size so that all chunks are equal (``all_gather`` needs it): at most
    ``world_size - 1`` images of an epoch go unused, a different few each epoch, none in one process."""
    size, me = world_size(), rank()
    for idx in batches:
        usable = len(idx) - len(idx) % size
        if usable:
            yield idx[:usable].chunk(size)[me]


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` run on rank 0 only and its result handed to every process; a ``VitaeError``
    it raises is raised on every process (rather than leaving the others waiting)."""
    if not is_distributed():
        return compute()
    box: list = [None]
    if is_main():
        try:
            box[0] = (compute(), None)
        except VitaeError as exc:
            box[0] = (None, str(exc))
    dist.broadcast_object_list(box, src=0)
    result, error = box[0]
    if error is not None:
        raise VitaeError(error)
    return result


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when distributed (which averages gradients over
    processes in ``backward``), else ``model`` itself."""
    if not is_distributed():
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
