"""Does ``torch.compile`` of the whole model speed up a training step? Forward (the loss) and
backward (compiled by AOT autograd) of one model, eager against ``torch.compile(model)``, the
Adam step eager in both; Table 5's settings (``vitae.reproduce.timing``).

    python benchmarks/compile_step.py [--architecture mnist_mlp] [--model vae] [--transform affine_diffeo]
                                      [--repeats N]

Prints the warm-up time (three steps; the compile for the compiled model), the median step and
the ratio compiled / eager.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vitae.reproduce.timing import SETTINGS, build, time_step
from vitae.training.trainer import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="mnist_mlp", choices=sorted(SETTINGS))
    parser.add_argument("--model", default="vae")
    parser.add_argument("--transform", default="affine_diffeo", help="for the VITAE models")
    parser.add_argument("--repeats", type=int, help="default: 30 on mnist_mlp, 8 on the others")
    args = parser.parse_args()
    shape, batch_size, _ = SETTINGS[args.architecture]
    repeats = args.repeats or (30 if args.architecture == "mnist_mlp" else 8)
    transform = args.transform if args.model in ("uvitae", "cvitae") else None
    device = torch.device("cpu")
    torch.manual_seed(0)
    x = torch.rand(batch_size, *shape)
    steps = {}
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        model = build(args.model, transform, args.architecture)
        optimizer = make_optimizer(model, lr=1e-4)
        forward = torch.compile(model) if mode == "compiled" else model
        start = time.perf_counter()
        for _ in range(3):
            time_step(forward, optimizer, x, device)
        warm = time.perf_counter() - start
        steps[mode] = statistics.median(sum(time_step(forward, optimizer, x, device)) for _ in range(repeats))
        print(f"{mode:<9} warm-up {warm:6.1f} s   step {steps[mode]:.4f} s", flush=True)
    print(f"{args.model} on {args.architecture}: compiled / eager {steps['compiled'] / steps['eager']:.2f}")


if __name__ == "__main__":
    main()
