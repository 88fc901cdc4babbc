"""Data sets by name: ``create(name, root=None, **options)`` returns a ``Dataset`` of in-memory
tensors; ``ground_truth(name, ...)`` returns the data set's known generating factors (a
``GroundTruthData``, for the disentanglement metrics) or ``None`` when it has none.

A new data set is one module with ``load(root=None, **options) -> Dataset`` (and, when its factors
are known, ``ground_truth(root=None, **options)``) plus one line in ``REGISTRY``. ``root`` is a
folder of the user's own files, overriding the shipped or generated data.
"""

from __future__ import annotations

import importlib

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


def create(name: str, root=None, **options) -> Dataset:
    return _module(name).load(root, **options)


def ground_truth(name: str, root=None, **options):
    module = _module(name)
    return module.ground_truth(root, **options) if hasattr(module, "ground_truth") else None


__all__ = ["REGISTRY", "Dataset", "Split", "batches", "create", "ground_truth"]
