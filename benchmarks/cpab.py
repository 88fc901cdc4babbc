"""CPAB accuracy and speed, side by side with libcpab 0.1.3 (the issue's targets).

    python benchmarks/cpab.py [--images 256] [--repeats 5] [--threads N]

Accuracy: grid points (28x28 pixel centres) transformed with ``theta ~ N(0, 1)`` on ``[4, 4]``,
against a float64 reference that walks 2000 cell-exact steps; errors in unit-square coordinates.
Speed: ``warp`` of ``--images`` 28x28 images, forward + backward (gradient to theta), best of
``--repeats``, against libcpab's ``transform_data`` on the same field in the same run (ours also
for a small field, where most points take their cell's whole-time map). Under
CPU contention from other processes, two-thread timings stall on every parallel region; pass
``--threads 1`` for a comparison that contention distorts less (both sides use the same setting).
"""

from __future__ import annotations

import argparse
import time

import torch

from vitae.transforms.cpab import CPAB, cell_index, expm_affine


def reference(transform: CPAB, points: torch.Tensor, theta: torch.Tensor, n_steps: int = 2000) -> torch.Tensor:
    """Float64 flow in unit-square coordinates: ``n_steps`` steps, each the exact flow of the cell
    that holds the step's midpoint (predicted with the start cell's flow); error per edge crossing
    below ``|dA v| h^2 / 8``, 3e-8 against 4000 steps."""
    theta, u = theta.double(), (points.double() + 1) / 2
    b, p, _ = u.shape
    steps = expm_affine(transform.cell_maps(theta).reshape(-1, 6) / n_steps)
    offset = (torch.arange(b) * transform.n_cells).repeat_interleave(p)
    x, y = u[..., 0].reshape(-1), u[..., 1].reshape(-1)

    def step(cx, cy, px, py):
        cells = cell_index(cx * transform.nx, cy * transform.ny, transform.nx, transform.ny) + offset
        m = steps.index_select(0, cells.long())
        return m[:, 2] + m[:, 0] * px + m[:, 1] * py, m[:, 5] + m[:, 3] * px + m[:, 4] * py

    for _ in range(n_steps):
        ex, ey = step(x, y, x, y)
        x, y = step((x + ex) / 2, (y + ey) / 2, x, y)
    return torch.stack([x, y], dim=-1).view(b, p, 2)


def pixel_grid(batch: int, size: int = 28) -> torch.Tensor:
    g = (torch.arange(size, dtype=torch.float64) * 2 + 1) / size - 1
    return torch.stack(torch.meshgrid(g, g, indexing="xy"), dim=-1).reshape(1, -1, 2).expand(batch, -1, -1)


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--accuracy-thetas", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = CPAB(tessellation=(4, 4), zero_boundary=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {ours}")

    theta = torch.randn(args.accuracy_thetas, ours.theta_dim, dtype=torch.float64)
    points = pixel_grid(theta.shape[0])
    exact = reference(ours, points, theta)
    for dtype in (torch.float64, torch.float32):
        got = (ours.transform_points(points.to(dtype), theta.to(dtype)).double() + 1) / 2
        err = (got - exact).abs()
        print(f"accuracy ({dtype}, {theta.shape[0]} thetas x 784 points): max {err.max():.2e}, mean {err.mean():.2e}")

    images = torch.rand(args.images, 1, 28, 28)
    theta = torch.randn(args.images, ours.theta_dim, requires_grad=True)

    def run_ours():
        ours.warp(images, theta).sum().backward()

    t_ours = best_time(run_ours, args.repeats)
    print(f"ours:    warp of {args.images} 28x28 images, forward+backward: {t_ours * 1e3:.1f} ms")
    small = (theta.detach() * 0.01).requires_grad_()  # a field as early in training: points stay in their cells

    def run_small():
        ours.warp(images, small).sum().backward()

    t_small = best_time(run_small, args.repeats)
    print(f"ours, theta ~ N(0, 0.01^2) (most pixels provably stay in their cell): {t_small * 1e3:.1f} ms")

    try:
        from libcpab import Cpab
    except ImportError:
        print("libcpab not installed (pip install libcpab==0.1.3): no comparison")
        return
    lib = Cpab([4, 4], zero_boundary=True)
    lib_theta = torch.randn(args.images, lib.get_theta_dim(), requires_grad=True)

    def run_lib():
        lib.transform_data(images, lib_theta, outsize=(28, 28)).sum().backward()

    t_lib = best_time(run_lib, max(1, args.repeats // 2))
    print(f"libcpab: transform_data of {args.images} 28x28 images, forward+backward: {t_lib * 1e3:.1f} ms")
    print(f"speed-up: {t_lib / t_ours:.1f}x")

    # libcpab's accuracy on the same fields, for scale (its basis projected onto ours)
    lib_theta = torch.randn(16, lib.get_theta_dim())
    grid = (pixel_grid(1)[0].float() + 1) / 2
    lib_points = lib.transform_grid(grid.t().contiguous(), lib_theta).transpose(1, 2).double()
    as_ours = lib_theta.double() @ torch.from_numpy(lib.get_basis()).t() @ ours.basis_for(lib_theta.double())
    err = (lib_points - reference(ours, pixel_grid(16), as_ours)).abs()
    print(f"libcpab accuracy (float32, 16 thetas, its 50 steps): max {err.max():.2e}, mean {err.mean():.2e}")


if __name__ == "__main__":
    main()
