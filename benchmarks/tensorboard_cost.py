"""What TensorBoard logging (``vitae.training.tracking``) costs a run of a config, against the
epoch it logs: the scalars of one epoch, the images and gamma histograms of an image epoch, and
the end of training (hparams and the projector's 1000 test codes).

    python benchmarks/tensorboard_cost.py [CONFIG] [KEY=VALUE ...] [--repeats 5]

On the config's data set and model (initialised, not trained: the cost is the same), in a
temporary folder; medians in milliseconds. None of it runs inside the training step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vitae import config as config_module
from vitae.training import tracking, trainer


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/mnist_cvitae_quick.toml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = config_module.load(args.config, [*args.overrides, "logger=tensorboard"])
    dataset = trainer.load_data(config)
    torch.manual_seed(config.seed)
    model = trainer.build_model(config, dataset.image_shape, len(dataset.train)).eval()
    row = {"epoch": 1, "kl_weight": 1.0, "train_loss": 100.0, "train_elbo": -100.0,
           **{f"test_{k}": -1.0 for k in ("elbo", "recon", *(f"kl_{g}" for g in model.latent_dims))}, "seconds": 1.0}
    steps = -(-len(dataset.train) // config.batch_size)
    with tempfile.TemporaryDirectory() as folder:
        scalars = tracking.create(config_module.override(config, ["log_images_every=0"]), Path(folder), dataset)
        images = tracking.create(config_module.override(config, ["log_images_every=1"]), Path(folder), dataset)
        epoch = lambda logger: logger.epoch(1, row, model=model, lr=config.lr, steps=steps, images=len(dataset.train))  # noqa: E731
        costs = {"scalars (every epoch)": timed(lambda: epoch(scalars), args.repeats),
                 "scalars, images, gamma (an image epoch)": timed(lambda: epoch(images), args.repeats),
                 "hparams and projector (the end)": timed(lambda: images.finish(model, row), 1)}
    print(f"{args.config}: {config.model} on {config.data}, {len(dataset.train)} training images, "
          f"{steps} steps an epoch, threads {torch.get_num_threads()}")
    for name, ms in costs.items():
        print(f"{name:<42} {ms:9.1f} ms")


if __name__ == "__main__":
    main()
