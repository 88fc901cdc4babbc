"""Data held in Python, as a ``Dataset``: a tensor, a ``torch.utils.data.Dataset`` or a ``Dataset``.

``as_dataset(data, test=None, test_fraction=0.1)``: images ``[N, C, H, W]`` (or ``[N, H, W]``,
grey), float in ``[0, 1]`` or ``uint8`` (divided by 255); a ``torch.utils.data.Dataset`` yields an
image tensor ``[C, H, W]`` per item, or a pair ``(image, label)``. Without ``test``, the last
``test_fraction`` of the images (at least one) is the test split, as for an image folder.

A run trained on such data (``vitae.training.trainer.train(config, out, data=...)``) records
``data = "in_memory"`` and none of the images: a later process cannot load them back, so the
command line's ``--resume``, ``evaluate`` and ``plot`` of it stop with an error that says so, and
from Python they take the same ``data=`` again. To name your data in a config instead, register a
loader (``vitae.data.register``).
"""

from __future__ import annotations

import torch
import torch.utils.data

from vitae.data.base import Dataset, Split
from vitae.errors import VitaeError

NAME = "in_memory"


def load(root=None) -> Dataset:
    raise VitaeError("this run was trained on data passed in from Python (train(..., data=...)), which a later "
                     "process cannot load: resume, evaluate and plot it from Python with the same data=, or register "
                     "a loader (vitae.data.register) and name it in the config")


def images_tensor(images, arg: str = "images") -> torch.Tensor:
    """``images`` as float32 ``[N, C, H, W]`` (``[N, H, W]`` gains a channel; ``uint8`` is divided by 255)."""
    if not isinstance(images, torch.Tensor):
        try:
            images = torch.as_tensor(images)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{arg} must be a tensor of images [N, C, H, W], got {type(images).__name__}") from None
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[0] < 1:
        raise ValueError(f"{arg} must be images [N, C, H, W] (or [N, H, W]), got shape {list(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    if not (images.is_floating_point() or images.dtype == torch.bool):
        raise ValueError(f"{arg} must be float pixels in [0, 1] or uint8, got {images.dtype}")
    return images.detach().to("cpu", torch.float32)


def labels_tensor(labels, n: int, arg: str = "labels") -> torch.Tensor | None:
    if labels is None:
        return None
    labels = torch.as_tensor(labels)
    if labels.shape != (n,) or labels.is_floating_point():
        raise ValueError(f"{arg} must be {n} whole numbers [N], got {labels.dtype} of shape {list(labels.shape)}")
    return labels.long()


def from_torch(dataset, arg: str = "data") -> tuple[torch.Tensor, torch.Tensor | None]:
    """The images (and the labels, where every item has an integer one) of a map-style
    ``torch.utils.data.Dataset``."""
    try:
        n = len(dataset)
    except TypeError:
        raise ValueError(f"{arg} must have a length (a map-style torch.utils.data.Dataset)") from None
    if n < 1:
        raise ValueError(f"{arg} is empty")
    images, labels = [], []
    for i in range(n):
        item = dataset[i]
        image = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"{arg}[{i}] is of type {type(image).__name__}, not an image tensor [C, H, W]; give the "
                             "Dataset a transform that makes tensors (e.g. torchvision's ToTensor)")
        images.append(image)
        label = item[1] if isinstance(item, (tuple, list)) and len(item) > 1 else None
        labels.append(int(label) if isinstance(label, int) or (isinstance(label, torch.Tensor) and label.numel() == 1
                                                                and not label.is_floating_point()) else None)
    try:
        stacked = torch.stack(images)
    except RuntimeError:
        raise ValueError(f"the images of {arg} differ in shape; resize them to one size") from None
    return stacked, (torch.tensor(labels) if None not in labels else None)


def _split(data, arg: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.TensorDataset):
        images, labels = from_torch(data, arg)
    elif isinstance(data, torch.utils.data.TensorDataset):
        images, labels = data.tensors[0], (data.tensors[1] if len(data.tensors) > 1 else None)
    else:
        images, labels = data, None
    images = images_tensor(images, arg)
    return images, labels_tensor(labels, len(images), f"the labels of {arg}")


def as_dataset(data, test=None, test_fraction: float = 0.1, name: str = NAME) -> Dataset:
    """``data`` (and ``test``, else the last ``test_fraction`` of ``data``) as a ``Dataset``."""
    if isinstance(data, Dataset):
        if test is not None:
            raise ValueError("test must be None when data is already a vitae Dataset (it has its own test split)")
        return data
    images, labels = _split(data, "data")
    if test is not None:
        test_images, test_labels = _split(test, "test")
        if test_images.shape[1:] != images.shape[1:]:
            raise ValueError(f"test images are {list(test_images.shape[1:])}, the training images {list(images.shape[1:])}")
        return Dataset(name, Split(images, labels), Split(test_images, test_labels))
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    if len(images) < 2:
        raise ValueError(f"data has {len(images)} image(s): at least 2 are needed, one to train on and one to test")
    n_train = min(len(images) - 1, len(images) - max(1, round(len(images) * test_fraction)))
    part = lambda t, s: None if t is None else t[s]  # noqa: E731
    return Dataset(name, Split(images[:n_train], part(labels, slice(None, n_train))),
                   Split(images[n_train:], part(labels, slice(n_train, None))))
