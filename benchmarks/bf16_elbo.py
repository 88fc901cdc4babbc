"""Does bfloat16 mixed precision train as well as float32? The VAE and C-VITAE on MNIST for 30
epochs (lr 1e-3, warm-up over 15) with ``amp=false`` and ``amp=true`` from the same seed; the test
ELBO (all 10,000 test images, KL weight 1) of each, and the difference.

    python benchmarks/bf16_elbo.py [--epochs 30] [--out DIR]

The target (issue: bfloat16 on CPUs that have it) is a difference within 0.5 nats per image.
Runs go to ``--out`` (default: a temporary folder) as ordinary run folders.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from vitae import config as config_module
from vitae.reproduce import config_file
from vitae.training.trainer import Run, cpu_has_bfloat16, evaluate_elbo, load_data, load_trained, train


def test_elbo(path: Path) -> float:
    config, model, _ = load_trained(Run(path))
    return evaluate_elbo(model, load_data(config).test.images, config.eval_batch_size)["elbo"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not cpu_has_bfloat16():
        print("this CPU has no AVX512-BF16 or AMX: nothing to compare")
        return
    out = Path(args.out or tempfile.mkdtemp(prefix="bf16_elbo_"))
    print(f"{'model':<8} {'float32 ELBO':>13} {'bfloat16 ELBO':>14} {'difference':>11}   (runs in {out})")
    for model in ("vae", "cvitae"):
        elbo = {}
        for amp in (False, True):
            path = out / f"{model}_{'bf16' if amp else 'fp32'}"
            if not (path / "checkpoint.pt").is_file():
                config = config_module.override(config_module.load(config_file(f"mnist_{model}.toml")),
                                                [f"epochs={args.epochs}", f"warmup={args.epochs // 2}", "lr=1e-3",
                                                 f"amp={'true' if amp else 'false'}"])
                train(config, path, progress=False)
            elbo[amp] = test_elbo(path)
        print(f"{model:<8} {elbo[False]:>13.2f} {elbo[True]:>14.2f} {elbo[True] - elbo[False]:>+11.2f}", flush=True)


if __name__ == "__main__":
    main()
