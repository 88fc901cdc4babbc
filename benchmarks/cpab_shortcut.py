"""When should CPAB take its whole-time shortcut? A warp's forward and backward with the share of
staying points that the compiled walk needs before it splits the points (``STAY_COMPILED``, at
which those points take their cell's whole-time map and the rest walk) set to the eager walk's
one half and to the compiled walk's default, all taking turns in one process.

    python benchmarks/cpab_shortcut.py [--repeats 15]

Fields ``theta ~ N(0, scale^2)`` on MNIST's [2, 4] (512 images of 28 x 28) and the bodies' [2, 4]
(16 images of 400 x 200), at sizes where few, some and most points walk; the share that stays is
printed beside each. Medians in ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vitae import transforms
from vitae.transforms import cpab
from vitae.transforms.base import identity_grid

CASES = [((28, 28), 512, 0.01), ((28, 28), 512, 0.03), ((28, 28), 512, 0.1),
         ((400, 200), 16, 0.01), ((400, 200), 16, 0.03), ((400, 200), 16, 0.1)]


def staying_share(t, theta, h, w) -> float:
    tables = t._step_maps(theta)
    key = ("share", theta.shape[0], h, w)
    t._displacement(identity_grid(theta.shape[0], h, w), tables, grid_key=key)
    _, _, _, cells, dist, _, by_cell = t._grid_cells[key]
    return cpab._staying(by_cell, tables.speed.view(theta.shape[0], -1)) / dist.numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.manual_seed(0)
    t = transforms.create("cpab", tessellation=(2, 4))
    cases = [((h, w), torch.rand(b, 1, h, w), (torch.randn(b, t.theta_dim) * s).requires_grad_(), s)
             for (h, w), b, s in CASES]
    shares = {"half (the eager walk's)": cpab.STAY_EAGER, f"{cpab.STAY_COMPILED} (the default)": cpab.STAY_COMPILED}
    times: dict = {}
    default = cpab.STAY_COMPILED
    try:
        for _ in range(args.repeats + 3):
            for label, share in shares.items():
                cpab.STAY_COMPILED = share
                for i, (_, images, theta, _) in enumerate(cases):
                    start = time.perf_counter()
                    t.warp(images, theta).sum().backward()
                    times.setdefault((i, label), []).append(time.perf_counter() - start)
    finally:
        cpab.STAY_COMPILED = default
    print(f"{'grid':<10} {'scale':>6} {'staying':>8}  " + "  ".join(f"{label:>24}" for label in shares))
    for i, ((h, w), _, theta, scale) in enumerate(cases):
        cols = "  ".join(f"{statistics.median(times[(i, label)][3:]) * 1e3:>21.2f} ms" for label in shares)
        print(f"{h}x{w:<7} {scale:>6} {staying_share(t, theta.detach(), h, w):>8.3f}  {cols}")


if __name__ == "__main__":
    main()
