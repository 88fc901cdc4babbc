"""SAP: its two per-code scores by hand, and the scores of representations with a known
relation to the factors."""

import numpy as np
import pytest
from toy_factors import REPRESENTATIONS, noise_fn, toy  # noqa: F401 (toy is a fixture)

from vitae.errors import VitaeError
from vitae.metrics import sap

SIZES = dict(num_train=2000, num_test=1000)


def test_squared_correlation_by_hand():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert sap.squared_correlation(x, -2 * x + 1) == pytest.approx(1)
    # y = (1, -1, -1, 1) is orthogonal to x - mean = (-1.5, -0.5, 0.5, 1.5)
    assert sap.squared_correlation(x, np.array([1.0, -1.0, -1.0, 1.0])) == pytest.approx(0)


def test_binned_accuracy_separates_a_middle_class():
    # three classes on a line: the middle one, which a linear one-vs-rest classifier cannot isolate
    x = np.repeat([0.0, 1.0, 2.0], 10)
    y = np.repeat([0, 1, 2], 10)
    assert sap.binned_accuracy(x, y, x, y, num_bins=20) == 1.0


@pytest.mark.parametrize("name", ["identity", "permuted"])
def test_the_factors_themselves(toy, name):
    # ordinal b and c: R^2 of 1 against 0; categorical a (4 classes): accuracy 1 against about 1/4
    # from the best other code, so SAP = (3/4 + 1 + 1) / 3
    assert sap.compute(toy, REPRESENTATIONS[name], **SIZES) == pytest.approx(11 / 12, abs=0.03)


def test_independent_noise_scores_near_zero(toy):
    assert sap.compute(toy, noise_fn(), **SIZES) < 0.05


def test_mixing_two_factors_scores_in_between(toy):
    # b and c each correlate equally (R^2 = 1/2) with both mixed codes: their gaps vanish
    mixed = sap.compute(toy, REPRESENTATIONS["mixed"], **SIZES)
    assert mixed == pytest.approx(0.75 / 3, abs=0.05)


def test_bad_input_is_refused(toy):
    with pytest.raises(VitaeError, match="NaN"):
        sap.compute(toy, lambda images: np.full((len(images), 3), np.nan), **SIZES)
    with pytest.raises(VitaeError, match="at least two codes"):
        sap.compute(toy, lambda images: np.zeros((len(images), 1)), **SIZES)
