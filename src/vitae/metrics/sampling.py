"""Drawing (factor codes, representations) pairs from a ``GroundTruthData``, with the checks that
every disentanglement metric shares.

Convention: ``representation_fn(images [N, C, H, W] float32 tensor) -> array [N, d]``; the
metrics read it as float64 and refuse anything but a finite ``[N, d]`` array.
"""

from __future__ import annotations

import numpy as np
import torch

from vitae.data.ground_truth_data import GroundTruthData
from vitae.errors import VitaeError


def represent(ground_truth: GroundTruthData, representation_fn, factors: np.ndarray, rng: np.random.Generator,
              *, batch_size: int = 1000) -> np.ndarray:
    """Representations ``[N, d]`` of observations rendered from ``factors``, in batches."""
    parts = []
    for start in range(0, len(factors), batch_size):
        images = ground_truth.sample_observations_from_factors(factors[start:start + batch_size], rng)
        with torch.no_grad():
            out = representation_fn(images)
        out = np.asarray(out.detach().cpu() if isinstance(out, torch.Tensor) else out, dtype=np.float64)
        if out.ndim != 2 or out.shape[0] != len(images):
            raise VitaeError(f"the representation must have shape [{len(images)}, d], got {list(out.shape)}")
        parts.append(out)
    representations = np.concatenate(parts)
    if not np.isfinite(representations).all():
        raise VitaeError("the representation contains NaN or infinite values; the model has probably diverged")
    return representations


def sample(ground_truth: GroundTruthData, representation_fn, n: int, rng: np.random.Generator,
           *, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``n`` i.i.d. samples: factor codes ``[n, K]`` (int) and representations ``[n, d]``."""
    factors = ground_truth.sample_factors(n, rng)
    return ground_truth.codes(factors), represent(ground_truth, representation_fn, factors, rng, batch_size=batch_size)


def require(n: int, minimum: int, what: str) -> None:
    """Raise a one-line ``VitaeError`` when a metric gets fewer than ``minimum`` samples."""
    if n < minimum:
        raise VitaeError(f"{what} needs at least {minimum} samples, got {n}")


def require_varied(codes: np.ndarray, metric: str) -> None:
    """Every factor (named ``#k`` by its column) must take at least two values in the sample, or
    it tells the metric nothing."""
    for k in range(codes.shape[1]):
        if len(np.unique(codes[:, k])) < 2:
            raise VitaeError(f"{metric}: factor '#{k}' takes a single value in {len(codes)} samples; use more samples")


def check_representation(x: np.ndarray, n: int) -> np.ndarray:
    """A representation given directly as an array: finite, ``[n, d]``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != n:
        raise VitaeError(f"the representation must have shape [{n}, d], got {list(x.shape)}")
    if not np.isfinite(x).all():
        raise VitaeError("the representation contains NaN or infinite values; the model has probably diverged")
    return x


def check_split(x_train, y_train: np.ndarray, x_test, y_test: np.ndarray, metric: str, min_train: int):
    """The checks of a metric fitted on a training split and scored on a test split: finite
    ``[n, d]`` representations, at least ``min_train`` training and one test sample, every factor
    varied in training. Returns the representations as float64 arrays."""
    x_train, x_test = check_representation(x_train, len(y_train)), check_representation(x_test, len(y_test))
    require(len(y_train), min_train, f"{metric} training")
    require(len(y_test), 1, f"{metric} testing")
    require_varied(y_train, metric)
    return x_train, x_test
