"""Perspective transformations ``T_gamma``: a registry of families on one interface.

``create(name, **options)`` returns a ``Transform`` with ``theta_dim``,
``warp(images, theta, inverse=False)`` and ``transform_points(points, theta, inverse=False)``;
conventions in ``vitae.transforms.base``. A new family is one file plus one line in ``REGISTRY``.
"""

from __future__ import annotations

from vitae.errors import VitaeError
from vitae.transforms.affine import Affine, AffineDecomp, AffineDiffeo
from vitae.transforms.base import Transform
from vitae.transforms.cpab import CPAB

REGISTRY: dict[str, type[Transform]] = {
    "affine": Affine,
    "affine_decomp": AffineDecomp,
    "affine_diffeo": AffineDiffeo,
    "cpab": CPAB,
}


def create(name: str, **options) -> Transform:
    """Build the transformation family ``name`` with its ``options``."""
    if name not in REGISTRY:
        raise VitaeError(f"unknown transformation '{name}'; choose one of: {', '.join(sorted(REGISTRY))}")
    try:
        return REGISTRY[name](**options)
    except TypeError as exc:
        raise VitaeError(f"transformation '{name}' does not take these options {sorted(options)}: {exc}") from None


__all__ = ["REGISTRY", "Transform", "create", "Affine", "AffineDecomp", "AffineDiffeo", "CPAB"]
