"""Data sets by name: ``create(name, root=None, **options)`` returns a ``Dataset`` of in-memory
tensors; ``ground_truth(name, ...)`` returns the data set's known generating factors (a
``GroundTruthData``, for the disentanglement metrics) or ``None`` when it has none.

A new data set is one module with ``load(root=None, **options) -> Dataset`` (and, when its factors
are known, ``ground_truth(root=None, **options)``) plus one line in ``REGISTRY``. ``root`` is a
folder of the user's own files, overriding the shipped or generated data.

Your own, outside the package: ``register(name, load, ground_truth=None)`` (``vitae.plugins``);
data held in Python (a tensor, a ``torch.utils.data.Dataset``): ``as_dataset`` (``in_memory``).
"""

from __future__ import annotations

import importlib
import inspect
from types import SimpleNamespace

from vitae import plugins
from vitae.data.base import Dataset, Split, batches
from vitae.data.in_memory import as_dataset
from vitae.errors import VitaeError

# name -> module (imported on first use, so one data set's optional packages never block another)
REGISTRY: dict[str, object] = {
    "mnist": "vitae.data.mnist",
    "faces": "vitae.data.faces",
    "images": "vitae.data.image_folder",
    "sprites": "vitae.data.sprites",
    "bodies": "vitae.data.bodies",
    "affine_mnist": "vitae.data.affine_mnist",
    "in_memory": "vitae.data.in_memory",  # data passed in from Python: cannot be loaded again
}
SHIPPED = frozenset(REGISTRY)


def register(name: str, load, ground_truth=None) -> None:
    """Register your own data set: ``load(root=None, **options)`` returns a ``Dataset``
    (``as_dataset`` makes one from tensors); ``ground_truth(root=None, **options)``, when its
    factors are known, a ``GroundTruthData``. ``data_options`` in a config reach both."""
    for arg, function in (("load", load), ("ground_truth", ground_truth)):
        if function is not None and not callable(function):
            raise ValueError(f"{arg} must be a function, got {function!r}")
    if load is None:
        raise ValueError("load must be a function load(root=None, **options) -> vitae.data.Dataset")
    entry = SimpleNamespace(load=load) if ground_truth is None else SimpleNamespace(load=load, ground_truth=ground_truth)
    plugins.register(REGISTRY, SHIPPED, name, entry, "data set")


def _module(name: str):
    entry = plugins.lookup(REGISTRY, name, "data set")
    return importlib.import_module(entry) if isinstance(entry, str) else entry


def _accepted(function, name: str, options: dict) -> None:
    """Refuse options that ``function`` (a data set's ``load``) does not take, naming those it does."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    known = [key for key, p in list(parameters.items())[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise VitaeError(f"data set '{name}' takes no data_options {unknown}; it takes: {', '.join(known) or 'none'}")


def create(name: str, root=None, **options) -> Dataset:
    module = _module(name)
    _accepted(module.load, name, options)
    dataset = module.load(root, **options)
    if not isinstance(dataset, Dataset):
        raise VitaeError(f"data set '{name}' returned {type(dataset).__name__}, not a vitae.data.Dataset "
                         "(vitae.data.as_dataset makes one from tensors)")
    return dataset


def ground_truth(name: str, root=None, **options):
    module = _module(name)
    if not hasattr(module, "ground_truth"):
        return None
    _accepted(module.load, name, options)
    return module.ground_truth(root, **options)


__all__ = ["REGISTRY", "Dataset", "Split", "as_dataset", "batches", "create", "ground_truth", "register"]
