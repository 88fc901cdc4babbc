"""How fast the bodies render, and what all six metrics on bodies cost at disentanglement_lib's sizes.

    python benchmarks/bodies_render.py [--size 400 200] [--n 256] [--threads 2] [--exact] [--metrics [--model NAME]]

Prints images per second for ``BodiesData(height, width).sample_observations_from_factors`` on
``n`` bodies drawn from the factor distribution (the median of three rounds after one warm-up
batch), and with ``--exact`` also for ``exact_shapes=True`` (the body model called per image).
The script runs on older versions of the package too, so ``PYTHONPATH=OLD/src python
benchmarks/bodies_render.py`` gives the rate before a change.

``--metrics`` times ``vitae.metrics.disentanglement.compute_all`` at its default sizes (DCI, MIG
and SAP on 10,000 + 5,000 samples, FactorVAE on 10,000 for the variances and 500 + 500 votes of
64: about 89,000 renders) for a stand-in encoder, a fixed random projection of the pixels to
four codes, so that the figure is rendering and the metrics' own work, not a network; with
``--model vae`` (or any model name) the encoder is instead that model's ``representation`` on the
Table 3 network (untrained: the cost of a forward pass does not depend on the weights).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from vitae.data.bodies import BodiesData


def rate(data, n: int) -> float:
    rng = np.random.default_rng(0)
    data.sample_observations_from_factors(data.sample_factors(16, rng), rng)  # warm-up
    times = []
    for _ in range(3):
        factors = data.sample_factors(n, rng)
        start = time.perf_counter()
        data.sample_observations_from_factors(factors, rng)
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[400, 200], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--n", type=int, default=256, help="bodies per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--exact", action="store_true", help="also time exact_shapes=True")
    parser.add_argument("--metrics", action="store_true", help="also time all six metrics at their default sizes")
    parser.add_argument("--model", help="with --metrics: encode with this model (untrained) instead of a random projection")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = args.size
    start = time.perf_counter()
    data = BodiesData(height=height, width=width)
    print(f"generator made in {time.perf_counter() - start:.1f} s")
    print(f"bodies {height}x{width}: {rate(data, args.n):,.1f} images/s ({args.n} per round, {args.threads} threads)")
    if args.exact:
        exact = BodiesData(height=height, width=width, exact_shapes=True)
        print(f"bodies {height}x{width}, exact_shapes: {rate(exact, args.n):,.1f} images/s")
    if args.metrics:
        from vitae.metrics.disentanglement import compute_all

        if args.model:
            from vitae import models

            torch.manual_seed(0)
            model = models.create(args.model, (1, height, width)).eval()

            def encode(images):
                with torch.inference_mode():
                    return model.representation(images).numpy()
        else:
            projection = torch.randn(height * width, 4, generator=torch.Generator().manual_seed(0)) / (height * width) ** 0.5

            def encode(images):
                return (images.flatten(1) @ projection).numpy()
        start = time.perf_counter()
        scores = compute_all(data, encode)
        print(f"all six metrics at disentanglement_lib's sizes{f' ({args.model})' if args.model else ''}: "
              f"{time.perf_counter() - start:.0f} s "
              f"({', '.join(f'{k} {v:.3f}' for k, v in scores.items())})")


if __name__ == "__main__":
    main()
