"""FactorVAE score: the majority-vote classifier by hand, and the scores of representations
with a known relation to the factors."""

import numpy as np
import pytest
from toy_factors import REPRESENTATIONS, noise_fn, toy  # noqa: F401 (toy is a fixture)

from vitae.errors import VitaeError
from vitae.metrics import factorvae, disentanglement

SIZES = dict(num_train=200, num_eval=200, num_variance_estimate=2000)


def test_majority_vote_accuracy_by_hand():
    train = np.array([[5, 1], [2, 3]])  # code 0 -> factor 0, code 1 -> factor 1
    evaluate = np.array([[4, 1], [2, 3]])  # right: 4 + 3 of 10
    assert factorvae.majority_vote_accuracy(train, evaluate) == pytest.approx(0.7)


@pytest.mark.parametrize("name", ["identity", "permuted"])
def test_the_factors_themselves_score_one(toy, name):
    assert factorvae.compute(toy, REPRESENTATIONS[name], **SIZES) == 1.0


def test_independent_noise_scores_at_chance(toy):
    assert factorvae.compute(toy, noise_fn(), **SIZES) == pytest.approx(1 / 3, abs=0.1)


def test_mixing_two_factors_scores_in_between(toy):
    # fixing b (or c) halves the variance of both mixed codes: a coin toss between them,
    # so at best a, and half of b and c: (1 + 1/2 + 1/2) / 3
    mixed = factorvae.compute(toy, REPRESENTATIONS["mixed"], **SIZES)
    assert 1 / 3 + 0.1 < mixed < 2 / 3 + 0.08


def test_collapsed_codes_are_dropped(toy):
    # a constant extra code has zero variance in every batch, and must not win every vote
    fn = lambda images: np.concatenate([REPRESENTATIONS["identity"](images), np.zeros((len(images), 1))], axis=1)
    assert factorvae.compute(toy, fn, **SIZES) == 1.0


def test_bad_input_is_refused(toy):
    with pytest.raises(VitaeError, match="NaN"):
        factorvae.compute(toy, lambda images: np.full((len(images), 3), np.nan), **SIZES)
    with pytest.raises(VitaeError, match="at least 2 samples"):
        factorvae.compute(toy, REPRESENTATIONS["identity"], batch_size=1)


def test_compute_all_returns_the_six_keys_and_is_reproducible(toy):
    sizes = dict(num_train=500, num_test=200, factorvae_num_train=50, factorvae_num_eval=50,
                 factorvae_num_variance_estimate=500)
    first = disentanglement.compute_all(toy, REPRESENTATIONS["identity"], seed=3, **sizes)
    assert set(first) == {"d_score", "dci_completeness", "dci_informativeness", "mig", "factorvae_score", "sap"}
    assert all(isinstance(v, float) for v in first.values())
    assert disentanglement.compute_all(toy, REPRESENTATIONS["identity"], seed=3, **sizes) == first
    with pytest.raises(VitaeError, match="unknown metric_options"):
        disentanglement.compute_all(toy, REPRESENTATIONS["identity"], num_samples=3)


def test_a_protocol_scores_a_subset_of_the_factors_the_others_as_nuisance(toy):
    from vitae.data.ground_truth_data import FactorSubset

    subset = FactorSubset(toy, ["c", "a"])
    rng = np.random.default_rng(0)
    factors = subset.sample_factors(200, rng)
    assert factors.shape == (200, 2)
    observed = subset.sample_observations_from_factors(factors, rng).reshape(200, 3).double().numpy()
    np.testing.assert_array_equal(observed[:, [2, 0]], factors)  # the chosen factors are as given ...
    assert len(np.unique(observed[:, 1])) == 5  # ... and the left-out one varies over its values
    sizes = dict(num_train=300, num_test=100, batch_size=100, factorvae_num_train=20, factorvae_num_eval=20,
                 factorvae_num_variance_estimate=200)
    scores = disentanglement.compute_protocols(toy, REPRESENTATIONS["identity"], seed=1, protocols={"ca": ["c", "a"]}, **sizes)
    assert set(scores) == set(disentanglement.KEYS) | {f"{k}@ca" for k in disentanglement.KEYS}
    assert scores == {**disentanglement.compute_all(toy, REPRESENTATIONS["identity"], seed=1, **sizes),
                      **{f"{k}@ca": v for k, v in disentanglement.compute_all(subset, REPRESENTATIONS["identity"], seed=1, **sizes).items()}}
    for bad in (["c", "z"], ["a", "a"], "a", []):
        with pytest.raises(VitaeError, match="a factor subset must list distinct factors"):
            disentanglement.check_options(toy, protocols={"p": bad})
    with pytest.raises(VitaeError, match="protocols must be a table"):
        disentanglement.check_options(toy, protocols=["a"])
