"""DCI (Eastwood & Williams 2018): disentanglement (the paper's D_score), completeness and
informativeness, from an importance matrix of gradient-boosted trees.

Convention: ``R[i, j]`` is the importance of code ``i`` for predicting factor ``j`` (``[d, K]``,
each column the normalised ``feature_importances_`` of factor ``j``'s model). Disentanglement is
``sum_i rho_i (1 - H_K(R[i] / sum R[i]))`` with ``rho_i = sum R[i] / sum R`` and ``H_K`` the entropy
in base ``K``; completeness the same over columns in base ``d``; informativeness the mean test
accuracy of the factors' models.

Estimators. disentanglement_lib fits a ``GradientBoostingClassifier`` (100 trees of depth 3,
learning rate 0.1) per factor, on 10,000 training and 5,000 test samples. A classifier grows one
tree per class and boosting round, so dSprites' 113 classes cost 11,300 trees: minutes on a
2-core CPU. Here categorical factors keep that classifier, while ordinal factors (scale, position,
shape coefficients, warp parameters; their code is a class index with an order) get a
``GradientBoostingRegressor`` with the same settings on the class index, whose rounded prediction
gives the accuracy: one tree per round. ``ordinal_regression=False`` restores disentanglement_lib's
classifier for every factor.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

from vitae.errors import VitaeError
from vitae.metrics.sampling import check_split, require, sample


def importance_matrix(x_train, y_train, x_test, y_test, categorical, *, ordinal_regression: bool = True, seed: int = 0):
    """``(R [d, K], accuracy [K])`` from per-factor models trained on ``(x_train, y_train)``.

    ``y`` are integer factor codes ``[N, K]``; ``categorical[j]`` says whether factor ``j``'s codes
    are unordered.
    """
    d, k = x_train.shape[1], y_train.shape[1]
    importance, accuracy = np.zeros((d, k)), np.zeros(k)
    for j in range(k):
        if categorical[j] or not ordinal_regression:
            model = GradientBoostingClassifier(random_state=seed).fit(x_train, y_train[:, j])
            accuracy[j] = np.mean(model.predict(x_test) == y_test[:, j])
        else:
            model = GradientBoostingRegressor(random_state=seed).fit(x_train, y_train[:, j].astype(np.float64))
            predicted = np.clip(np.rint(model.predict(x_test)), y_train[:, j].min(), y_train[:, j].max())
            accuracy[j] = np.mean(predicted == y_test[:, j])
        importance[:, j] = model.feature_importances_
    return importance, accuracy


def entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy in base ``base`` of each row of ``p`` (rows normalised to sum 1; 0 log 0 = 0).

    A row of zeros counts as uniform (maximal entropy); base 1 (one outcome) gives 0.
    """
    p = np.asarray(p, dtype=np.float64)
    total = p.sum(axis=1, keepdims=True)
    p = np.where(total > 0, p / np.where(total > 0, total, 1), 1 / p.shape[1])
    if base < 2:
        return np.zeros(len(p))
    logs = np.log(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logs).sum(axis=1) / np.log(base)


def _weighted(scores: np.ndarray, weights: np.ndarray) -> float:
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1 / len(weights))
    return float(np.sum(scores * weights))


def disentanglement(importance: np.ndarray) -> float:
    """Each code's ``1 - H_K`` of its importances over factors, weighted by the code's total importance."""
    per_code = 1 - entropy(importance, base=importance.shape[1])
    return _weighted(per_code, importance.sum(axis=1))


def completeness(importance: np.ndarray) -> float:
    """Each factor's ``1 - H_d`` of its importances over codes, weighted by the factor's total importance."""
    per_factor = 1 - entropy(importance.T, base=importance.shape[0])
    return _weighted(per_factor, importance.sum(axis=0))


def dci(x_train, y_train, x_test, y_test, categorical, *, ordinal_regression: bool = True, seed: int = 0) -> dict:
    """The three DCI scores from codes ``y`` and representations ``x`` (train and test)."""
    if y_train.shape[1] < 2:
        raise VitaeError("DCI disentanglement needs at least two factors")
    x_train, x_test = check_split(x_train, y_train, x_test, y_test, "DCI", min_train=10)
    importance, accuracy = importance_matrix(x_train, y_train, x_test, y_test, categorical,
                                             ordinal_regression=ordinal_regression, seed=seed)
    return {"d_score": disentanglement(importance), "dci_completeness": completeness(importance),
            "dci_informativeness": float(accuracy.mean())}


def compute(ground_truth, representation_fn, *, seed: int = 0, num_train: int = 10_000, num_test: int = 5_000,
            ordinal_regression: bool = True, batch_size: int = 1000) -> dict:
    """DCI on freshly sampled training and test sets (disentanglement_lib's sizes by default)."""
    require(num_train, 10, "DCI training")
    rng = np.random.default_rng(seed)
    y_train, x_train = sample(ground_truth, representation_fn, num_train, rng, batch_size=batch_size)
    y_test, x_test = sample(ground_truth, representation_fn, num_test, rng, batch_size=batch_size)
    return dci(x_train, y_train, x_test, y_test, [f.categorical for f in ground_truth.factors],
               ordinal_regression=ordinal_regression, seed=seed)
