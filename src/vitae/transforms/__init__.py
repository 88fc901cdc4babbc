"""Perspective transformations ``T_gamma``: a registry of families on one interface.

``create(name, **options)`` returns a ``Transform`` with ``theta_dim``,
``warp(images, theta, inverse=False)`` and ``transform_points(points, theta, inverse=False)``;
conventions in ``vitae.transforms.base``. A new family is one file plus one line in ``REGISTRY``
(your own, outside the package: ``register(name, cls)``, ``vitae.plugins``).
"""

from __future__ import annotations

from vitae import plugins
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
SHIPPED = frozenset(REGISTRY)


def register(name: str, cls: type[Transform]) -> None:
    """Register your own family (a ``Transform`` subclass, built with its options) under ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Transform)):
        raise ValueError(f"cls must be a subclass of vitae.transforms.Transform, got {cls!r}")
    plugins.register(REGISTRY, SHIPPED, name, cls, "transformation")


def create(name: str, **options) -> Transform:
    """Build the transformation family ``name`` with its ``options``."""
    cls = plugins.lookup(REGISTRY, name, "transformation")
    try:
        return cls(**options)
    except TypeError as exc:
        raise VitaeError(f"transformation '{name}' does not take these options {sorted(options)}: {exc}") from None


__all__ = ["REGISTRY", "Transform", "create", "register", "Affine", "AffineDecomp", "AffineDiffeo", "CPAB"]
