"""The ground-truth interface: factor codes, range checks, generated splits and their cache key."""

import numpy as np
import pytest

from vitae.data import REGISTRY, ground_truth as gt_by_name
from vitae.data.ground_truth_data import Factor, cache_path, generate, split_seeds
from vitae.data.sprites import SpritesData
from vitae.errors import VitaeError


def test_discrete_codes_are_grid_indices():
    factor = Factor("scale", values=np.linspace(0.5, 1, 6))
    assert factor.codes(np.array([0.5, 0.6, 1.0, 0.9])).tolist() == [0, 1, 5, 4]


def test_continuous_codes_are_bins_between_edges():
    factor = Factor("x", low=0, high=1, edges=np.array([0.25, 0.5, 0.75]))
    assert factor.num_classes == 4
    assert factor.codes(np.array([0.0, 0.3, 0.5, 0.99, 1.0])).tolist() == [0, 1, 2, 3, 3]


@pytest.mark.parametrize("factor, value", [
    (Factor("scale", values=np.linspace(0.5, 1, 6)), 0.55),  # between grid values
    (Factor("scale", values=np.linspace(0.5, 1, 6)), 2.0),
    (Factor("x", low=0, high=1, edges=np.array([0.5])), 1.5),
    (Factor("x", low=0, high=1, edges=np.array([0.5])), np.nan),
])
def test_out_of_range_values_are_refused(factor, value):
    with pytest.raises(VitaeError, match="factor"):
        factor.codes(np.array([value]))


def test_wrong_factor_shape_is_refused():
    with pytest.raises(VitaeError, match=r"\[N, 5\]"):
        SpritesData().sample_observations_from_factors(np.zeros((2, 4)), np.random.default_rng(0))


def test_default_sampling_covers_every_grid_value_uniformly():
    factors = SpritesData().sample_factors(30_000, np.random.default_rng(0))
    counts = np.bincount(SpritesData().codes(factors)[:, 1])  # scale: 6 values
    assert counts / counts.sum() == pytest.approx(np.full(6, 1 / 6), abs=0.01)


def test_generated_split_is_reproducible_and_labelled():
    a = generate(SpritesData(), 50, split_seeds(4)[0], label=0)
    b = generate(SpritesData(), 50, split_seeds(4)[0], label=0)
    assert (a.images == b.images).all() and (a.factors == b.factors).all()
    assert (a.labels.numpy() == a.factors[:, 0].numpy()).all()  # shape codes are the shape values 0, 1, 2
    train, test = split_seeds(4)
    assert not np.array_equal(train.random(3), test.random(3))


def test_cache_path_depends_on_every_parameter(monkeypatch, tmp_path):
    monkeypatch.setenv("VITAE_CACHE", str(tmp_path))
    base = cache_path("sprites", dict(n_train=10, seed=0))
    assert base.parent == tmp_path
    assert base == cache_path("sprites", dict(seed=0, n_train=10))
    assert base != cache_path("sprites", dict(n_train=10, seed=1))
    assert base != cache_path("bodies", dict(n_train=10, seed=0))


def test_registry_names_the_three_data_sets():
    assert {"sprites", "bodies", "affine_mnist"} <= set(REGISTRY)
    assert isinstance(gt_by_name("sprites"), SpritesData)
