"""The diffeomorphic affine family's matrices, compiled (``vitae.transforms.affine_exp``) against
``torch.linalg.matrix_exp`` (``VITAE_KERNELS=torch``), forward and backward.

    python benchmarks/affine_exp.py [--batch-size 512] [--repeats 200]

What C-VITAE's ``prepare`` does once a step: the matrices of a batch of ``theta`` and their
closed-form inverses, then the gradient of both, at three sizes of ``theta`` (the number of
squarings grows with it). The two paths take turns in one process; medians after warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from vitae import kernels, transforms
from vitae.transforms.base import invert_affine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    t = transforms.create("affine_diffeo")
    print(f"threads {torch.get_num_threads()}, batch {args.batch_size}; ms per forward + backward")
    for scale in (0.1, 1.0, 5.0):
        theta = (scale * torch.randn(args.batch_size, 6, generator=torch.Generator().manual_seed(0))).requires_grad_()

        def run(choice):
            os.environ[kernels.CHOICE] = choice
            m = t.matrix(theta)
            (m.sum() + invert_affine(m).sum()).backward()

        times = {"compiled": [], "torch": []}
        for round_ in range(args.repeats + 10):
            for choice, samples in times.items():
                start = time.perf_counter()
                run(choice)
                if round_ >= 10:
                    samples.append(time.perf_counter() - start)
        compiled, torch_path = (statistics.median(times[c]) * 1000 for c in ("compiled", "torch"))
        print(f"theta ~ N(0, {scale}^2): compiled {compiled:.3f}, matrix_exp {torch_path:.3f} "
              f"({torch_path / compiled:.2f}x)")


if __name__ == "__main__":
    main()
