"""Pictures of a CPAB transformation: the tessellation with its velocity field, and a grid deformed
by the flow (for the README and for debugging).

Both draw in the image frame of ``vitae.transforms.base`` (``x`` right, ``y`` down, ``[-1, 1]``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vitae.transforms.cpab import CPAB, triangles  # noqa: E402


def _square_axes(ax, title: str) -> None:
    ax.set_xlim(-1, 1)
    ax.set_ylim(1, -1)  # image rows grow downwards
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def draw_field(ax, transform: CPAB, theta: torch.Tensor, *, arrows: int = 21) -> None:
    """The cells of ``transform`` and the velocity field of ``theta`` (``[theta_dim]``) on ``ax``."""
    for tri in triangles(transform.nx, transform.ny) * 2 - 1:
        ax.fill(tri[:, 0], tri[:, 1], facecolor="none", edgecolor="0.7", linewidth=0.6)
    g = (np.arange(arrows) * 2 + 1) / arrows - 1
    points = torch.tensor(np.stack(np.meshgrid(g, g), -1).reshape(1, -1, 2), dtype=torch.float64)
    v = transform.velocity(points, theta.double().view(1, -1))[0].numpy()
    ax.quiver(points[0, :, 0], points[0, :, 1], v[:, 0], v[:, 1], np.hypot(v[:, 0], v[:, 1]),
              angles="xy", width=0.005, cmap="viridis")
    _square_axes(ax, f"tessellation {transform.nx}x{transform.ny} and velocity field")


def draw_deformed_grid(ax, transform: CPAB, theta: torch.Tensor, *, lines: int = 11, samples: int = 200) -> None:
    """A square grid of ``lines`` lines per direction (grey) and its image ``T_theta(grid)`` (black)."""
    along = torch.linspace(-1, 1, samples, dtype=torch.float64)
    polylines = []
    for c in torch.linspace(-1, 1, lines, dtype=torch.float64):
        polylines += [torch.stack([torch.full_like(along, c), along], -1), torch.stack([along, torch.full_like(along, c)], -1)]
    points = torch.cat(polylines).view(1, -1, 2)
    moved = transform.transform_points(points, theta.double().view(1, -1))[0].view(len(polylines), samples, 2)
    for before, after in zip(polylines, moved):
        ax.plot(before[:, 0], before[:, 1], color="0.8", linewidth=0.5)
        ax.plot(after[:, 0], after[:, 1], color="black", linewidth=0.8)
    _square_axes(ax, "grid deformed by T_theta")


def random_theta(transform: CPAB, *, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A reproducible ``theta ~ N(0, scale^2)``, ``[theta_dim]``."""
    return torch.randn(transform.theta_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def save_field(path, transform: CPAB, theta: torch.Tensor, *, inches: float = 3.2) -> Path:
    """Write the tessellation + velocity field picture to ``path`` (PNG)."""
    fig, ax = plt.subplots(figsize=(inches, inches))
    draw_field(ax, transform, theta)
    return _save(fig, path)


def save_deformed_grid(path, transform: CPAB, theta: torch.Tensor, *, inches: float = 3.2) -> Path:
    """Write the deformed-grid picture to ``path`` (PNG)."""
    fig, ax = plt.subplots(figsize=(inches, inches))
    draw_deformed_grid(ax, transform, theta)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
