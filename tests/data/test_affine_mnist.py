"""Affine-MNIST: the warp's identity and conventions (shift right/down, rotation clockwise,
magnification), every factor changes the image, and range checks. Uses hand-made digits, so it
needs no MNIST files."""

import numpy as np
import pytest
import torch

from vitae.data.affine_mnist import AffineMnistData, _warped_split
from vitae.data.base import Split
from vitae.errors import VitaeError

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def digits():
    images = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    images[:, :, :4] = images[:, :, -4:] = images[:, :, :, :4] = images[:, :, :, -4:] = 0  # empty border
    return Split(images, torch.arange(20) % 10)


def test_zero_warp_is_the_identity(digits):
    data = AffineMnistData(digits)
    out = data.warp(digits.images, np.tile([0.0, 1.0, 0.0, 0.0], (20, 1)))
    assert torch.equal(out, digits.images)


def test_shift_moves_right_and_down_by_whole_pixels(digits):
    data = AffineMnistData(digits)
    out = data.warp(digits.images[:1], np.array([[0.0, 1.0, 4 / 28, 2 / 28]]))  # 2 px right, 1 px down
    expected = torch.roll(digits.images[:1], shifts=(1, 2), dims=(2, 3))
    assert torch.allclose(out, expected, atol=1e-5)


def test_rotation_is_clockwise_as_displayed(digits):
    data = AffineMnistData(digits)
    out = data.warp(digits.images[:1], np.array([[np.pi / 2, 1.0, 0.0, 0.0]]))
    expected = torch.rot90(digits.images[:1], k=-1, dims=(2, 3))  # k = -1: clockwise
    assert torch.allclose(out, expected, atol=1e-5)


def test_scale_magnifies(digits):
    data = AffineMnistData(digits)
    dot = torch.zeros(1, 1, 28, 28)
    dot[0, 0, 12:16, 12:16] = 1  # a 4x4 square about the centre
    assert data.warp(dot, np.array([[0.0, 1.1, 0.0, 0.0]])).sum() == pytest.approx(16 * 1.1**2, rel=0.05)
    assert data.warp(dot, np.array([[0.0, 0.8, 0.0, 0.0]])).sum() == pytest.approx(16 * 0.8**2, rel=0.05)


@pytest.mark.parametrize("k", range(5))
def test_every_factor_changes_the_image(digits, k):
    data = AffineMnistData(digits)
    base = np.array([[3.0, 0.1, 0.9, 0.05, -0.05]])
    changed = base.copy()
    changed[0, k] += 1 if k == 0 else 0.05
    a = data.sample_observations_from_factors(base, np.random.default_rng(5))
    b = data.sample_observations_from_factors(changed, np.random.default_rng(5))
    assert not torch.equal(a, b)


def test_digit_factor_picks_an_image_of_that_class(digits):
    data = AffineMnistData(digits)
    factors = np.array([[7.0, 0.0, 1.0, 0.0, 0.0]])
    image = data.sample_observations_from_factors(factors, RNG)
    assert any(torch.equal(image[0], digits.images[i]) for i in (7, 17))


def test_out_of_range_factors_are_refused(digits):
    data = AffineMnistData(digits)
    with pytest.raises(VitaeError, match="rotation"):
        data.sample_observations_from_factors(np.array([[1.0, 1.0, 1.0, 0.0, 0.0]]), RNG)
    with pytest.raises(VitaeError, match="digit"):
        data.sample_observations_from_factors(np.array([[10.0, 0.0, 1.0, 0.0, 0.0]]), RNG)


def test_split_keeps_labels_as_the_digit_factor(digits):
    split = _warped_split(AffineMnistData(digits), digits, np.random.default_rng(0))
    assert torch.equal(split.factors[:, 0].long(), split.labels) and split.images.shape == digits.images.shape
