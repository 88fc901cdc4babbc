"""The Adam step alone, per implementation: torch's per-tensor loop (its CPU default), ``foreach``
and ``fused`` (what ``vitae.training.trainer.make_optimizer`` picks), on the paper's networks.

    python benchmarks/optimizer.py [--repeats 12] [--threads N]

Each row is one architecture's VAE (and the MNIST C-VITAE); the three implementations take turns,
one step each per round, on the same gradients; medians in milliseconds, and the fused step's
speed-up over the default.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vitae.reproduce.timing import SETTINGS, build

KINDS = {"default": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
CASES = [("mnist_mlp", "vae", None), ("mnist_mlp", "cvitae", "affine_diffeo"), ("smpl_mlp", "vae", None),
         ("celeba_conv", "vae", None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'architecture':<12} {'model':<7} {'params':>9} " + " ".join(f"{k + ' ms':>11}" for k in KINDS) + f" {'fused x':>8}")
    for architecture, name, transform in CASES:
        shape, batch, _ = SETTINGS[architecture]
        torch.manual_seed(0)
        x = torch.rand(min(batch, 64) if architecture != "mnist_mlp" else batch, *shape)
        entries = {}
        for kind, options in KINDS.items():
            torch.manual_seed(0)
            model = build(name, transform, architecture)
            model(x, kl_weight=0.5).loss.backward()  # the same gradients for every implementation
            entries[kind] = torch.optim.Adam(model.parameters(), lr=1e-4, **options)
        times = {kind: [] for kind in KINDS}
        for round_ in range(2 + args.repeats):
            for kind, optimizer in entries.items():
                t0 = time.perf_counter()
                optimizer.step()
                if round_ >= 2:
                    times[kind].append(time.perf_counter() - t0)
        ms = {kind: 1000 * statistics.median(v) for kind, v in times.items()}
        n = sum(p.numel() for p in entries["fused"].param_groups[0]["params"])
        print(f"{architecture:<12} {name:<7} {n:>9,} " + " ".join(f"{ms[k]:>11.2f}" for k in KINDS)
              + f" {ms['default'] / ms['fused']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
