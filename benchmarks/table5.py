"""Supplement Table 5 on this machine: forward and backward seconds per batch for each model.

    python benchmarks/table5.py [--batch-size 512] [--repeats 30] [--epoch] [--device cpu]

Forward = the loss of one batch; backward = ``loss.backward()`` plus the Adam step; times are
medians over ``--repeats`` batches after warm-up, all models measured in one run, each with its
ratio to the VAE. ``--epoch`` also times one full MNIST training epoch (60,000 images) per model.
Random images stand in for the batch (the timing does not depend on pixel values); the epoch
timing uses the real MNIST training set through the same loop as ``vitae train``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vitae import data, models
from vitae.training.trainer import make_optimizer

# (label, model, transform) rows, in the order of Table 5
ROWS = [
    ("VAE", "vae", None),
    ("beta-VAE", "beta_vae", None),
    ("U-VITAE affine_diffeo", "uvitae", "affine_diffeo"),
    ("C-VITAE affine", "cvitae", "affine"),
    ("C-VITAE affine_decomp", "cvitae", "affine_decomp"),
    ("C-VITAE affine_diffeo", "cvitae", "affine_diffeo"),
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_model(model, optimizer, x: torch.Tensor, repeats: int, device: torch.device) -> tuple[float, float]:
    forward, backward = [], []
    for i in range(repeats + 5):
        sync(device)
        t0 = time.perf_counter()
        out = model(x, kl_weight=0.5)
        sync(device)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        sync(device)
        t2 = time.perf_counter()
        if i >= 5:
            forward.append(t1 - t0)
            backward.append(t2 - t1)
    return statistics.median(forward), statistics.median(backward)


def time_epoch(model, optimizer, images: torch.Tensor, batch_size: int, device: torch.device) -> float:
    generator = torch.Generator().manual_seed(0)
    sync(device)
    t0 = time.perf_counter()
    for idx in data.batches(len(images), batch_size, generator=generator):
        out = model(images[idx], kl_weight=0.5)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--epoch", action="store_true", help="also time one MNIST training epoch per model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="*", help="labels of the rows to run (default: all)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 1, 28, 28, device=device)
    images = data.create("mnist").train.images.to(device) if args.epoch else None
    print(f"device: {device}, threads: {torch.get_num_threads()}, batch: {args.batch_size}, torch {torch.__version__}")
    header = f"{'model':<24} {'forward s':>10} {'backward s':>11} {'step s':>9} {'step / VAE':>11}"
    print(header + (f" {'epoch s':>8}" if args.epoch else ""))
    reference = None
    for label, name, transform in ROWS:
        if args.only and label not in args.only:
            continue
        options = {"transform": transform} if transform else {}
        model = models.create(name, (1, 28, 28), **options).to(device)
        optimizer = make_optimizer(model, lr=1e-4)
        fwd, bwd = time_model(model, optimizer, x, args.repeats, device)
        reference = reference or (fwd + bwd)
        line = f"{label:<24} {fwd:>10.4f} {bwd:>11.4f} {fwd + bwd:>9.4f} {(fwd + bwd) / reference:>11.2f}"
        if args.epoch:
            line += f" {time_epoch(model, optimizer, images, args.batch_size, device):>8.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
