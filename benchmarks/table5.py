"""Supplement Table 5 on this machine: forward and backward seconds per batch for each model.

    python benchmarks/table5.py [--architecture mnist_mlp] [--batch-size N] [--repeats 30] [--epoch]
                                [--device cpu] [--threads N] [--only LABEL ...]

Forward = the loss of one batch; backward = ``loss.backward()`` plus the Adam step; times are
medians over ``--repeats`` batches after warm-up, all models measured in one run taking turns
(one step each per round, so the ratios survive a noisy shared machine), each with its ratio to
the VAE. ``--architecture`` picks the network and the paper's setting for it
(``mnist_mlp``: 1 x 28 x 28, Bernoulli, batch 512; ``smpl_mlp``: 1 x 400 x 200, Gaussian with
variance 0.1, CPAB [2, 4]; ``celeba_conv``: 3 x 128 x 128, Gaussian with variance 0.1 and a
sigmoid mean, CPAB [4, 4]; the last two default to batch 64 rather than the paper's 256 so that a
CPU run takes minutes). ``--epoch`` (MNIST only) also times one full MNIST training epoch
(60,000 images) per model. Random images stand in for the batch (the timing does not depend on
pixel values); the epoch timing uses the real MNIST training set through the same loop as
``vitae train``.
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
    ("beta-TCVAE", "beta_tcvae", None),
    ("DIP-VAE-II", "dip_vae", None),
    ("U-VITAE affine_diffeo", "uvitae", "affine_diffeo"),
    ("C-VITAE affine", "cvitae", "affine"),
    ("C-VITAE affine_decomp", "cvitae", "affine_decomp"),
    ("C-VITAE affine_diffeo", "cvitae", "affine_diffeo"),
    ("C-VITAE cpab", "cvitae", "cpab"),
]

# architecture -> the paper's setting for it: image shape, default batch, model options
SETTINGS = {
    "mnist_mlp": ((1, 28, 28), 512, {"likelihood": "bernoulli", "cpab": {}}),
    "smpl_mlp": ((1, 400, 200), 64, {"likelihood": "gaussian", "likelihood_options": {"variance": 0.1},
                                     "cpab": {"tessellation": [2, 4], "zero_boundary": True}}),
    "celeba_conv": ((3, 128, 128), 64, {"likelihood": "gaussian", "likelihood_options": {"variance": 0.1, "mean": "sigmoid"},
                                        "cpab": {"tessellation": [4, 4], "zero_boundary": True}}),
}
DATASET_SIZE = 60_000  # beta-TCVAE's N; it changes the estimator's weights, not the work


def build(name: str, transform: str | None, architecture: str):
    shape, _, setting = SETTINGS[architecture]
    options = {key: value for key, value in setting.items() if key != "cpab"}
    if transform:
        options.update(transform=transform, transform_options=setting["cpab"] if transform == "cpab" else {})
    return models.create(name, shape, architecture=architecture, dataset_size=DATASET_SIZE, **options)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(model, optimizer, x: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """Seconds of one forward (the loss) and one backward (gradients and the Adam step)."""
    sync(device)
    t0 = time.perf_counter()
    out = model(x, kl_weight=0.5)
    sync(device)
    t1 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    sync(device)
    return t1 - t0, time.perf_counter() - t1


def time_models(entries, x: torch.Tensor, repeats: int, device: torch.device, warmup: int = 5) -> list[tuple[float, float]]:
    """Median forward and backward seconds per model. The models take turns, one step each per
    round, so a slow spell of a shared machine hits every model alike and the ratios hold."""
    times = [([], []) for _ in entries]
    for round_ in range(warmup + repeats):
        for (model, optimizer), (forward, backward) in zip(entries, times):
            fwd, bwd = time_step(model, optimizer, x, device)
            if round_ >= warmup:
                forward.append(fwd)
                backward.append(bwd)
    return [(statistics.median(f), statistics.median(b)) for f, b in times]


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
    parser.add_argument("--architecture", default="mnist_mlp", choices=sorted(SETTINGS))
    parser.add_argument("--batch-size", type=int, help="default: 512 on mnist_mlp, 64 on the others")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--epoch", action="store_true", help="also time one MNIST training epoch per model (mnist_mlp only)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="*", help="labels of the rows to run (default: all)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's); 1 is steadier on a shared machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.epoch and args.architecture != "mnist_mlp":
        parser.error("--epoch times an MNIST epoch: use it with --architecture mnist_mlp")
    shape, default_batch, _ = SETTINGS[args.architecture]
    batch_size = args.batch_size or default_batch
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(batch_size, *shape, device=device)
    images = data.create("mnist").train.images.to(device) if args.epoch else None
    print(f"device: {device}, threads: {torch.get_num_threads()}, architecture: {args.architecture} {shape}, "
          f"batch: {batch_size}, torch {torch.__version__}")
    header = f"{'model':<24} {'forward s':>10} {'backward s':>11} {'step s':>9} {'step / VAE':>11}"
    print(header + (f" {'epoch s':>8}" if args.epoch else ""))
    rows = [row for row in ROWS if not args.only or row[0] in args.only]
    entries = []
    for _, name, transform in rows:
        model = build(name, transform, args.architecture).to(device)
        entries.append((model, make_optimizer(model, lr=1e-4)))
    reference = None
    for (label, _, _), (model, optimizer), (fwd, bwd) in zip(rows, entries, time_models(entries, x, args.repeats, device)):
        reference = reference or (fwd + bwd)
        line = f"{label:<24} {fwd:>10.4f} {bwd:>11.4f} {fwd + bwd:>9.4f} {(fwd + bwd) / reference:>11.2f}"
        if args.epoch:
            line += f" {time_epoch(model, optimizer, images, batch_size, device):>8.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
