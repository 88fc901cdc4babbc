"""A ground truth whose observation is its own factor vector, so a test can hand the metrics a
representation with a known relation to the factors (the factors themselves, a rotation, noise)."""

import numpy as np
import pytest
import torch

from vitae.data.ground_truth_data import Factor, GroundTruthData


class ToyData(GroundTruthData):
    """Factors ``a`` (categorical, 4 values), ``b`` (5 values) and ``c`` (6 values), uniform;
    the observation ``[N, 1, 1, 3]`` holds the factor values."""

    name = "toy"
    observation_shape = (1, 1, 3)
    factors = (
        Factor("a", values=np.arange(4.0), categorical=True),
        Factor("b", values=np.linspace(-1, 1, 5)),
        Factor("c", values=np.linspace(0, 10, 6)),
    )

    def render(self, factors, rng):
        return torch.from_numpy(factors).float().reshape(-1, 1, 1, 3)


def standardised(images):
    f = images.reshape(len(images), 3).double().numpy()
    return (f - np.array([1.5, 0.0, 5.0])) / np.array([1.118, 0.707, 3.416])  # the uniform factors' mean and std


REPRESENTATIONS = {
    "identity": lambda images: images.reshape(len(images), 3).numpy(),
    # a permutation, a sign flip and a rescaling of every code
    "permuted": lambda images: images.reshape(len(images), 3).numpy()[:, [2, 0, 1]] * np.array([-3.0, 0.5, 20.0]) + 7,
    # b and c rotated by 45 degrees into each other (after standardising, so both mix equally)
    "mixed": lambda images: standardised(images) @ np.array([[1, 0, 0], [0, 1, 1], [0, -1, 1]]).T / np.array([1, 2**0.5, 2**0.5]),
}


def noise_fn(seed=0):
    rng = np.random.default_rng(seed)
    return lambda images: rng.normal(size=(len(images), 3))


@pytest.fixture
def toy():
    return ToyData()
