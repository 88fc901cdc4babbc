"""``vitae evaluate``'s cost: the importance-weighted log p(x) at K samples per image on MNIST test
images, for the VAE and C-VITAE (affine_diffeo), each model taking its turn per round.

    python benchmarks/evaluate.py [--images 500] [--samples 1000] [--rounds 2] [--threads N]

Prints seconds (the fastest round) and images a second. The models are freshly initialised with a
fixed seed (the cost does not depend on what they learned: the affine warp's work is the same for
any parameters). To compare two versions of the code, run the script under each, e.g. with
``PYTHONPATH=OTHER_CHECKOUT/src``, alternating.
"""

from __future__ import annotations

import argparse
import time

import torch

from vitae import data, models
from vitae.metrics.log_likelihood import dataset_log_px


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = data.create("mnist").test.images[:args.images]
    entries = {}
    for name in ("vae", "cvitae"):
        torch.manual_seed(0)
        entries[name] = models.create(name, (1, 28, 28)).eval()
    best = {name: float("inf") for name in entries}
    for _ in range(args.rounds):
        for name, model in entries.items():
            torch.manual_seed(0)
            t0 = time.perf_counter()
            dataset_log_px(model, x, args.samples)
            best[name] = min(best[name], time.perf_counter() - t0)
    print(f"threads: {torch.get_num_threads()}, {args.images} images, K = {args.samples}, torch {torch.__version__}")
    for name, seconds in best.items():
        print(f"{name:<7} {seconds:8.2f} s {args.images / seconds:8.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
