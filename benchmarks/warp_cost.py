"""What C-VITAE's perspective costs: its two warps of a batch against a whole VAE training step.

    python benchmarks/warp_cost.py [--transform affine_diffeo] [--batch-size 512] [--threads N]

The warps are those of one C-VITAE step on MNIST: ``prepare(gamma)``, the un-warp of the data
(gradient to ``gamma`` only) and the warp of the decoded image (gradient to both), forward and
backward. The VAE step is the Table 1 VAE's forward, backward and Adam step. The two take turns
in one process; medians over the rounds after warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vitae import models, transforms
from vitae.training.trainer import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transform", default="affine_diffeo")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 1, 28, 28)
    vae = models.create("vae", (1, 28, 28))
    optimizer = make_optimizer(vae, lr=1e-4)
    transform = transforms.create(args.transform)
    gamma = (0.1 * torch.randn(args.batch_size, transform.theta_dim)).requires_grad_()
    decoded = torch.rand(args.batch_size, 1, 28, 28, requires_grad=True)

    def vae_step():
        out = vae(x, kl_weight=0.5)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    def two_warps():
        warp = transform.prepare(gamma)
        (warp(x, inverse=True).sum() + warp(decoded).sum()).backward()

    times = {"VAE step": [], f"two {args.transform} warps": []}
    for round_ in range(args.repeats + 5):
        for (label, samples), run in zip(times.items(), (vae_step, two_warps)):
            start = time.perf_counter()
            run()
            if round_ >= 5:
                samples.append(time.perf_counter() - start)
    medians = {label: statistics.median(samples) for label, samples in times.items()}
    print(f"threads {torch.get_num_threads()}, batch {args.batch_size}")
    for label, seconds in medians.items():
        print(f"{label:<28} {seconds * 1000:8.2f} ms")
    vae_s, warps_s = medians.values()
    print(f"warps / VAE step: {warps_s / vae_s:.2f}")


if __name__ == "__main__":
    main()
