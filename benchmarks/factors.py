"""Speed of the factor data sets and of the disentanglement metrics on this machine.

Prints images per second for rendering sprites and bodies (400x200), and the time of each metric
at its default size (DCI, MIG and SAP on 10,000 training and 5,000 test samples; FactorVAE on 10,000
samples for the variance and 500 + 500 votes of 64) for a 10-dimensional linear representation of
the sprites, with the total of ``compute_all``. Run: python benchmarks/factors.py
"""

import time

import numpy as np
import torch

from vitae.data.bodies import BodiesData
from vitae.data.sprites import SpritesData
from vitae.metrics import dci, disentanglement, factorvae, mig, sap
from vitae.metrics.sampling import sample


def rate(data, n):
    factors = data.sample_factors(n, np.random.default_rng(0))
    start = time.perf_counter()
    data.sample_observations_from_factors(factors, np.random.default_rng(0))
    return n / (time.perf_counter() - start)


def timed(label, fn):
    start = time.perf_counter()
    out = fn()
    print(f"{label:<34} {time.perf_counter() - start:7.2f} s   {out}")
    return out


if __name__ == "__main__":
    torch.set_num_threads(2)
    sprites = SpritesData()
    print(f"sprites rendering: {rate(sprites, 100_000):,.0f} images/s (100,000 images)")
    print(f"bodies rendering (400x200): {rate(BodiesData(), 100):,.1f} images/s (100 images)")

    # a stand-in for an encoder: a fixed random linear map of the pixels to 10 codes
    projection = torch.randn(64 * 64, 10, generator=torch.Generator().manual_seed(0)) / 64
    representation_fn = lambda images: (images.flatten(1) @ projection).numpy()  # noqa: E731

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    y_train, x_train = sample(sprites, representation_fn, 10_000, rng)
    y_test, x_test = sample(sprites, representation_fn, 5_000, rng)
    print(f"{'sampling 15,000 (render + encode)':<34} {time.perf_counter() - start:7.2f} s")
    categorical = [f.categorical for f in sprites.factors]
    timed("DCI (10,000 + 5,000)", lambda: dci.dci(x_train, y_train, x_test, y_test, categorical))
    timed("MIG (10,000)", lambda: mig.mig(x_train, y_train))
    timed("SAP (10,000 + 5,000)", lambda: sap.sap(x_train, y_train, x_test, y_test, categorical))
    timed("FactorVAE (incl. sampling)", lambda: factorvae.compute(sprites, representation_fn))
    timed("compute_all (incl. sampling)", lambda: disentanglement.compute_all(sprites, representation_fn))
