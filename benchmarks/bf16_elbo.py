"""Does bfloat16 mixed precision train as well as float32? The VAE and C-VITAE on MNIST for 30
epochs (lr 1e-3, warm-up over 15) with ``amp=false`` and ``amp=true`` from the same seed; the test
ELBO (all 10,000 test images, KL weight 1) of each, and the difference.

    python benchmarks/bf16_elbo.py [--epochs 30] [--seeds 0 1 2] [--out DIR]

The target (issue: bfloat16 on CPUs that have it) is a difference within 0.5 nats per image.
With several ``--seeds`` each pair shares its seed, and the mean and standard deviation of the
paired differences are printed per model. Runs go to ``--out`` (default: a temporary folder) as
ordinary run folders; finished ones are not trained again.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from vitae import config as config_module
from vitae.reproduce import config_file
from vitae.training.precision import cpu_has_bfloat16
from vitae.training.trainer import Run, evaluate_elbo, load_data, load_trained, train


def test_elbo(path: Path) -> float:
    config, model, _ = load_trained(Run(path))
    return evaluate_elbo(model, load_data(config).test.images, config.eval_batch_size)["elbo"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not cpu_has_bfloat16():
        print("this CPU has no AVX512-BF16 or AMX: nothing to compare")
        return
    out = Path(args.out or tempfile.mkdtemp(prefix="bf16_elbo_"))
    print(f"{'model':<8} {'seed':>4} {'float32 ELBO':>13} {'bfloat16 ELBO':>14} {'difference':>11}   (runs in {out})")
    for model in ("vae", "cvitae"):
        differences = []
        for seed in args.seeds:
            elbo = {}
            for amp in (False, True):
                path = out / f"{model}_{'bf16' if amp else 'fp32'}_seed{seed}"
                if not (path / "checkpoint.pt").is_file():
                    config = config_module.override(config_module.load(config_file(f"mnist_{model}.toml")),
                                                    [f"epochs={args.epochs}", f"warmup={args.epochs // 2}", "lr=1e-3",
                                                     f"amp={'true' if amp else 'false'}", f"seed={seed}"])
                    train(config, path, progress=False)
                elbo[amp] = test_elbo(path)
            differences.append(elbo[True] - elbo[False])
            print(f"{model:<8} {seed:>4} {elbo[False]:>13.2f} {elbo[True]:>14.2f} {differences[-1]:>+11.2f}", flush=True)
        if len(differences) > 1:
            print(f"{model:<8} paired difference over {len(differences)} seeds: "
                  f"{statistics.mean(differences):+.2f} +- {statistics.stdev(differences):.2f}", flush=True)

if __name__ == "__main__":
    main()
