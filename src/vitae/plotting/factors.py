"""A grid of samples from a data set with known factors, each titled with its factor values."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def factor_grid(ground_truth, path, *, n: int = 12, ncol: int = 6, seed: int = 0, image_inches: float = 1.3) -> Path:
    """Draw ``n`` samples of ``ground_truth`` and save them with their factors to ``path`` (PNG).

    Discrete factors are written as their values, continuous ones to two decimals.
    """
    rng = np.random.default_rng(seed)
    factors, images = ground_truth.sample(n, rng)
    _, height, width = images.shape[1:]
    nrow = -(-n // ncol)
    title_inches = 0.09 * ground_truth.num_factors  # one line of 5-point text per factor
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * image_inches, nrow * (image_inches * height / width + title_inches)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, row in zip(axes.flat, images, factors):
        ax.imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        label = "\n".join(f"{f.name} {v:.0f}" if f.values is not None and float(v).is_integer() else f"{f.name} {v:.2f}"
                          for f, v in zip(ground_truth.factors, row))
        ax.set_title(label, fontsize=5, loc="left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")  # keep the titles that tight_layout leaves out
    plt.close(fig)
    return path
