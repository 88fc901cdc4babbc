"""Affine-MNIST: MNIST digits under known random affine warps (protocol in docs/affine_mnist.md).

Factors: ``digit`` (0-9, categorical: the appearance) and the perspective ``rotation`` (radians,
clockwise as displayed, since image rows point down; uniform in [-pi/4, pi/4]), ``scale`` (magnification, uniform in
[0.8, 1.1]), ``shift_x`` and ``shift_y`` (uniform in [-0.15, 0.15] in the normalised frame of
``vitae.transforms``, i.e. +-2.1 pixels, right and down). Continuous factors are cut into 10
equal-width bins (equiprobable, since they are uniform) for the metrics.

Rendering: the digit is a random MNIST image of that class (the writer's style is noise that the
factors do not fix, drawn from ``rng``), moved by ``T = [R(rotation) * scale | shift]``: the pixel at
``p`` shows the original at ``T^{-1}(p)`` (``AffineDecomp.warp(..., inverse=True)``, bilinear, zeros
outside), on the 28x28 canvas. ``load`` warps the MNIST training images for the train split and the
test images for the test split, one warp per image; the metrics' generator draws from the test images.
"""

from __future__ import annotations

import numpy as np
import torch

from vitae.data import mnist
from vitae.data.base import Dataset, Split
from vitae.data.ground_truth_data import Factor, GroundTruthData, split_seeds, to_dataset
from vitae.errors import VitaeError
from vitae.transforms import create as create_transform

ROTATION = np.pi / 4
SCALE = (0.8, 1.1)
SHIFT = 0.15
NUM_BINS = 10


def _uniform(name: str, low: float, high: float) -> Factor:
    return Factor(name, low=low, high=high, edges=np.linspace(low, high, NUM_BINS + 1)[1:-1])


class AffineMnistData(GroundTruthData):
    name = "affine_mnist"
    observation_shape = (1, 28, 28)
    factors = (
        Factor("digit", values=np.arange(10.0), categorical=True),
        _uniform("rotation", -ROTATION, ROTATION),
        _uniform("scale", *SCALE),
        _uniform("shift_x", -SHIFT, SHIFT),
        _uniform("shift_y", -SHIFT, SHIFT),
    )

    def __init__(self, digits: Split):
        """``digits``: the MNIST images (with labels) that render each digit class."""
        self.images = digits.images
        self.by_class = [torch.nonzero(digits.labels == k).flatten().numpy() for k in range(10)]
        self.transform = create_transform("affine_decomp")

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([
            rng.integers(10, size=n).astype(np.float64),
            rng.uniform(-ROTATION, ROTATION, n),
            rng.uniform(*SCALE, n),
            rng.uniform(-SHIFT, SHIFT, n),
            rng.uniform(-SHIFT, SHIFT, n),
        ], axis=1)

    def render(self, factors: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        index = np.array([rng.choice(self.by_class[int(d)]) for d in factors[:, 0]], dtype=np.int64)
        return self.warp(self.images[index], factors[:, 1:])

    def warp(self, images: torch.Tensor, perspective: np.ndarray) -> torch.Tensor:
        """``images`` moved by the warps ``perspective`` ``[N, 4]`` (rotation, scale, shift_x, shift_y)."""
        rotation, scale, shift_x, shift_y = torch.from_numpy(perspective).T
        theta = torch.stack([rotation, torch.zeros_like(rotation), scale - 1, scale - 1, shift_x, shift_y], dim=1)
        with torch.no_grad():  # in chunks: the sampling grid of 60,000 images would take gigabytes
            warped = [self.transform.warp(x.double(), t, inverse=True) for x, t in zip(images.split(5000), theta.split(5000))]
        return torch.cat(warped).float().clamp(0, 1)


def _warped_split(data: AffineMnistData, digits: Split, rng: np.random.Generator) -> Split:
    """Every image of ``digits`` under its own random warp."""
    factors = data.sample_factors(len(digits), rng)
    factors[:, 0] = digits.labels.numpy()
    return Split(data.warp(digits.images, factors[:, 1:]), digits.labels.clone(), torch.from_numpy(factors))


def ground_truth(root=None, *, seed=None) -> AffineMnistData:
    """The generator over the MNIST test digits (from ``root`` when given, else the shipped copy)."""
    return AffineMnistData(mnist.load(root).test)


def load(root=None, *, seed: int = 0) -> Dataset:
    """The 60,000 training and 10,000 test digits, each under one random warp drawn with ``seed``."""
    base = mnist.load(root)
    if base.train.labels is None:
        raise VitaeError("affine_mnist needs MNIST labels (the digit is a factor)")
    rng_train, rng_test = split_seeds(seed)
    train = _warped_split(AffineMnistData(base.train), base.train, rng_train)
    test_data = AffineMnistData(base.test)
    return to_dataset(test_data, train, _warped_split(test_data, base.test, rng_test))
