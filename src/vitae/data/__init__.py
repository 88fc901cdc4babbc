"""Data sets by name: ``create(name, root=None, **options)`` returns a ``Dataset`` of in-memory
tensors; ``ground_truth(name, ...)`` returns the data set's known generating factors (a
``GroundTruthData``, for the disentanglement metrics) or ``None`` when it has none.

A new data set is one module with ``load(root=None, **options) -> Dataset`` (and, when its factors
are known, ``ground_truth(root=None, **options)``) plus one line in ``REGISTRY``. ``root`` is a
folder of the user's own files, overriding the shipped or generated data.
"""

from __future__ import annotations

import importlib
import inspect

from vitae.data.base import Dataset, Split, batches
from vitae.errors import VitaeError

# name -> module (imported on first use, so one data set's optional packages never block another)
REGISTRY: dict[str, str] = {
    "mnist": "vitae.data.mnist",
    "faces": "vitae.data.faces",
    "images": "vitae.data.image_folder",
    "sprites": "vitae.data.sprites",
    "bodies": "vitae.data.bodies",
    "affine_mnist": "vitae.data.affine_mnist",
}


def _module(name: str):
    if name not in REGISTRY:
        raise VitaeError(f"unknown data set '{name}'; choose one of: {', '.join(sorted(REGISTRY))}")
    return importlib.import_module(REGISTRY[name])


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
    return module.load(root, **options)


def ground_truth(name: str, root=None, **options):
    module = _module(name)
    if not hasattr(module, "ground_truth"):
        return None
    _accepted(module.load, name, options)
    return module.ground_truth(root, **options)


__all__ = ["REGISTRY", "Dataset", "Split", "batches", "create", "ground_truth"]
