"""MIG, the mutual information gap (Chen et al. 2018), as disentanglement_lib computes it.

Convention: each code is discretised into ``num_bins = 20`` equal-width bins over its sampled
range (disentanglement_lib's histogram discretisation); factors enter as their integer codes
(continuous factors by the bins their data set defines). With ``I[i, j]`` the mutual information
(nats, plug-in estimate) of code ``i`` and factor ``j`` and ``H[j]`` the factor's entropy,
``MIG = mean_j (I_(1)j - I_(2)j) / H[j]``, the gap between the two most informative codes.
A factor with more values than bins cannot reach 1 (at best ``log 20 / log n``).
"""

from __future__ import annotations

import numpy as np

from vitae.errors import VitaeError
from vitae.metrics.sampling import check_representation, require, require_varied, sample


def discretise(x: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin index ``[N, d]`` (0..num_bins-1) of each code in equal-width bins over its range."""
    out = np.empty(x.shape, dtype=np.int64)
    for i in range(x.shape[1]):
        edges = np.histogram_bin_edges(x[:, i], bins=num_bins)
        out[:, i] = np.clip(np.digitize(x[:, i], edges[1:-1]), 0, num_bins - 1)
    return out


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information (nats) of two integer sequences, from their contingency table."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    joint /= joint.sum()
    outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])))


def mig(x: np.ndarray, y: np.ndarray, *, num_bins: int = 20) -> float:
    """MIG of representations ``x`` ``[N, d]`` for factor codes ``y`` ``[N, K]``."""
    x = check_representation(x, len(y))
    require(len(y), 2, "MIG")
    if x.shape[1] < 2:
        raise VitaeError("MIG needs a representation with at least two codes (it is a gap between the best two)")
    require_varied(y, "MIG")
    binned = discretise(x, num_bins)
    info = np.array([[mutual_information(binned[:, i], y[:, j]) for j in range(y.shape[1])] for i in range(x.shape[1])])
    entropy = np.array([mutual_information(y[:, j], y[:, j]) for j in range(y.shape[1])])
    top = np.sort(info, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / entropy))


def compute(ground_truth, representation_fn, *, seed: int = 0, num_train: int = 10_000, num_bins: int = 20,
            batch_size: int = 1000) -> float:
    """MIG on ``num_train`` fresh samples (disentanglement_lib's size by default)."""
    require(num_train, 2, "MIG")
    y, x = sample(ground_truth, representation_fn, num_train, np.random.default_rng(seed), batch_size=batch_size)
    return mig(x, y, num_bins=num_bins)
