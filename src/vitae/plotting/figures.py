"""The figures of a trained run (supplement Figures 2-7), as PNG files.

* ``reconstructions.png``: test images (odd rows) over their reconstructions (even rows);
* ``samples.png``: mean images decoded from the prior;
* ``traversals_<group>.png``: one latent dimension varied from -3 to 3 per row, the others at 0;
  for VITAE one figure for the appearance ``z_A`` and one for the perspective ``z_P``;
* ``swap.png`` (VITAE): the appearance of the image on the left combined with the perspective of
  the image on top, the picture that shows what the model separates;
* ``training.png``: train and test ELBO per epoch from ``log.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from vitae import files  # noqa: E402
from vitae.errors import VitaeError  # noqa: E402

GROUP_TITLES = {"z": "latent z", "z_A": "appearance z_A", "z_P": "perspective z_P"}
GROUP_NAMES = {"z": "latent", "z_A": "appearance", "z_P": "perspective"}  # traversals_<name>.png


def image_grid(images: torch.Tensor, ncol: int, pad: int = 1) -> np.ndarray:
    """Tile ``[N, C, H, W]`` images (C = 1 or 3, values in [0, 1]) row by row into one array."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    nrow = -(-n // ncol)
    grid = torch.ones(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = images[i]
    return grid[0].numpy() if c == 1 else grid.permute(1, 2, 0).numpy()


def save_grid(array: np.ndarray, path: Path, title: str, *, ylabels: list[str] | None = None, scale: float = 0.04) -> None:
    height, width = array.shape[:2]
    fig, ax = plt.subplots(figsize=(max(3.0, width * scale + (1.2 if ylabels else 0.2)), max(2.0, height * scale + 0.6)))
    ax.imshow(array, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    if ylabels:
        step = height / len(ylabels)
        ax.set_yticks([step * (i + 0.5) for i in range(len(ylabels))], ylabels, fontsize=7)
    else:
        ax.set_yticks([])
    fig.tight_layout()
    save(fig, path)


@torch.no_grad()
def reconstruction_grid(model, images: torch.Tensor, ncol: int = 12, pairs: int = 4) -> np.ndarray:
    """Test images (odd rows) over their reconstructions (even rows)."""
    ncol = min(ncol, len(images))
    pairs = min(pairs, len(images) // ncol)  # whole rows only, for a test set smaller than the grid
    x = images[: ncol * pairs]
    recon = model.reconstruct(x)
    rows = torch.cat([torch.stack([x[i * ncol:(i + 1) * ncol], recon[i * ncol:(i + 1) * ncol]]) for i in range(pairs)])
    return image_grid(rows.flatten(0, 1), ncol)


def reconstructions(model, images: torch.Tensor, path: Path, ncol: int = 12, pairs: int = 4) -> None:
    save_grid(reconstruction_grid(model, images, ncol, pairs), path,
              "test images (odd rows) and their reconstructions (even rows)")


@torch.no_grad()
def sample_grid(model, n: int = 100, seed: int = 0) -> np.ndarray:
    """Mean images decoded from ``n`` draws of the prior (seeded: the same draws every call)."""
    generator = torch.Generator().manual_seed(seed)
    return image_grid(model.sample(n, generator=generator), ncol=int(n ** 0.5))


def samples(model, path: Path, n: int = 100, seed: int = 0) -> None:
    save_grid(sample_grid(model, n, seed), path, "samples from the prior")


@torch.no_grad()
def traversal_grid(model, group: str, steps: int = 11, limit: float = 3.0) -> np.ndarray:
    """One row per dimension of ``group``, varied from ``-limit`` to ``limit``, the rest at 0."""
    device = next(model.parameters()).device
    values = torch.linspace(-limit, limit, steps, device=device)
    rows = []
    for dim in range(model.latent_dims[group]):
        z = {name: torch.zeros(steps, d, device=device) for name, d in model.latent_dims.items()}
        z[group][:, dim] = values
        rows.append(model.decode(z))
    return image_grid(torch.cat(rows), steps)


def traversals(model, group: str, path: Path, steps: int = 11, limit: float = 3.0) -> None:
    title = f"{GROUP_TITLES.get(group, group)}: one dimension from {-limit:g} to {limit:g} per row, the rest at 0"
    save_grid(traversal_grid(model, group, steps, limit), path, title,
              ylabels=[f"{group}[{d}]" for d in range(model.latent_dims[group])])


@torch.no_grad()
def swap_grid(model, images: torch.Tensor, n: int = 8) -> np.ndarray:
    """Row i, column j: appearance of image i, perspective of image j (sources on the left/top)."""
    x = images[:n]
    n = len(x)
    posteriors = model.encode(x)
    z_a, z_p = posteriors["z_A"].mean, posteriors["z_P"].mean
    cells = model.decode({"z_A": z_a.repeat_interleave(n, 0), "z_P": z_p.repeat(n, 1)})
    blank = torch.zeros_like(x[:1])
    top = torch.cat([blank, x])
    rows = [top] + [torch.cat([x[i:i + 1], cells[i * n:(i + 1) * n]]) for i in range(n)]
    return image_grid(torch.cat(rows), n + 1)


def swap(model, images: torch.Tensor, path: Path, n: int = 8) -> None:
    save_grid(swap_grid(model, images, n), path, "appearance of the left image, perspective of the top image")


def training_curves(log_path: Path, path: Path) -> None:
    with log_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key, label in (("train_elbo", "train ELBO"), ("test_elbo", "test ELBO")):
        ax.plot(epochs, [float(r[key]) for r in rows], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, path)


def save(fig, path: Path) -> None:
    """Write ``fig`` as a PNG, replacing ``path`` atomically (``vitae.files``), and close it."""
    try:
        files.replace(Path(path), lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def all_figures(model, test_images: torch.Tensor, folder: Path, log_path: Path | None = None, seed: int = 0) -> list[Path]:
    """Write every figure that applies to ``model`` into ``folder``; return their paths."""
    if folder.exists() and not folder.is_dir():
        raise VitaeError(f"{folder} is a file, where the figures folder should be; move it away")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise files.os_error(folder, exc) from None
    device = next(model.parameters()).device
    x = test_images[:64].to(device)
    written = [folder / "reconstructions.png", folder / "samples.png"]
    reconstructions(model, x, written[0])
    samples(model, written[1], seed=seed)
    for group in model.latent_dims:
        name = GROUP_NAMES.get(group, "latent")
        written.append(folder / f"traversals_{name}.png")
        traversals(model, group, written[-1])
    if {"z_A", "z_P"} <= set(model.latent_dims):
        written.append(folder / "swap.png")
        swap(model, x, written[-1])
    if log_path is not None and log_path.is_file():
        written.append(folder / "training.png")
        training_curves(log_path, written[-1])
    return written
