"""Sprites: deterministic, binary, every factor changes the image, shapes have their areas, and
the disk cache returns what was drawn."""

import numpy as np
import pytest
import torch

from vitae.data import sprites
from vitae.errors import VitaeError

RNG = np.random.default_rng(0)
BASE = np.array([[2.0, 0.8, sprites.SpritesData.factors[2].values[5], 10 / 31, 20 / 31]])


def render(factors):
    return sprites.SpritesData().sample_observations_from_factors(factors, RNG)


def test_rendering_is_deterministic_and_binary():
    factors = sprites.SpritesData().sample_factors(200, np.random.default_rng(1))
    a, b = render(factors), render(factors)
    assert a.shape == (200, 1, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("k", range(5))
def test_every_factor_changes_the_image(k):
    values = sprites.SpritesData.factors[k].values
    changed = BASE.copy()
    changed[0, k] = values[np.searchsorted(values, BASE[0, k]) - 1]  # the neighbouring grid value
    assert not torch.equal(render(BASE), render(changed))


def test_square_covers_the_pixel_centres_inside_it():
    # centre 12 + 40 * 16/31 = 32.645 px, half side 11 / sqrt(2) = 7.778 px: the pixel centres
    # j + 0.5 in [24.87, 40.42] are j = 25..39, 15 per side
    image = render(np.array([[0, 1.0, 0.0, 16 / 31, 16 / 31]]))[0, 0]
    assert image.sum() == 15 * 15
    assert image[25:40, 25:40].sum() == 15 * 15


def test_ellipse_covers_its_area():
    pixels = render(np.array([[1, 1.0, 0.0, 16 / 31, 16 / 31]])).sum().item()
    assert pixels == pytest.approx(np.pi * 11.0 * 5.5, rel=0.05)  # semi-axes 11 and 5.5 px


def test_quarter_turn_of_the_ellipse_swaps_its_extent():
    quarter = sprites.SpritesData.factors[2].values[10]  # 10/39 of a full turn, about 92 degrees
    image = render(np.array([[1, 1.0, quarter, 16 / 31, 16 / 31]]))[0, 0].numpy()
    rows, cols = np.nonzero(image)
    assert np.ptp(rows) > 1.8 * np.ptp(cols)  # the long axis now runs vertically


def test_position_moves_the_sprite_right_and_down():
    left = render(np.array([[0, 0.5, 0.0, 0.0, 0.0]]))[0, 0].numpy()
    right = render(np.array([[0, 0.5, 0.0, 1.0, 1.0]]))[0, 0].numpy()
    (r0, c0), (r1, c1) = (np.argwhere(im).mean(axis=0) for im in (left, right))
    assert c1 - c0 == pytest.approx(40, abs=0.5) and r1 - r0 == pytest.approx(40, abs=0.5)


def test_out_of_range_factor_is_refused():
    with pytest.raises(VitaeError, match="shape"):
        render(np.array([[3.0, 1.0, 0.0, 16 / 31, 16 / 31]]))


def test_load_caches_on_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("VITAE_CACHE", str(tmp_path))
    first = sprites.load(n_train=300, n_test=100, seed=2)
    assert len(list(tmp_path.glob("sprites-*.npz"))) == 1
    again = sprites.load(n_train=300, n_test=100, seed=2)
    assert torch.equal(first.train.images, again.train.images) and torch.equal(first.test.factors, again.test.factors)
    assert torch.equal(first.train.labels, again.train.labels)
    assert first.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    # the images are those of their factors
    assert torch.equal(first.test.images[:20], render(first.test.factors[:20].numpy()))
