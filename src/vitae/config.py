"""Experiment configuration: plain values in one dataclass, read from a TOML file and overridden
from the command line with ``KEY=VALUE`` (values parsed as TOML: ``epochs=10``, ``lr=1e-3``,
``transform="cpab"`` or ``transform=cpab``, ``transform_options={tessellation=[2, 4]}``).

A run folder keeps its configuration as ``config.json``; it round-trips exactly.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from vitae import files
from vitae.errors import VitaeError


@dataclass
class Config:
    # what to train
    model: str = "cvitae"
    data: str = "mnist"
    data_root: str = ""  # a folder of the user's own files; empty: the shipped or generated data
    data_options: dict = field(default_factory=dict)
    architecture: str = "auto"  # auto: picked for the data's image shape (vitae.models.networks.auto)
    likelihood: str = "bernoulli"
    likelihood_options: dict = field(default_factory=dict)
    transform: str = "affine_diffeo"
    transform_options: dict = field(default_factory=dict)
    latent_dim: int = 4  # VAE-type models
    appearance_dim: int = 2  # VITAE models: z_A
    perspective_dim: int = 2  # VITAE models: z_P
    width: float = 0.5  # VITAE models: fraction of the architecture's neurons per network
    beta: float = 1.0  # KL weight in the loss (beta-VAE); the reported ELBO always uses 1
    model_options: dict = field(default_factory=dict)  # further keywords of the model's constructor
    imports: list = field(default_factory=list)  # your modules that register architectures, data, ... (vitae.plugins)
    # how to train (supplement section 2)
    epochs: int = 2000
    warmup: int = 1000  # KL warm-up: w = min(epoch / warmup, 1), epochs counted from 1
    batch_size: int = 512
    lr: float = 1e-4
    seed: int = 0
    device: str = "auto"  # auto: CUDA when present, else CPU; under torchrun, each process's own GPU
    amp: bool = False  # bfloat16 mixed precision for the networks (CUDA, or a CPU with AVX512-BF16/AMX); likelihood, KLs and warps stay float32
    checkpoint_every: int = 1  # epochs between checkpoints
    eval_batch_size: int = 2000
    logger: str = "auto"  # experiment tracking (vitae.training.tracking): auto (tensorboard when installed), tensorboard or none
    log_images_every: int = 10  # epochs between the logger's image grids and gamma histograms (and the last epoch); 0: never
    # what `vitae evaluate` does by default
    eval_samples: int = 1000  # importance samples per test image for log p(x)
    metric_options: dict = field(default_factory=dict)  # sample sizes of the disentanglement metrics
    metric_data: str = ""  # data set whose known factors the metrics use; empty: the training data's own

    def model_kwargs(self) -> dict:
        """The keywords ``vitae.models.create`` takes from this configuration."""
        keys = ("architecture", "likelihood", "likelihood_options", "transform", "transform_options",
                "latent_dim", "appearance_dim", "perspective_dim", "width", "beta")
        return {**{key: getattr(self, key) for key in keys}, **self.model_options}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(key: str, value):
    """Check ``value`` against the type of field ``key`` (ints are accepted for floats)."""
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=1)
        guess = f" (did you mean '{close[0]}'?)" if close else ""
        raise VitaeError(f"unknown config key '{key}'{guess}; valid keys: {', '.join(FIELDS)} "
                         "(`vitae train --help` says what each means and its default)")
    expected = type(getattr(Config(), key))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise VitaeError(f"config key '{key}' must be a {expected.__name__}, got {value!r}")
    return value


def parse_override(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> (key, value); the value is read as TOML, else taken as a string."""
    if "=" not in text:
        raise VitaeError(f"override '{text}' is not KEY=VALUE")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def from_dict(values: dict) -> Config:
    return Config(**{key: _coerce(key, value) for key, value in values.items()})


def load(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a TOML config (or start from the defaults) and apply ``KEY=VALUE`` overrides."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise VitaeError(f"config file {path} does not exist; see the files under configs/")
        try:
            values = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise VitaeError(f"config file {path} is not valid TOML: {exc}") from None
    return override(from_dict(values), overrides)


def override(config: Config, overrides: list[str]) -> Config:
    """A copy of ``config`` with ``KEY=VALUE`` overrides applied."""
    changed = from_dict({**config.to_dict(), **dict(parse_override(text) for text in overrides)})
    check(changed)
    return changed


def check(config: Config) -> None:
    """Every value in its range, before any work starts; the message names the key and the range."""
    for key in ("epochs", "batch_size", "eval_samples", "checkpoint_every", "eval_batch_size",
                "latent_dim", "appearance_dim", "perspective_dim"):
        if getattr(config, key) < 1:
            raise VitaeError(f"config key '{key}' must be at least 1, got {getattr(config, key)}")
    if config.log_images_every < 0:
        raise VitaeError(f"config key 'log_images_every' must be 0 (never) or more, got {config.log_images_every}")
    if config.warmup < 0:
        raise VitaeError(f"config key 'warmup' must be 0 (no warm-up) or more, got {config.warmup}")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise VitaeError(f"config key 'lr' must be a finite positive number, got {config.lr}")
    if not (math.isfinite(config.width) and 0 < config.width <= 64):
        raise VitaeError(f"config key 'width' must be in (0, 64] (a fraction of the architecture's neurons), got {config.width}")
    if not all(isinstance(name, str) and name for name in config.imports):
        raise VitaeError(f"config key 'imports' must be a list of module names, e.g. [\"my_networks\"], got {config.imports!r}")
    if not (math.isfinite(config.beta) and config.beta >= 0):
        raise VitaeError(f"config key 'beta' must be a finite number of at least 0, got {config.beta}")


def save_json(config: Config, path: Path) -> None:
    files.write_text(path, json.dumps(config.to_dict(), indent=2) + "\n")


def load_json(path: Path) -> Config:
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VitaeError(f"cannot read the run's configuration {path}: {exc}") from None
    if not isinstance(values, dict):
        raise VitaeError(f"the run's configuration {path} is not a JSON object; it was not written by vitae train")
    return from_dict(values)
