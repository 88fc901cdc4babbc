"""Does ``torch.compile`` speed up the affine warp? C-VITAE's warp of 512 MNIST-sized images
(``vitae.transforms.base.warp_affine``), forward and backward, eager against compiled.

    python benchmarks/compile_warp.py [--repeats 30] [--threads N]

Prints the compile time and milliseconds per forward + backward for both, twice.
"""

from __future__ import annotations

import argparse
import time

import torch

from vitae.transforms.base import warp_affine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.rand(512, 1, 28, 28, requires_grad=True)
    matrices = (torch.eye(2, 3).expand(512, 2, 3) + 0.05 * torch.randn(512, 2, 3)).requires_grad_()
    compiled = torch.compile(warp_affine, dynamic=False)

    def per_call(fn) -> float:
        for _ in range(3):
            fn(images, matrices).sum().backward()
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            fn(images, matrices).sum().backward()
        return (time.perf_counter() - t0) / args.repeats * 1000

    t0 = time.perf_counter()
    compiled(images, matrices).sum().backward()
    print(f"threads: {torch.get_num_threads()}; compile: {time.perf_counter() - t0:.1f} s")
    for _ in range(2):
        print(f"eager {per_call(warp_affine):.2f} ms, compiled {per_call(compiled):.2f} ms", flush=True)


if __name__ == "__main__":
    main()
