"""Shared test helpers: a tiny MNIST-format data set written as real IDX files, and runs of a
function under several thread counts."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch


def same_bits_for_thread_counts(run, counts=(1, 2, 3)) -> None:
    """``run()`` (a tuple of tensors) under each of torch's thread counts ``counts`` gives the
    same bits every time; the thread count is restored after."""
    threads = torch.get_num_threads()
    results = []
    try:
        for n in counts:
            torch.set_num_threads(n)
            results.append(run())
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` (uint8) in the IDX format: magic 0x0000 08 ndim, big-endian dims, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


def blob_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 uint8 images of a bright bar at a random position and angle, with labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        cx, cy, angle = rng.uniform(9, 19), rng.uniform(9, 19), rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        images[i] = (255 * np.exp(-(u / 5) ** 2 - (v / 1.5) ** 2)).astype(np.uint8)
    return images, rng.integers(0, 10, n).astype(np.uint8)


def write_mnist_folder(folder: Path, n_train: int = 256, n_test: int = 64, compress: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = blob_digits(n, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, compress)
    return folder


def fixed_noise_losses(model, x: torch.Tensor, lr: float, steps: int = 3) -> list[float]:
    """The training loss of ``model`` on ``x`` at ``steps`` successive Adam steps (lr ``lr``),
    each with the same noise, so that the losses are values of one fixed function."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        torch.manual_seed(1)
        out = model(x, kl_weight=0.5)
        losses.append(out.loss.item())
        if step < steps - 1:
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
    return losses


@pytest.fixture
def tiny_mnist(tmp_path) -> Path:
    """A folder of IDX files in MNIST's layout: 256 training and 64 test images."""
    return write_mnist_folder(tmp_path / "idx")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
