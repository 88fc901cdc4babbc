"""MIG: mutual information by hand, and the scores of representations with a known relation to
the factors."""

import numpy as np
import pytest
from toy_factors import REPRESENTATIONS, noise_fn, toy  # noqa: F401 (toy is a fixture)

from vitae.errors import VitaeError
from vitae.metrics import mig


def test_mutual_information_by_hand():
    a = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    assert mig.mutual_information(a, a) == pytest.approx(np.log(4))  # I(a; a) = H(a), four equal classes
    assert mig.mutual_information(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(0)  # independent
    # b = a // 2 keeps one of a's two bits
    assert mig.mutual_information(a, a // 2) == pytest.approx(np.log(2))


def test_discretise_uses_equal_width_bins_over_the_range():
    x = np.array([[0.0], [0.49], [0.51], [1.0]])
    assert mig.discretise(x, num_bins=2).ravel().tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("name", ["identity", "permuted"])
def test_the_factors_themselves_score_one(toy, name):
    # every factor has at most 20 values, so the binned code keeps all of it
    assert mig.compute(toy, REPRESENTATIONS[name], num_train=2000) > 0.98


def test_independent_noise_scores_near_zero(toy):
    assert mig.compute(toy, noise_fn(), num_train=2000) < 0.05


def test_mixing_two_factors_scores_in_between(toy):
    mixed = mig.compute(toy, REPRESENTATIONS["mixed"], num_train=2000)
    clean = mig.compute(toy, REPRESENTATIONS["identity"], num_train=2000)
    # factor a keeps its gap of 1; b and c are shared by two codes, so their gaps shrink
    assert 1 / 3 - 0.05 < mixed < clean - 0.3


def test_bad_input_is_refused(toy):
    with pytest.raises(VitaeError, match="NaN"):
        mig.compute(toy, lambda images: np.full((len(images), 3), np.nan), num_train=100)
    with pytest.raises(VitaeError, match="single value"):
        mig.mig(np.random.default_rng(0).normal(size=(3, 2)), np.zeros((3, 2), dtype=np.int64))
