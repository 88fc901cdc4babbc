"""Sprites: the dSprites factor grid, rendered from the factors (the original file is not shipped).

Factors (the grid of dSprites, 3 x 6 x 40 x 32 x 32 = 737,280 combinations):

* ``shape``: 0 square, 1 ellipse, 2 heart (categorical);
* ``scale``: 6 values in ``linspace(0.5, 1, 6)``;
* ``orientation``: 40 values in ``linspace(0, 2 pi, 40)``, radians, counter-clockwise as displayed.
  As in dSprites the first and last values are the same angle, and the square (ellipse) repeats
  itself every pi/2 (pi), so some orientations draw identical images;
* ``pos_x``, ``pos_y``: 32 values each in ``linspace(0, 1, 32)``; ``pos_x`` grows to the right,
  ``pos_y`` downwards (image rows).

Geometry: 64x64 binary images, a pixel is 1 when its centre lies inside the shape (no
anti-aliasing). Each shape is drawn in a unit frame where it fits in the unit disc (square with
corners on the circle, ellipse with semi-axes 1 and 1/2, the heart ``(x^2 + y^2 - 1)^3 <= x^2 y^3``
shrunk by 1/1.25 about ``y = 0.25``); the frame is scaled to a radius of ``11 * scale`` pixels and
centred at ``12 + 40 * pos`` pixels from the top-left corner, so every sprite stays inside the image.
Only the 23x23 window that can hold the sprite is evaluated, which is what makes 100,000 images take
seconds.

``load`` draws the train and test splits from the grid (uniformly, with replacement) and caches
them on disk (bit-packed) keyed by their parameters; ``labels`` are the shape.
"""

from __future__ import annotations

import numpy as np
import torch

from vitae.data.base import Dataset, Split
from vitae.data.ground_truth_data import Factor, GroundTruthData, cache_path, generate, save_atomically, split_seeds, to_dataset
from vitae.errors import VitaeError

SIZE = 64
RADIUS = 11.0  # pixels, at scale 1
MARGIN = 12.0  # pixels from the border to the centre at pos = 0
WINDOW = 23  # pixels whose centres can fall within RADIUS of the sprite centre
RENDER_VERSION = 1  # bump when the drawing changes, so cached images are redrawn


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= np.sqrt(0.5)


def _ellipse(u, v):
    return u**2 + (2 * v) ** 2 <= 1


def _heart(u, v):
    x, y = 1.25 * u, 1.25 * v + 0.25
    return (x**2 + y**2 - 1) ** 3 <= x**2 * y**3


SHAPES = (_square, _ellipse, _heart)


class SpritesData(GroundTruthData):
    name = "sprites"
    observation_shape = (1, SIZE, SIZE)
    factors = (
        Factor("shape", values=np.arange(3.0), categorical=True),
        Factor("scale", values=np.linspace(0.5, 1, 6)),
        Factor("orientation", values=np.linspace(0, 2 * np.pi, 40)),
        Factor("pos_x", values=np.linspace(0, 1, 32)),
        Factor("pos_y", values=np.linspace(0, 1, 32)),
    )

    def render(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        return torch.from_numpy(render_sprites(factors).astype(np.float32)).unsqueeze(1)


def render_sprites(factors: np.ndarray) -> np.ndarray:
    """Binary images ``[N, 64, 64]`` (bool) of valid factor rows ``[N, 5]``."""
    n = len(factors)
    shape = factors[:, 0].astype(np.int64)
    radius = RADIUS * factors[:, 1]
    cos, sin = np.cos(factors[:, 2]), np.sin(factors[:, 2])
    cx, cy = MARGIN + (SIZE - 2 * MARGIN) * factors[:, 3], MARGIN + (SIZE - 2 * MARGIN) * factors[:, 4]
    # first pixel whose centre (j + 0.5) can be within RADIUS of the centre
    cols = np.ceil(cx - RADIUS - 0.5).astype(np.int64)[:, None] + np.arange(WINDOW)
    rows = np.ceil(cy - RADIUS - 0.5).astype(np.int64)[:, None] + np.arange(WINDOW)
    dx = (cols + 0.5 - cx[:, None]) / radius[:, None]  # [N, W], rightwards
    dy = (cy[:, None] - rows - 0.5) / radius[:, None]  # [N, W], upwards
    # rotate the pixel back by the orientation: (u, v) = R(-theta) (dx, dy)
    u = cos[:, None, None] * dx[:, None, :] + sin[:, None, None] * dy[:, :, None]
    v = cos[:, None, None] * dy[:, :, None] - sin[:, None, None] * dx[:, None, :]
    inside = np.zeros((n, WINDOW, WINDOW), dtype=bool)
    for k, draw in enumerate(SHAPES):
        mask = shape == k
        if mask.any():
            inside[mask] = draw(u[mask], v[mask])
    images = np.zeros((n, SIZE, SIZE), dtype=bool)
    images[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]] = inside
    return images


def ground_truth(root=None, **options) -> SpritesData:
    return SpritesData()


def load(root=None, *, n_train: int = 100_000, n_test: int = 10_000, seed: int = 0, cache: bool = True) -> Dataset:
    """Train and test splits drawn uniformly from the grid with ``seed`` (cached on disk when ``cache``).

    Memory: 64x64 float32 images take 16 KB each, 1.8 GB for the default 110,000.
    """
    if root:
        raise VitaeError("the sprites data set is generated, it reads no data_root; leave data_root out")
    data = SpritesData()
    path = cache_path("sprites", dict(version=RENDER_VERSION, n_train=n_train, n_test=n_test, seed=seed))
    if cache and path.is_file():
        with np.load(path) as stored:
            splits = [_unpack(stored[f"{s}_images"], stored[f"{s}_factors"], data) for s in ("train", "test")]
        return to_dataset(data, *splits)
    rng_train, rng_test = split_seeds(seed)
    train, test = generate(data, n_train, rng_train, label=0), generate(data, n_test, rng_test, label=0)
    if cache:
        save_atomically(path, **{f"{s}_{k}": v for s, split in (("train", train), ("test", test))
                                 for k, v in (("images", np.packbits(split.images.numpy() > 0.5, axis=-1)),
                                              ("factors", split.factors.numpy()))})
    return to_dataset(data, train, test)


def _unpack(packed: np.ndarray, factors: np.ndarray, data: SpritesData) -> Split:
    images = torch.from_numpy(np.unpackbits(packed, axis=-1).astype(np.float32))
    return Split(images, torch.from_numpy(data.codes(factors)[:, 0]), torch.from_numpy(factors))
