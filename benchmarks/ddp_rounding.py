"""How far float rounding alone moves training: one process trains C-VITAE on 8,192 MNIST images
(16 steps of 512, lr 1e-3) twice, from the same seed and with the same noise, once with each
batch's gradient computed whole and once as the average of its two halves' gradients (what two
DDP processes compute). Prints both test ELBOs (2,000 test images).

    python benchmarks/ddp_rounding.py

The two differ by nats although every step's loss agrees to about 1e-4 at first: Adam divides
by the root of the second moment, so rounding-level differences in near-zero gradients (the
perspective decoder's, which starts near zero) become steps of size lr. N processes therefore
train the model of one process only up to this amplified rounding, whatever their noise.
"""

from __future__ import annotations

import torch

from vitae import data, models
from vitae.models.distributions import DiagonalGaussian
from vitae.training.trainer import evaluate_elbo, make_optimizer


def train(dataset, halves: bool) -> float:
    torch.manual_seed(3)
    model = models.create("cvitae", (1, 28, 28))
    optimizer = make_optimizer(model, 1e-3)
    generator = torch.Generator().manual_seed(3)
    sample = DiagonalGaussian.rsample
    for idx in data.batches(len(dataset.train), 512, generator=generator):
        x = dataset.train.images[idx]
        optimizer.zero_grad()
        if not halves:
            model(x, kl_weight=1.0).loss.backward()
        else:
            noise = torch.randn(512, 2), torch.randn(512, 2)  # z_P's and z_A's noise, as one batch draws it
            for h in range(2):
                rows, draws = slice(256 * h, 256 * (h + 1)), iter(noise)
                DiagonalGaussian.rsample = lambda self: self.mean + self.var.sqrt() * next(draws)[rows]
                try:
                    (model(x[rows], kl_weight=1.0).loss / 2).backward()
                finally:
                    DiagonalGaussian.rsample = sample
        optimizer.step()
    model.eval()
    torch.manual_seed(0)
    return evaluate_elbo(model, dataset.test.images, 1000)["elbo"]


def main() -> None:
    torch.set_num_threads(1)
    dataset = data.create("mnist", None, n_train=8192, n_test=2000)
    whole, halves = train(dataset, False), train(dataset, True)
    print(f"test ELBO, gradient of the whole batch:  {whole:.2f}")
    print(f"test ELBO, mean of the halves' gradients: {halves:.2f}  (difference {halves - whole:+.2f} nats)")


if __name__ == "__main__":
    main()
