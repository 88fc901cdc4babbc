"""What each configuration key means, in one line: the one source of ``vitae train --help``, of
``vitae config show`` and of the keys the unknown-key error points at.

Every field of ``vitae.config.Config`` needs a line in ``HELP`` (a test checks it).
"""

from __future__ import annotations

import dataclasses

from vitae import toml_write
from vitae.config import Config

HELP = {
    "model": "model family: vae, beta_vae, beta_tcvae, dip_vae, uvitae or cvitae",
    "data": "data set: mnist, affine_mnist, sprites, bodies, faces, images (a folder, with data_root), in_memory "
            "(data given to train() from Python) or one registered by a plugin",
    "data_root": "folder of your own files (MNIST IDX, CelebA, images); empty: the shipped or generated data",
    "data_options": "keywords of the data set, e.g. {n_train=5000, n_test=1000}; images: {size=64, channels=1}",
    "architecture": "encoder and decoder networks: auto (picked for the images' shape), mnist_mlp, sprites_mlp, "
                    "smpl_mlp, celeba_conv, conv or mlp (any size), or one registered by a plugin",
    "likelihood": "p(x | z): bernoulli (pixels in [0, 1]) or gaussian",
    "likelihood_options": "keywords of the likelihood, e.g. gaussian's {variance=0.1, learned=true}",
    "transform": "perspective transformation T_gamma (VITAE models): affine, affine_decomp, affine_diffeo, cpab",
    "transform_options": "keywords of the transformation, e.g. cpab's {tessellation=[2, 4], zero_boundary=true}",
    "latent_dim": "latent dimensions of the VAE-type models",
    "appearance_dim": "dimensions of the appearance code z_A (VITAE models)",
    "perspective_dim": "dimensions of the perspective code z_P (VITAE models)",
    "width": "VITAE models: fraction of the architecture's neurons in each of their networks, in (0, 64]",
    "beta": "KL weight in the loss (beta-VAE); the reported ELBO always uses 1",
    "model_options": "further keywords of the model, e.g. beta_tcvae's {alpha=1.0} or dip_vae's {lambda_od=10.0}",
    "epochs": "training epochs",
    "warmup": "KL warm-up epochs: weight min(epoch / warmup, 1), epochs counted from 1; 0: none",
    "batch_size": "images per training step (the global batch under torchrun)",
    "lr": "Adam's learning rate",
    "imports": "your Python modules to import first, which register architectures, data, transforms or models "
               "(docs/own_networks.md)",
    "logger": "experiment tracking: auto (tensorboard when the package is installed), tensorboard or none",
    "log_images_every": "epochs between the image grids and gamma histograms in TensorBoard (0: never; the last "
                        "epoch always)",
    "seed": "random seed of initialisation, shuffling and noise (a run is deterministic on one machine)",
    "device": "auto (CUDA when present, else CPU), cpu or cuda",
    "amp": "bfloat16 mixed precision for the networks (CUDA, or a CPU with AVX512-BF16/AMX); off: float32",
    "checkpoint_every": "epochs between checkpoints (the last epoch is always saved)",
    "eval_batch_size": "images per batch when computing the test ELBO and representations",
    "eval_samples": "importance samples per test image for log p(x) in vitae evaluate (its --samples overrides)",
    "metric_options": "disentanglement metrics' sample sizes, e.g. {num_train=5000}; also dci_estimator, protocols",
    "metric_data": "data set whose known factors the metrics score; empty: the training data's own",
}


UNSET = "(unset)"  # a None default: TOML has no null, so the key is left out of a TOML file


def type_name(field: dataclasses.Field) -> str:
    return field.type if isinstance(field.type, str) else field.type.__name__


def shown(item) -> str:
    return UNSET if item is None else toml_write.value(item)


def keys_text() -> str:
    """Every config key with its type, default and meaning, for ``vitae train --help``."""
    lines = ["config keys (KEY=VALUE, the value read as TOML; a config file sets the same keys;",
             "`vitae config show CONFIG [KEY=VALUE ...]` prints a configuration resolved):"]
    defaults = Config()
    for field in dataclasses.fields(Config):
        lines.append(f"  {field.name} = {shown(getattr(defaults, field.name))}  ({type_name(field)})")
        lines.append(f"      {HELP.get(field.name, '(no help line yet)')}")
    return "\n".join(lines)


def to_toml(config: Config, header: str = "") -> str:
    """``config`` as a TOML file that ``vitae.config.load`` reads back to an equal config, each key
    with its meaning as a comment."""
    lines = [f"# {line}" for line in header.splitlines()]
    for name, item in config.to_dict().items():
        meaning = f"  # {HELP[name]}" if name in HELP else ""
        lines.append(f"# {name}: {UNSET}{meaning}" if item is None else f"{name} = {toml_write.value(item)}{meaning}")
    return "\n".join(lines) + "\n"
