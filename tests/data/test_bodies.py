"""Bodies: deterministic, every factor changes the image, the poses of Table 2, the factor
distribution, and clear errors for bad factors and missing packages."""

import sys

import numpy as np
import pytest
import torch

from vitae.data import bodies
from vitae.errors import VitaeError

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def data():
    return bodies.BodiesData(height=160, width=80)


@pytest.fixture(scope="module")
def base(data):
    factors = np.zeros((1, data.num_factors))
    factors[0, -1] = 1
    return factors, data.sample_observations_from_factors(factors, RNG)


def test_rendering_is_deterministic_and_in_range(data, base):
    factors, image = base
    assert image.shape == (1, 1, 160, 80)
    assert torch.equal(image, data.sample_observations_from_factors(factors, RNG))
    assert image.min() == 0 and image.max() <= 1
    assert image[0, 0, 0, 0] == 0 and image[0, 0, 80, 40] > 0  # background corner, body at the centre


@pytest.mark.parametrize("k", range(11))
def test_every_factor_changes_the_image(data, base, k):
    factors, image = base
    changed = factors.copy()
    changed[0, k] += 1 if k == data.num_factors - 1 else 1.25  # the next pose, or one standard deviation
    assert not torch.equal(image, data.sample_observations_from_factors(changed, RNG))


def test_poses_raise_and_lower_the_arms_symmetrically(data):
    factors = np.zeros((4, data.num_factors))
    factors[:, -1] = np.arange(4)
    images = data.sample_observations_from_factors(factors, RNG)[:, 0].numpy()
    # the highest body pixel near each side edge is a hand
    right_hand = [np.argwhere(im[:, :20] > 0)[:, 0].min() for im in images]
    left_hand = [np.argwhere(im[:, -20:] > 0)[:, 0].min() for im in images]
    assert right_hand[0] > right_hand[1] > right_hand[2] > right_hand[3]  # the hands rise from pose 0 to pose 3
    assert np.abs(np.subtract(right_hand, left_hand)).max() <= 1  # and both hands equally


def test_shape_factors_follow_their_distribution(data):
    factors = data.sample_factors(20_000, np.random.default_rng(1))
    assert factors[:, :-1].std() == pytest.approx(1.25, rel=0.02)
    codes = data.codes(factors)
    assert np.bincount(codes[:, 0], minlength=10) / 20_000 == pytest.approx(np.full(10, 0.1), abs=0.015)
    assert np.bincount(codes[:, -1]) / 20_000 == pytest.approx(np.full(4, 0.25), abs=0.015)


def test_bad_factors_are_refused(data):
    factors = np.zeros((1, data.num_factors))
    factors[0, -1] = 4
    with pytest.raises(VitaeError, match="pose"):
        data.sample_observations_from_factors(factors, RNG)
    factors[0, -1], factors[0, 0] = 0, 7.0  # beyond 5 standard deviations
    with pytest.raises(VitaeError, match="beta_0"):
        data.sample_observations_from_factors(factors, RNG)


def test_missing_packages_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mannequin", None)
    with pytest.raises(VitaeError, match=r"vitae-perspective\[bodies\]"):
        bodies.BodiesData()
    monkeypatch.setitem(sys.modules, "smplx", None)
    with pytest.raises(VitaeError, match=r"vitae-perspective\[smpl\]"):
        bodies.BodiesData(model_path="/nowhere/SMPL_NEUTRAL.pkl")


def test_the_shape_basis_stays_close_to_the_body_model():
    """The default (the linear shape basis) against ``exact_shapes`` (the mannequin per image), at
    the paper's 400 x 200 on typical and on extreme shapes: the vertices within the documented
    millimetres, under 1% of the silhouette's pixels changed, both renderers' images as they are."""
    fast, exact = bodies.BodiesData(), bodies.BodiesData(exact_shapes=True)
    factors = fast.sample_factors(6, np.random.default_rng(3))
    factors[0, :-1], factors[1, :-1] = 5 * bodies.SHAPE_STD, -5 * bodies.SHAPE_STD  # every coefficient at +-5 sd
    deviation = np.abs(fast.vertices(factors) - exact.vertices(factors)).max(axis=(1, 2))
    assert deviation[:2].max() < 0.009 and np.median(deviation[2:]) < 0.001  # metres
    assert deviation.min() > 0  # (so the two paths really are different computations)
    a, b = fast.render(factors)[:, 0] > 0, exact.render(factors)[:, 0] > 0
    changed = (a != b).sum(dim=(1, 2)) / b.sum(dim=(1, 2))
    assert changed.max() < 0.01, changed
    # the basis reproduces the model exactly where it was taken: shape 0 and a unit coefficient
    for k in (0, 9):
        at = np.zeros((4, 11))
        at[:, -1], at[:, k] = np.arange(4), 1.0 if k else 0.0
        np.testing.assert_allclose(fast.vertices(at), exact.vertices(at), rtol=0, atol=1e-12)


def test_exact_shapes_must_be_a_boolean():
    with pytest.raises(VitaeError, match="exact_shapes must be true or false"):
        bodies.BodiesData(height=20, width=10, exact_shapes="yes")


def test_load_caches_on_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("VITAE_CACHE", str(tmp_path))
    first = bodies.load(n_train=4, n_test=2, height=80, width=40)
    again = bodies.load(n_train=4, n_test=2, height=80, width=40)
    assert len(list(tmp_path.glob("bodies-*.npz"))) == 1
    assert torch.equal(first.train.images, again.train.images) and torch.equal(first.train.labels, again.train.labels)
    assert first.factor_names[-1] == "pose" and first.train.factors.shape == (4, 11)
