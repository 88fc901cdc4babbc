"""All disentanglement metrics of a representation at once: the keys that ``vitae evaluate`` adds
to metrics.json for a data set with known factors.

DCI, MIG and SAP are computed on one shared pair of i.i.d. samples (``num_train`` for fitting,
``num_test`` for testing; MIG uses the training part), which renders and encodes each image once
instead of three times; FactorVAE draws its own batches. Each part gets its own seed, derived from
``seed``, so results are reproducible.

``protocols = {NAME = [FACTOR, ...]}`` scores the same representation again on a subset of the
factors (the others then vary as nuisance), under keys ``KEY@NAME``: for data with more factors
than codes (the bodies' ten shape coefficients and pose against d = 4).

``dci_estimator`` chooses DCI's per-factor models: ``"classifier"`` (the default,
disentanglement_lib's, what the paper's D_score is) or ``"regressor"`` (see ``vitae.metrics.dci``).
"""

from __future__ import annotations

import numpy as np

from vitae.data.ground_truth_data import FactorSubset
from vitae.errors import VitaeError
from vitae.metrics import dci, factorvae, mig, sap
from vitae.metrics.sampling import require, sample

KEYS = ("d_score", "dci_completeness", "dci_informativeness", "mig", "factorvae_score", "sap")
DEFAULT_SIZES = dict(num_train=10_000, num_test=5_000, num_bins=20, batch_size=1000, factorvae_batch_size=64,
                     factorvae_num_train=500, factorvae_num_eval=500, factorvae_num_variance_estimate=10_000)


OPTIONS = ("dci_estimator", "protocols")


def check_options(ground_truth=None, **options) -> None:
    """Refuse an unknown metric option, DCI estimator or protocol (before any image is rendered or
    encoded); protocols' factors are checked against ``ground_truth`` when it is given."""
    unknown = set(options) - set(DEFAULT_SIZES) - set(OPTIONS)
    if unknown:
        raise VitaeError(f"unknown metric_options {sorted(unknown)}; choose from {sorted([*DEFAULT_SIZES, *OPTIONS])}")
    dci.check_estimator(options.get("dci_estimator", "classifier"))
    protocols = options.get("protocols", {})
    if not isinstance(protocols, dict) or any(not isinstance(k, str) or "@" in k for k in protocols):
        raise VitaeError("metric_options.protocols must be a table {NAME = [FACTOR, ...]}, "
                         f"e.g. {{pose_shape2 = [\"pose\", \"beta_0\", \"beta_1\"]}}; got {protocols!r}")
    if ground_truth is not None:
        for names in protocols.values():
            FactorSubset(ground_truth, names)


def compute_protocols(ground_truth, representation_fn, *, seed: int = 0, protocols: dict | None = None,
                      **options) -> dict[str, float]:
    """``compute_all`` on all factors (keys as in ``KEYS``) and on each protocol's subset of them
    (keys ``KEY@NAME``); see ``vitae.data.ground_truth_data.FactorSubset``."""
    scores = compute_all(ground_truth, representation_fn, seed=seed, **options)
    for name, names in (protocols or {}).items():
        subset = compute_all(FactorSubset(ground_truth, names), representation_fn, seed=seed, **options)
        scores.update({f"{key}@{name}": value for key, value in subset.items()})
    return scores


def compute_all(ground_truth, representation_fn, *, seed: int = 0, dci_estimator: str = "classifier",
                **sizes) -> dict[str, float]:
    """``{d_score, dci_completeness, dci_informativeness, mig, factorvae_score, sap}`` as floats.

    ``sizes`` override ``DEFAULT_SIZES`` (disentanglement_lib's sample sizes, except FactorVAE's
    vote counts; see ``vitae.metrics.factorvae``).
    """
    check_options(dci_estimator=dci_estimator, **sizes)
    s = {**DEFAULT_SIZES, **sizes}
    require(s["num_train"], 10, "the disentanglement metrics' training set")
    require(s["num_test"], 1, "the disentanglement metrics' test set")
    shared, votes = (np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(2))
    y_train, x_train = sample(ground_truth, representation_fn, s["num_train"], shared, batch_size=s["batch_size"])
    y_test, x_test = sample(ground_truth, representation_fn, s["num_test"], shared, batch_size=s["batch_size"])
    categorical = [f.categorical for f in ground_truth.factors]
    result = dci.dci(x_train, y_train, x_test, y_test, categorical, estimator=dci_estimator, seed=seed)
    result["mig"] = mig.mig(x_train, y_train, num_bins=s["num_bins"])
    result["factorvae_score"] = factorvae.compute(
        ground_truth, representation_fn, seed=int(votes.integers(2**31)), batch_size=s["factorvae_batch_size"],
        num_train=s["factorvae_num_train"], num_eval=s["factorvae_num_eval"],
        num_variance_estimate=s["factorvae_num_variance_estimate"])
    result["sap"] = sap.sap(x_train, y_train, x_test, y_test, categorical, num_bins=s["num_bins"])
    return {key: float(result[key]) for key in KEYS}
