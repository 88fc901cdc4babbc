"""DCI (Eastwood & Williams 2018): disentanglement (the paper's D_score), completeness and
informativeness, from an importance matrix of gradient-boosted trees.

Convention: ``R[i, j]`` is the importance of code ``i`` for predicting factor ``j`` (``[d, K]``,
each column the normalised ``feature_importances_`` of factor ``j``'s model). Disentanglement is
``sum_i rho_i (1 - H_K(R[i] / sum R[i]))`` with ``rho_i = sum R[i] / sum R`` and ``H_K`` the entropy
in base ``K``; completeness the same over columns in base ``d``; informativeness the mean test
accuracy of the factors' models.

Estimators (``estimator``):

* ``"classifier"``, the default and the paper's D_score: disentanglement_lib's definition, one
  ``GradientBoostingClassifier`` (sklearn defaults: 100 rounds of depth-3 trees, learning rate 0.1)
  per factor on its integer codes, importance ``feature_importances_``, informativeness the mean
  test accuracy. Every published DCI figure is this one.
* ``"regressor"``: for ordinal factors (scale, position, shape coefficients, warp parameters) a
  ``GradientBoostingRegressor`` with the same settings on the class index, whose rounded prediction
  gives the accuracy; categorical factors keep the classifier. It is a different metric (0.06 to
  0.10 higher on the same representation) and is never reported as D_score; ``metrics.json``
  names the estimator of every figure (``dci_estimator``).

A classifier grows one tree per class and round, so dSprites' 113 classes cost 11,300 trees (about
a minute and a half at 10,000 samples on one core). The factors' models are independent and are
fitted in parallel, one process per core (largest first), with the same result as one by one.
"""

from __future__ import annotations

import os

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

from vitae.errors import VitaeError
from vitae.metrics.sampling import check_split, require, sample


ESTIMATORS = ("classifier", "regressor")


def check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise VitaeError(f"unknown DCI estimator '{estimator}'; choose classifier (disentanglement_lib's, "
                         "the paper's D_score) or regressor")


def _fit_factor(x_train, y_train, x_test, y_test, regress: bool, seed: int) -> tuple[np.ndarray, float]:
    """One factor's importances ``[d]`` and test accuracy."""
    if regress:
        model = GradientBoostingRegressor(random_state=seed).fit(x_train, y_train.astype(np.float64))
        predicted = np.clip(np.rint(model.predict(x_test)), y_train.min(), y_train.max())
    else:
        model = GradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
        predicted = model.predict(x_test)
    return model.feature_importances_, float(np.mean(predicted == y_test))


def workers(n_tasks: int) -> int:
    """Processes for ``n_tasks`` independent fits: one per core this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n_tasks, cores))


def importance_matrix(x_train, y_train, x_test, y_test, categorical, *, estimator: str = "classifier", seed: int = 0,
                      n_jobs: int | None = None):
    """``(R [d, K], accuracy [K])`` from per-factor models trained on ``(x_train, y_train)``.

    ``y`` are integer factor codes ``[N, K]``; ``categorical[j]`` says whether factor ``j``'s codes
    are unordered (only the regressor estimator reads it). ``n_jobs`` processes fit the factors'
    models (default: one per core).
    """
    check_estimator(estimator)
    d, k = x_train.shape[1], y_train.shape[1]
    regress = [estimator == "regressor" and not categorical[j] for j in range(k)]
    # the classifiers with the most classes first, so that the processes finish together
    order = sorted(range(k), key=lambda j: 1 if regress[j] else -len(np.unique(y_train[:, j])))
    tasks = [(x_train, y_train[:, j], x_test, y_test[:, j], regress[j], seed) for j in order]
    jobs = n_jobs or workers(k)
    if jobs > 1:
        fitted = Parallel(n_jobs=jobs)(delayed(_fit_factor)(*task) for task in tasks)
    else:
        fitted = [_fit_factor(*task) for task in tasks]
    importance, accuracy = np.zeros((d, k)), np.zeros(k)
    for j, (importances, acc) in zip(order, fitted):
        importance[:, j], accuracy[j] = importances, acc
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


def dci(x_train, y_train, x_test, y_test, categorical, *, estimator: str = "classifier", seed: int = 0) -> dict:
    """The three DCI scores from codes ``y`` and representations ``x`` (train and test)."""
    if y_train.shape[1] < 2:
        raise VitaeError("DCI disentanglement needs at least two factors")
    x_train, x_test = check_split(x_train, y_train, x_test, y_test, "DCI", min_train=10)
    importance, accuracy = importance_matrix(x_train, y_train, x_test, y_test, categorical,
                                             estimator=estimator, seed=seed)
    return {"d_score": disentanglement(importance), "dci_completeness": completeness(importance),
            "dci_informativeness": float(accuracy.mean())}


def compute(ground_truth, representation_fn, *, seed: int = 0, num_train: int = 10_000, num_test: int = 5_000,
            estimator: str = "classifier", batch_size: int = 1000) -> dict:
    """DCI on freshly sampled training and test sets (disentanglement_lib's sizes by default)."""
    check_estimator(estimator)
    require(num_train, 10, "DCI training")
    rng = np.random.default_rng(seed)
    y_train, x_train = sample(ground_truth, representation_fn, num_train, rng, batch_size=batch_size)
    y_test, x_test = sample(ground_truth, representation_fn, num_test, rng, batch_size=batch_size)
    return dci(x_train, y_train, x_test, y_test, [f.categorical for f in ground_truth.factors],
               estimator=estimator, seed=seed)
