"""DCI: the entropy and scores against hand-computed cases, and the scores of representations
whose relation to the factors is known."""

import numpy as np
import pytest
from toy_factors import REPRESENTATIONS, ToyData, noise_fn, toy  # noqa: F401 (toy is a fixture)

from vitae.errors import VitaeError
from vitae.metrics import dci

SIZES = dict(num_train=1500, num_test=500)


def test_entropy_by_hand():
    # a fair coin carries 1 bit, a certain outcome 0, a uniform 3-way outcome 1 in base 3;
    # a zero row counts as uniform
    assert dci.entropy(np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 0.0]]), base=2) == pytest.approx([1, 0, 1])
    assert dci.entropy(np.array([[2.0, 2.0, 2.0]]), base=3) == pytest.approx([1])


def test_scores_of_a_small_importance_matrix_by_hand():
    # code 0 serves factor 0 only, code 1 both factors equally:
    # D = 1/2 * (1 - 0) + 1/2 * (1 - 1) = 0.5
    # factor 0's column (1, 0.5) -> p = (2/3, 1/3), H_2 = log2(3) - 2/3; weight 1.5 / 2
    # factor 1's column (0, 0.5) -> H = 0; weight 0.5 / 2
    r = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert dci.disentanglement(r) == pytest.approx(0.5)
    assert dci.completeness(r) == pytest.approx(0.75 * (1 - (np.log2(3) - 2 / 3)) + 0.25)


def test_importance_matrix_puts_each_factor_on_its_own_code():
    # factor 0 is code 0 and factor 1 is code 1 exactly, the codes independent of each other:
    # the other code carries no information, so (up to the trees' noise) R is the identity
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=(2000, 2))
    x = y + 0.0
    importance, accuracy = dci.importance_matrix(x[:1500], y[:1500], x[1500:], y[1500:], [True, False])
    assert importance == pytest.approx(np.eye(2), abs=0.02)
    assert accuracy == pytest.approx([1, 1])


@pytest.mark.parametrize("name", ["identity", "permuted"])
def test_the_factors_themselves_score_one(toy, name):
    scores = dci.compute(toy, REPRESENTATIONS[name], **SIZES)
    assert scores["d_score"] > 0.97
    assert scores["dci_completeness"] > 0.97
    assert scores["dci_informativeness"] > 0.97


def test_independent_noise_scores_near_zero(toy):
    scores = dci.compute(toy, noise_fn(), **SIZES)
    assert scores["d_score"] < 0.1
    assert scores["dci_completeness"] < 0.1
    # accuracy falls to about chance: 1/4, 1/5, 1/6
    assert scores["dci_informativeness"] < 0.35


def test_mixing_two_factors_scores_in_between(toy):
    mixed = dci.compute(toy, REPRESENTATIONS["mixed"], **SIZES)
    clean = dci.compute(toy, REPRESENTATIONS["identity"], **SIZES)
    # two of three codes split their importance evenly: D is about 1/3 + 2/3 * (1 - log3(2)) = 0.58
    assert 0.3 < mixed["d_score"] < clean["d_score"] - 0.2
    assert mixed["dci_informativeness"] > 0.95  # a rotation loses no information


def test_nan_representation_is_refused(toy):
    with pytest.raises(VitaeError, match="NaN"):
        dci.compute(toy, lambda images: np.full((len(images), 3), np.nan), **SIZES)


def test_too_few_samples_is_refused(toy):
    with pytest.raises(VitaeError, match="at least 10 samples"):
        dci.compute(toy, REPRESENTATIONS["identity"], num_train=5, num_test=5)


def disentanglement_lib_d_score(x_train, y_train):
    """disentanglement_lib's DCI disentanglement written out independently: one default
    GradientBoostingClassifier per factor, |feature_importances_| as the importance matrix
    [codes, factors], per code 1 - entropy(row + 1e-11, base K) (scipy), weighted by its share."""
    from scipy.stats import entropy
    from sklearn.ensemble import GradientBoostingClassifier

    k = y_train.shape[1]
    r = np.stack([np.abs(GradientBoostingClassifier(random_state=0).fit(x_train, y_train[:, j]).feature_importances_)
                  for j in range(k)], axis=1)
    per_code = 1 - entropy(r.T + 1e-11, base=k)
    return float(np.sum(per_code * r.sum(axis=1) / r.sum()))


def test_the_default_d_score_is_disentanglement_libs(toy):
    rng = np.random.default_rng(1)
    factors = toy.sample_factors(800, rng)
    y = toy.codes(factors)
    x = REPRESENTATIONS["mixed"](toy.render(factors, rng)) + rng.normal(scale=0.3, size=(800, 3))
    ours = dci.dci(x[:600], y[:600], x[600:], y[600:], [f.categorical for f in toy.factors])
    assert ours["d_score"] == pytest.approx(disentanglement_lib_d_score(x[:600], y[:600]), abs=1e-9)


def test_the_regressor_is_a_named_option_fitting_ordinal_factors_by_regression():
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, size=(500, 2))
    x = y @ np.array([[1.0, 0.4], [0.3, 1.0]]) + rng.normal(scale=0.8, size=(500, 2))
    importance, _ = dci.importance_matrix(x[:400], y[:400], x[400:], y[400:], [True, False], estimator="regressor", n_jobs=1)
    by_hand = np.stack([GradientBoostingClassifier(random_state=0).fit(x[:400], y[:400, 0]).feature_importances_,
                        GradientBoostingRegressor(random_state=0).fit(x[:400], y[:400, 1] + 0.0).feature_importances_], axis=1)
    np.testing.assert_allclose(importance, by_hand, rtol=0, atol=1e-12)
    default, _ = dci.importance_matrix(x[:400], y[:400], x[400:], y[400:], [True, False], n_jobs=1)
    assert not np.allclose(default[:, 1], by_hand[:, 1], atol=1e-3)  # the default classifies factor 1 too
    with pytest.raises(VitaeError, match="unknown DCI estimator 'gbr'"):
        dci.compute(ToyData(), REPRESENTATIONS["mixed"], estimator="gbr", **SIZES)


def test_parallel_fitting_gives_the_sequential_result():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, size=(400, 3))
    x = y + rng.normal(scale=0.5, size=y.shape)
    one = dci.importance_matrix(x[:300], y[:300], x[300:], y[300:], [True, False, False], n_jobs=1)
    two = dci.importance_matrix(x[:300], y[:300], x[300:], y[300:], [True, False, False], n_jobs=2)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
