"""Train, round and evaluate the models shipped in ``src/vitae/pretrained/`` (``vitae.pretrained``).

    OMP_NUM_THREADS=2 python scripts/make_pretrained.py [NAME ...] [--build runs/pretrained-build]

Each model trains with ``vitae train`` on a shipped config at few epochs into ``BUILD/NAME`` (a
finished run there is reused), its parameters are rounded to float16 into
``src/vitae/pretrained/NAME/weights.pt``, and the rounded model is evaluated as ``vitae evaluate``
does; ``info.json`` records this command, the commit that made the files (``dirty``: tracked files
differed from it), the versions and the training time from the run's log. Rerunning it on the same
machine gives the same weights and numbers (training is deterministic there), only the timings move.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import vitae  # noqa: E402
from vitae import config as config_module  # noqa: E402
from vitae import files, pretrained  # noqa: E402
from vitae.training.evaluate import evaluate_model  # noqa: E402
from vitae.training.trainer import Run, load_trained, train  # noqa: E402

SPRITES_METRICS = "metric_options={num_train=2000, num_test=1000, factorvae_num_variance_estimate=2000}"

SPECS = {
    "mnist_cvitae": dict(
        description="C-VITAE on MNIST (2 + 2 latents, affine diffeomorphisms): the demo's model at 20 epochs",
        config="configs/mnist_cvitae_quick.toml", overrides=["epochs=20", "warmup=10"], samples=100),
    "mnist_vae": dict(
        description="VAE on MNIST (d = 4, Table 1), lr 1e-3, 20 epochs",
        config="configs/mnist_vae.toml", overrides=["epochs=20", "warmup=10", "lr=1e-3"],
        samples=100),
    "sprites_cvitae": dict(
        description="C-VITAE on dSprites (2 + 2 latents), 10,000 training images, lr 1e-3, 50 epochs (warm-up 10)",
        config="configs/sprites_cvitae.toml",
        overrides=["epochs=50", "warmup=10", "lr=1e-3", "data_options={n_train=10000, n_test=1000}", SPRITES_METRICS],
        samples=50),
}


def git_commit() -> dict:
    def git(*args) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
             if "src/vitae/pretrained/" not in line and "runs/" not in line]
    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(dirty)}


def training_seconds(log: Path) -> float:
    with log.open(newline="") as f:
        return sum(float(row["seconds"]) for row in csv.DictReader(f))


def make(name: str, build: Path, command: str) -> dict:
    spec = SPECS[name]
    config = config_module.load(ROOT / spec["config"], spec["overrides"])
    run = Run(build / name)
    train(config, run.path, resume=run.exists())
    stored, model, state = load_trained(run, "cpu")
    out = pretrained.ROOT / name
    out.mkdir(parents=True, exist_ok=True)
    pretrained.save(out / pretrained.WEIGHTS, model, stored)
    config_module.save_json(stored, out / "config.json")
    files.write_text(out / "log.csv", run.log.read_text())
    info = {
        "name": name, "description": spec["description"], "command": command,
        "train_command": shlex.join(["vitae", "train", spec["config"], *spec["overrides"], "--out", str(run.path)]),
        **git_commit(), "vitae_version": vitae.__version__, "torch_version": torch.__version__,
        "epochs_trained": state["epoch"], "training_seconds": round(training_seconds(run.log), 1),
        "parameters_dtype": "float16",
    }
    files.write_text(out / "info.json", json.dumps(info, indent=2) + "\n")
    config, rounded, state = pretrained.open_model(name)  # the shipped (rounded) model is the one evaluated
    metrics = evaluate_model(config, rounded, state, samples=spec["samples"])
    files.write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return {"name": name, "test_elbo": round(metrics["test_elbo"], 2), "test_log_px": round(metrics["test_log_px"], 2),
            "training_seconds": info["training_seconds"], "bytes": (out / pretrained.WEIGHTS).stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(SPECS), help=f"models to make (default all: {', '.join(SPECS)})")
    parser.add_argument("--build", default="runs/pretrained-build", help="folder of the training runs")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(SPECS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(SPECS)}")
    command = shlex.join(["python", "scripts/make_pretrained.py", *sys.argv[1:]])
    for name in args.names:
        print(json.dumps(make(name, Path(args.build), command)), flush=True)


if __name__ == "__main__":
    main()
