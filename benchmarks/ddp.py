"""Training throughput of one process against ``torchrun --nproc_per_node 2`` on MNIST.

    python benchmarks/ddp.py [--models vae cvitae] [--epochs 2] [--processes 2]

Each run is a real ``vitae train`` of the model's MNIST config (global batch 512, 60,000 training
images, about 117 steps an epoch) into a temporary folder; the figure is images per second over
the last epoch's training (``seconds`` in ``log.csv``, which leaves out the test-set evaluation),
the first epoch including the start-up. One process uses every core (torch's default threads);
under torchrun each process gets ``cores / processes`` threads, so both use the whole machine.
A third figure, one process with that many threads, separates what the processes gain from what
fewer threads per process gain (on small networks, intra-op threads can cost more than they give).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 60_000


def last_epoch_seconds(run: Path) -> float:
    with (run / "log.csv").open() as f:
        return float(list(csv.DictReader(f))[-1]["seconds"])


def throughput(model: str, processes: int, epochs: int, folder: Path, threads: int | None = None) -> float:
    run = folder / f"{model}-{processes}-{threads}"
    args = [f"configs/mnist_{model}.toml", f"epochs={epochs}", "device=cpu", "--out", str(run), "--quiet"]
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    if processes == 1:
        command = [sys.executable, "-m", "vitae", "train", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "vitae", "train", *args]
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return TRAIN_IMAGES / last_epoch_seconds(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vae", "cvitae"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    threads = max(1, (os.cpu_count() or 1) // args.processes)
    print(f"{os.cpu_count()} CPU cores; global batch 512; images/s over epoch {args.epochs}; "
          f"ratio: {args.processes} processes to 1 process (to 1 process with {threads} thread(s))")
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            one = throughput(model, 1, args.epochs, Path(folder))
            one_thin = throughput(model, 1, args.epochs, Path(folder), threads)
            many = throughput(model, args.processes, args.epochs, Path(folder), threads)
            print(f"{model:8s} 1 process: {one:7.0f} images/s   1 process, {threads} thread(s): {one_thin:7.0f} images/s   "
                  f"{args.processes} processes: {many:7.0f} images/s   ratio {many / one:.2f} ({many / one_thin:.2f})")


if __name__ == "__main__":
    main()
