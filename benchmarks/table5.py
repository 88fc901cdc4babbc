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
CPU run takes minutes). ``--trained-epochs N`` (MNIST only) first trains every model N epochs and times it on real test
images: a VITAE's transformation starts near the identity, which is cheaper for CPAB (its
whole-time shortcut applies to most pixels), so this times it at trained sizes. ``--epoch`` (MNIST only) also times one full MNIST training epoch
(60,000 images) per model. Random images stand in for the batch (the timing does not depend on
pixel values); the epoch timing uses the real MNIST training set through the same loop as
``vitae train``. ``--amp`` times every row twice, in float32 and under bfloat16 mixed precision
(``amp=true``: the networks in bfloat16, likelihood, KLs and warps in float32), all taking turns,
and prints both steps and the speed-up.
"""

from __future__ import annotations

import argparse

import torch

from vitae import data
from vitae.reproduce.timing import ROWS, SETTINGS, build, time_epoch, time_models
from vitae.training.precision import use_mixed_precision
from vitae.training.trainer import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="mnist_mlp", choices=sorted(SETTINGS))
    parser.add_argument("--batch-size", type=int, help="default: 512 on mnist_mlp, 64 on the others")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--epoch", action="store_true", help="also time one MNIST training epoch per model (mnist_mlp only)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="*", help="labels of the rows to run (default: all)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's); 1 is steadier on a shared machine")
    parser.add_argument("--amp", action="store_true", help="also time every row under bfloat16 mixed precision (amp=true)")
    parser.add_argument("--trained-epochs", type=int, default=0,
                        help="train each model this many MNIST epochs (lr 1e-3) first and time it on real test images, "
                             "so that transformations are timed at trained sizes, not at their near-identity start "
                             "(mnist_mlp only)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.epoch or args.trained_epochs) and args.architecture != "mnist_mlp":
        parser.error("--epoch and --trained-epochs train on MNIST: use them with --architecture mnist_mlp")
    if args.amp and (args.epoch or args.trained_epochs):
        parser.error("--amp times single steps: use it without --epoch and --trained-epochs")
    shape, default_batch, _ = SETTINGS[args.architecture]
    batch_size = args.batch_size or default_batch
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(batch_size, *shape, device=device)
    mnist = data.create("mnist") if args.epoch or args.trained_epochs else None
    images = mnist.train.images.to(device) if mnist is not None else None
    if args.trained_epochs:
        x = mnist.test.images[:batch_size].to(device)
    print(f"device: {device}, threads: {torch.get_num_threads()}, architecture: {args.architecture} {shape}, "
          f"batch: {batch_size}, torch {torch.__version__}")
    rows = [row for row in ROWS if not args.only or row[0] in args.only]
    if args.amp:
        return amp_table(rows, args, x, device)
    header = f"{'model':<24} {'forward s':>10} {'backward s':>11} {'step s':>9} {'step / VAE':>11}"
    print(header + (f" {'epoch s':>8}" if args.epoch else ""))
    entries = []
    for _, name, transform in rows:
        model = build(name, transform, args.architecture).to(device)
        optimizer = make_optimizer(model, lr=1e-3 if args.trained_epochs else 1e-4)
        for _ in range(args.trained_epochs):
            time_epoch(model, optimizer, images, batch_size, device)
        entries.append((model, optimizer))
    reference = None
    for (label, _, _), (model, optimizer), (fwd, bwd) in zip(rows, entries, time_models(entries, x, args.repeats, device)):
        reference = reference or (fwd + bwd)
        line = f"{label:<24} {fwd:>10.4f} {bwd:>11.4f} {fwd + bwd:>9.4f} {(fwd + bwd) / reference:>11.2f}"
        if args.epoch:
            line += f" {time_epoch(model, optimizer, images, batch_size, device):>8.2f}"
        print(line, flush=True)


def amp_table(rows, args, x, device) -> None:
    """Every row in float32 and in bfloat16 mixed precision, all taking turns."""
    entries = []
    for _, name, transform in rows:
        for amp in (False, True):
            torch.manual_seed(0)
            model = build(name, transform, args.architecture).to(device)
            if amp:
                use_mixed_precision(model, device)
            entries.append((model, make_optimizer(model, lr=1e-4)))
    times = time_models(entries, x, args.repeats, device)
    print(f"{'model':<24} {'float32 step s':>15} {'bfloat16 step s':>16} {'speed-up':>9}")
    for i, (label, _, _) in enumerate(rows):
        f32, b16 = sum(times[2 * i]), sum(times[2 * i + 1])
        print(f"{label:<24} {f32:>15.4f} {b16:>16.4f} {f32 / b16:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
