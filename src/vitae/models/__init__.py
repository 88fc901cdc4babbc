"""Generative models by name on one interface (``vitae.models.base.GenerativeModel``).

``create(name, image_shape, **options)`` builds a model; a new model is one file plus one line in
``REGISTRY``. Options are the model's constructor keywords plus ``architecture``,
``likelihood``, ``transform`` and ``transform_options`` (built here, so the models get objects).
"""

from __future__ import annotations

import inspect

from vitae import transforms
from vitae.errors import VitaeError
from vitae.models import likelihoods, networks
from vitae.models.base import GenerativeModel, Inference, ModelOutput
from vitae.models.vae import VAE, BetaVAE
from vitae.models.vitae import CVITAE, UVITAE

REGISTRY: dict[str, type[GenerativeModel]] = {
    "vae": VAE,
    "beta_vae": BetaVAE,
    "uvitae": UVITAE,
    "cvitae": CVITAE,
}


def create(
    name: str,
    image_shape,
    *,
    architecture: str = "mnist_mlp",
    likelihood: str = "bernoulli",
    likelihood_options: dict | None = None,
    transform: str = "affine_diffeo",
    transform_options: dict | None = None,
    **options,
) -> GenerativeModel:
    """Build model ``name`` for images of ``image_shape`` (``C, H, W``); unused options for this
    model (e.g. ``transform`` for a VAE) are ignored, unknown ones are an error."""
    if name not in REGISTRY:
        raise VitaeError(f"unknown model '{name}'; choose one of: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "image_shape", "architecture", "likelihood", "transform"}
    kwargs = {key: value for key, value in options.items() if key in accepted}
    kwargs["architecture"] = networks.architecture(architecture)
    kwargs["likelihood"] = likelihoods.create(likelihood, **(likelihood_options or {}))
    if "transform" in inspect.signature(cls.__init__).parameters:
        kwargs["transform"] = transforms.create(transform, **(transform_options or {}))
    return cls(tuple(image_shape), **kwargs)


__all__ = ["REGISTRY", "GenerativeModel", "Inference", "ModelOutput", "create"]
