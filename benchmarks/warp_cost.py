"""What C-VITAE's perspective costs: its two warps of a batch against a whole VAE training step.

    python benchmarks/warp_cost.py [--transform affine_diffeo] [--batch-size 512] [--size 28 28] [--threads N]

The warps are those of one C-VITAE step on MNIST: ``prepare(gamma)``, the un-warp of the data
(gradient to ``gamma`` only) and the warp of the decoded image (gradient to both), forward and
backward; once through the compiled affine sampler (``vitae.transforms.affine_sampler``) and once
through ``F.grid_sample`` (``VITAE_KERNELS=torch``). The VAE step is the Table 1 VAE's forward,
backward and Adam step (on MNIST's size only). All take turns in one process; medians over the
rounds after warm-up. ``--size 400 200 --batch-size 64`` times the bodies' warps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from vitae import models, transforms
from vitae import kernels
from vitae.training.trainer import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transform", default="affine_diffeo")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--size", type=int, nargs=2, default=[28, 28], metavar=("H", "W"))
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 1, *args.size)
    vae = models.create("vae", (1, 28, 28))
    optimizer = make_optimizer(vae, lr=1e-4)
    transform = transforms.create(args.transform)
    gamma = (0.1 * torch.randn(args.batch_size, transform.theta_dim)).requires_grad_()
    decoded = torch.rand(args.batch_size, 1, *args.size, requires_grad=True)
    mnist = args.size == [28, 28]

    def vae_step():
        out = vae(x, kl_weight=0.5)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    def two_warps(sampler):
        def run():
            os.environ[kernels.CHOICE] = sampler
            warp = transform.prepare(gamma)
            (warp(x, inverse=True).sum() + warp(decoded).sum()).backward()
        return run

    runs = {f"two warps, {sampler}": two_warps(sampler) for sampler in ("compiled", "torch")}
    if mnist:
        runs = {"VAE step": vae_step, **runs}
    times = {label: [] for label in runs}
    for round_ in range(args.repeats + 5):
        for label, run in runs.items():
            start = time.perf_counter()
            run()
            if round_ >= 5:
                times[label].append(time.perf_counter() - start)
    medians = {label: statistics.median(samples) for label, samples in times.items()}
    print(f"threads {torch.get_num_threads()}, batch {args.batch_size}, {args.size[0]} x {args.size[1]}, "
          f"{args.transform}")
    for label, seconds in medians.items():
        print(f"{label:<28} {seconds * 1000:8.2f} ms")
    compiled, grid_sample = medians["two warps, compiled"], medians["two warps, torch"]
    print(f"F.grid_sample / compiled: {grid_sample / compiled:.2f}")
    if mnist:
        print(f"warps / VAE step: compiled {compiled / medians['VAE step']:.2f}, "
              f"F.grid_sample {grid_sample / medians['VAE step']:.2f}")


if __name__ == "__main__":
    main()
