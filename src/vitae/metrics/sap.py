"""SAP, the separated attribute predictability (Kumar et al. 2018).

Convention: a score ``S[i, j]`` says how well code ``i`` alone predicts factor ``j``;
``SAP = mean_j (S_(1)j - S_(2)j)``, the gap between the two best codes of each factor.

* Ordinal factors: ``S`` is the squared correlation (R^2 of a line fitted on the training set),
  disentanglement_lib's "continuous factors" mode.
* Categorical factors: ``S`` is the test accuracy of a one-code classifier. disentanglement_lib uses
  a ``LinearSVC`` (C = 0.01); on one input a linear one-vs-rest classifier can only cut the line
  once per class, so it never predicts a middle class, and even the factor itself scores at most
  2/n for n classes. Here the code is cut into ``num_bins = 20`` equal-width bins over its training
  range and each bin predicts its most frequent training class, which reaches 1 for a code that
  separates the classes.
"""

from __future__ import annotations

import numpy as np

from vitae.errors import VitaeError
from vitae.metrics.sampling import check_split, require, sample


def squared_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of ``y`` on ``x`` (0 when either is constant)."""
    var_x, var_y = np.var(x), np.var(y)
    if var_x <= 1e-12 or var_y <= 1e-12:
        return 0.0
    return float(np.mean((x - x.mean()) * (y - y.mean())) ** 2 / (var_x * var_y))


def binned_accuracy(x_train, y_train, x_test, y_test, num_bins: int = 20) -> float:
    """Test accuracy of predicting ``y`` by the majority training class in ``x``'s bin."""
    edges = np.histogram_bin_edges(x_train, bins=num_bins)[1:-1]
    bin_train, bin_test = np.digitize(x_train, edges), np.digitize(x_test, edges)
    counts = np.zeros((num_bins, y_train.max() + 1))
    np.add.at(counts, (bin_train, y_train), 1)
    counts[counts.sum(axis=1) == 0] = np.bincount(y_train)  # an empty bin predicts the overall majority
    return float(np.mean(counts.argmax(axis=1)[bin_test] == y_test))


def score_matrix(x_train, y_train, x_test, y_test, categorical, *, num_bins: int = 20) -> np.ndarray:
    """``S [d, K]`` (see the module's convention)."""
    d, k = x_train.shape[1], y_train.shape[1]
    scores = np.zeros((d, k))
    for i in range(d):
        for j in range(k):
            if categorical[j]:
                scores[i, j] = binned_accuracy(x_train[:, i], y_train[:, j], x_test[:, i], y_test[:, j], num_bins)
            else:
                scores[i, j] = squared_correlation(x_train[:, i], y_train[:, j].astype(np.float64))
    return scores


def sap(x_train, y_train, x_test, y_test, categorical, *, num_bins: int = 20) -> float:
    x_train, x_test = check_split(x_train, y_train, x_test, y_test, "SAP", min_train=2)
    if x_train.shape[1] < 2:
        raise VitaeError("SAP needs a representation with at least two codes (it is a gap between the best two)")
    top = np.sort(score_matrix(x_train, y_train, x_test, y_test, categorical, num_bins=num_bins), axis=0)[::-1]
    return float(np.mean(top[0] - top[1]))


def compute(ground_truth, representation_fn, *, seed: int = 0, num_train: int = 10_000, num_test: int = 5_000,
            num_bins: int = 20, batch_size: int = 1000) -> float:
    """SAP on fresh training and test sets (disentanglement_lib's sizes by default)."""
    require(num_train, 2, "SAP training")
    rng = np.random.default_rng(seed)
    y_train, x_train = sample(ground_truth, representation_fn, num_train, rng, batch_size=batch_size)
    y_test, x_test = sample(ground_truth, representation_fn, num_test, rng, batch_size=batch_size)
    return sap(x_train, y_train, x_test, y_test, [f.categorical for f in ground_truth.factors], num_bins=num_bins)
