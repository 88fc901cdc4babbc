"""The Bernoulli likelihood on both paths: the compiled pass (``vitae/models/bernoulli.cpp``) and
torch's element-wise chain (``VITAE_KERNELS=torch``), in one run.

    python benchmarks/likelihood.py [--batch-size 512] [--threads N] [--repeats 50]

Times, per batch of MNIST-sized images (random pixels and logits: the work does not depend on
the values), the forward and backward of ``BernoulliFromLogits`` (the VAE's) and of
``BernoulliFromMean`` (the VITAE models', on a mean with some exact zeros, as a warp leaves
them), and the forward alone under ``torch.inference_mode`` (evaluation). Prints the median
milliseconds of each path and their ratio.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from vitae.models import likelihoods

EPS = 1e-6


def median_ms(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def cases(batch: int):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28, generator=g)
    logits = torch.randn(batch, 1, 28, 28, generator=g) * 4
    mean = torch.rand(batch, 1, 28, 28, generator=g)
    mean[:, :, :3] = 0  # the zeros a warp pads with
    bound = math.log((1 - EPS) / EPS)

    def train(apply, t, limit):
        def run():
            leaf = t.detach().requires_grad_()
            apply(x, leaf, limit).sum().backward()
        return run

    def evaluate(apply, t, limit):
        def run():
            with torch.inference_mode():
                apply(x, t, limit)
        return run

    return {
        "from logits, forward + backward": train(likelihoods.BernoulliFromLogits.apply, logits, bound),
        "from a mean, forward + backward": train(likelihoods.BernoulliFromMean.apply, mean, EPS),
        "from logits, forward (inference)": evaluate(likelihoods.BernoulliFromLogits.apply, logits, bound),
        "from a mean, forward (inference)": evaluate(likelihoods.BernoulliFromMean.apply, mean, EPS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = cases(args.batch_size)
    print(f"threads {torch.get_num_threads()}, batch {args.batch_size} x 1 x 28 x 28, torch {torch.__version__}")
    print(f"{'':36s} {'compiled ms':>12s} {'torch ms':>10s} {'torch / compiled':>17s}")
    for name, run in runs.items():
        times = {}
        for choice in ("compiled", "torch"):
            os.environ["VITAE_KERNELS"] = choice
            times[choice] = median_ms(run, args.repeats)
        print(f"{name:36s} {times['compiled']:12.3f} {times['torch']:10.3f} {times['torch'] / times['compiled']:17.2f}")


if __name__ == "__main__":
    main()
