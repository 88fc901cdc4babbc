"""Data whose generating factors are known: the interface every disentanglement metric takes.

Modelled on disentanglement_lib's ``GroundTruthData``: a data set says what its factors are,
draws factors from their distribution, and renders observations from any factors it is given.

Convention
----------
* Factors are float64 arrays ``[N, K]`` in the order of ``ground_truth.factors``; a discrete
  factor holds one of its grid ``values`` (not an index), a continuous one any value in
  ``[low, high]``.
* Observations are float32 tensors ``[N, C, H, W]`` in ``[0, 1]``, as in ``vitae.data.base``.
* ``codes(factors)`` turns factors into the integer classes that the metrics use: a discrete
  factor's index in its grid; a continuous factor's bin, between the fixed ``edges`` that the
  data set chooses (equiprobable under its own sampling distribution, so each bin is a class of
  equal prior weight).
* A factor is ``categorical`` when its classes have no order (a shape, a digit, a pose); the
  others are ordinal, and the metrics may treat their class index as a number.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vitae.data.base import Dataset, Split
from vitae.errors import VitaeError


@dataclass(frozen=True, eq=False)
class Factor:
    """One generating factor: a discrete grid (``values``) or a continuous range cut by ``edges``."""

    name: str
    values: np.ndarray | None = None
    low: float = -np.inf
    high: float = np.inf
    edges: np.ndarray | None = None
    categorical: bool = False

    def __post_init__(self):
        if (self.values is None) == (self.edges is None):
            raise ValueError(f"factor {self.name}: give either a grid of values or bin edges")

    @property
    def num_classes(self) -> int:
        return len(self.values) if self.values is not None else len(self.edges) + 1

    def codes(self, column: np.ndarray) -> np.ndarray:
        """Class indices ``[N]`` of this factor's values; out-of-range values raise ``VitaeError``."""
        if self.values is None:
            bad = ~((column >= self.low) & (column <= self.high))
            if bad.any():
                raise VitaeError(
                    f"factor '{self.name}' = {column[bad][0]!r} is out of its range [{self.low}, {self.high}]"
                )
            return np.searchsorted(self.edges, column, side="right").astype(np.int64)
        index = np.clip(np.searchsorted(self.values, column), 0, len(self.values) - 1)
        below = np.clip(index - 1, 0, None)
        index = np.where(np.abs(self.values[below] - column) < np.abs(self.values[index] - column), below, index)
        bad = ~np.isclose(self.values[index], column, rtol=0, atol=1e-9)
        if bad.any():
            raise VitaeError(
                f"factor '{self.name}' = {column[bad][0]!r} is not one of its {len(self.values)} values "
                f"({self.values[0]:g} .. {self.values[-1]:g})"
            )
        return index.astype(np.int64)


class GroundTruthData:
    """Base class: a set of factors and a renderer. Subclasses set ``factors`` and
    ``observation_shape`` and implement ``render``; continuous factors also need ``sample_factors``.
    """

    name: str = ""
    factors: tuple[Factor, ...] = ()
    observation_shape: tuple[int, int, int] = (1, 1, 1)
    deterministic_render: bool = False  # True: render(factors) never uses its rng (images may be cached)

    @property
    def factor_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.factors)

    @property
    def num_factors(self) -> int:
        return len(self.factors)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor vectors ``[n, K]``; the default draws every discrete factor uniformly."""
        if any(f.values is None for f in self.factors):
            raise NotImplementedError(f"{type(self).__name__} has continuous factors: define sample_factors")
        return np.stack([f.values[rng.integers(len(f.values), size=n)] for f in self.factors], axis=1)

    def check_factors(self, factors) -> np.ndarray:
        """The factors as float64 ``[N, K]``; raises ``VitaeError`` on a bad shape or value."""
        factors = np.asarray(factors, dtype=np.float64)
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise VitaeError(f"{self.name}: factors must have shape [N, {self.num_factors}], got {list(factors.shape)}")
        self.codes(factors)
        return factors

    def codes(self, factors: np.ndarray) -> np.ndarray:
        """Integer classes ``[N, K]`` of each factor (see the module's convention)."""
        return np.stack([f.codes(factors[:, k]) for k, f in enumerate(self.factors)], axis=1)

    def sample_observations_from_factors(self, factors, rng: np.random.Generator) -> torch.Tensor:
        """Observations ``[N, C, H, W]`` for ``factors`` (checked first); ``rng`` drives any
        randomness that the factors do not fix (e.g. which MNIST image shows a digit)."""
        return self.render(self.check_factors(factors), rng)

    def render(self, factors: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, torch.Tensor]:
        """``n`` factor vectors and their observations."""
        factors = self.sample_factors(n, rng)
        return factors, self.sample_observations_from_factors(factors, rng)


# ---- generated data sets: train/test splits drawn from a GroundTruthData, cached on disk ----


def cache_dir() -> Path:
    """Where generated data sets are kept: ``$VITAE_CACHE``, else ``~/.cache/vitae``."""
    return Path(os.environ.get("VITAE_CACHE") or Path.home() / ".cache" / "vitae")


def cache_path(name: str, params: dict) -> Path:
    """The cache file for data set ``name`` generated with ``params`` (a hash of their JSON)."""
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"{name}-{key}.npz"


def save_atomically(path: Path, **arrays) -> None:
    """Write an ``.npz`` under a temporary name and rename it, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def split_seeds(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the train and test splits of one ``seed``."""
    train, test = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(train), np.random.default_rng(test)


def generate(ground_truth: GroundTruthData, n: int, rng: np.random.Generator, *, label: int | None = None,
             batch_size: int = 10_000) -> Split:
    """A split of ``n`` samples; ``labels`` are the codes of factor ``label`` when given."""
    if n < 1:
        raise VitaeError(f"{ground_truth.name}: a split needs at least one sample, got n = {n}")
    factors = ground_truth.sample_factors(n, rng)
    images = torch.cat([ground_truth.sample_observations_from_factors(factors[i:i + batch_size], rng)
                        for i in range(0, n, batch_size)])
    labels = None if label is None else torch.from_numpy(ground_truth.codes(factors)[:, label])
    return Split(images, labels, torch.from_numpy(factors))


def to_dataset(ground_truth: GroundTruthData, train: Split, test: Split) -> Dataset:
    return Dataset(ground_truth.name, train, test, ground_truth.factor_names)


class FactorSubset(GroundTruthData):
    """The same data scored on some of its factors: the others become nuisance, drawn from their
    own distribution for every observation (as disentanglement_lib treats factors it does not
    observe). ``names`` are factor names of ``truth``, in the order the metrics will see them."""

    def __init__(self, truth: GroundTruthData, names):
        known = truth.factor_names
        if isinstance(names, str) or not names or any(not isinstance(n, str) or n not in known for n in names) \
                or len(set(names)) != len(names):
            raise VitaeError(f"{truth.name}: a factor subset must list distinct factors of {list(known)}, got {names!r}")
        self.truth = truth
        self.columns = [known.index(n) for n in names]
        self.name = f"{truth.name}[{', '.join(names)}]"
        self.observation_shape = truth.observation_shape
        self.factors = tuple(truth.factors[c] for c in self.columns)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.truth.sample_factors(n, rng)[:, self.columns]

    def render(self, factors: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        full = self.truth.sample_factors(len(factors), rng)
        full[:, self.columns] = factors
        return self.truth.sample_observations_from_factors(full, rng)
