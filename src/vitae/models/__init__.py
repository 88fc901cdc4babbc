"""Generative models by name on one interface (``vitae.models.base.GenerativeModel``).

``create(name, image_shape, **options)`` builds a model; a new model is one file plus one line in
``REGISTRY`` (your own, outside the package: ``register(name, cls)``, ``vitae.plugins``). Options
are the model's constructor keywords plus ``architecture``, ``likelihood``, ``likelihood_options``,
``transform`` and ``transform_options`` (built here, so the models get objects). A configuration
passes the same options to every model, so an option that only another model takes is ignored;
one that no model takes is an error (a typo).
Training passes ``dataset_size`` (the number of training images), which beta-TCVAE's
estimators need and the other models ignore.
"""

from __future__ import annotations

import inspect

from vitae import plugins, transforms
from vitae.errors import VitaeError
from vitae.models import likelihoods, networks
from vitae.models.base import GenerativeModel, Inference, ModelOutput
from vitae.models.dipvae import DIPVAE
from vitae.models.tcvae import BetaTCVAE
from vitae.models.vae import VAE, BetaVAE
from vitae.models.vitae import CVITAE, UVITAE

REGISTRY: dict[str, type[GenerativeModel]] = {
    "vae": VAE,
    "beta_vae": BetaVAE,
    "beta_tcvae": BetaTCVAE,
    "dip_vae": DIPVAE,
    "uvitae": UVITAE,
    "cvitae": CVITAE,
}
SHIPPED = frozenset(REGISTRY)


def register(name: str, cls: type[GenerativeModel]) -> None:
    """Register your own model class (a ``GenerativeModel`` taking ``image_shape``,
    ``architecture``, ``likelihood`` and, if it warps, ``transform``) under ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, GenerativeModel)):
        raise ValueError(f"cls must be a subclass of vitae.models.GenerativeModel, got {cls!r}")
    plugins.register(REGISTRY, SHIPPED, name, cls, "model")


def _keywords(cls: type[GenerativeModel]) -> set[str]:
    """The constructor keywords a model takes from the options (the built objects excluded)."""
    return set(inspect.signature(cls.__init__).parameters) - {"self", "image_shape", "architecture", "likelihood", "transform"}


def create(
    name: str,
    image_shape,
    *,
    architecture: str = "auto",
    likelihood: str = "bernoulli",
    likelihood_options: dict | None = None,
    transform: str = "affine_diffeo",
    transform_options: dict | None = None,
    **options,
) -> GenerativeModel:
    """Build model ``name`` for images of ``image_shape`` (``C, H, W``); unused options for this
    model (e.g. ``transform`` for a VAE) are ignored, unknown ones are an error. ``architecture``
    ``auto`` picks one for ``image_shape`` (``vitae.models.networks.auto``)."""
    cls = plugins.lookup(REGISTRY, name, "model")
    unknown = set(options) - set().union(*(_keywords(model) for model in REGISTRY.values()))
    if unknown:
        raise VitaeError(f"no model takes the option(s) {', '.join(sorted(unknown))}; model '{name}' takes: {', '.join(sorted(_keywords(REGISTRY[name])))}")
    kwargs = {key: value for key, value in options.items() if key in _keywords(cls)}
    kwargs["architecture"] = networks.for_images(architecture, image_shape)
    kwargs["likelihood"] = likelihoods.create(likelihood, **(likelihood_options or {}))
    if "transform" in inspect.signature(cls.__init__).parameters:
        kwargs["transform"] = transforms.create(transform, **(transform_options or {}))
    model = cls(tuple(image_shape), **kwargs)
    model.image_shape = tuple(int(n) for n in image_shape)  # what check_images holds inputs to
    return model


__all__ = ["REGISTRY", "GenerativeModel", "Inference", "ModelOutput", "create", "register"]
