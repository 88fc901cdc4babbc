"""The networks' dense layers through oneDNN (``vitae.models.dense``) against torch's own
``F.linear`` (MKL, for float32 on the CPU): a 4096^3 product both ways, the bodies encoder's first
layer, and whole float32 training steps with the two paths taking turns in one run
(``dense.ONEDNN`` switched per step; Table 5's settings).

    python benchmarks/dense.py [--architecture smpl_mlp ...] [--only VAE "C-VITAE affine_diffeo"]
                               [--repeats 10]

``--repeats`` rounds on the bodies and faces, four times as many on MNIST.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from vitae.models import dense
from vitae.reproduce.timing import ROWS, SETTINGS, best_seconds, build, time_models
from vitae.training.trainer import make_optimizer


class WithPath:
    """``model`` run with ``dense.ONEDNN`` set to ``onednn`` for its forward, where each layer's
    path (and so its backward's) is chosen; for ``time_models``, which takes turns."""

    def __init__(self, model, onednn: bool):
        self.model, self.onednn = model, onednn

    def __call__(self, *args, **kwargs):
        previous, dense.ONEDNN = dense.ONEDNN, self.onednn
        try:
            return self.model(*args, **kwargs)
        finally:
            dense.ONEDNN = previous


def products() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    flop = 2 * 4096**3
    mkl = best_seconds(lambda: a @ b.t())
    onednn = best_seconds(lambda: dense.linear(a, b))
    print(f"4096^3 float32 product: torch {flop / mkl / 1e9:.0f} GFLOP/s, oneDNN {flop / onednn / 1e9:.0f} GFLOP/s")
    x, w = torch.rand(64, 80000), torch.randn(256, 80000)
    plain, fast = best_seconds(lambda: F.linear(x, w)), best_seconds(lambda: dense.linear(x, w))
    print(f"bodies encoder layer x W^T (64 x 80,000 x 256): torch {plain * 1e3:.2f} ms, oneDNN {fast * 1e3:.2f} ms")


def steps(architecture: str, only: list[str], repeats: int) -> None:
    shape, batch_size, _ = SETTINGS[architecture]
    device = torch.device("cpu")
    torch.manual_seed(0)
    x = torch.rand(batch_size, *shape)
    rounds = repeats * (4 if architecture == "mnist_mlp" else 1)  # MNIST's steps are short: more of them
    for label, name, transform in ROWS:
        if label not in only:
            continue
        entries = []
        for onednn in (False, True):
            torch.manual_seed(0)
            model = build(name, transform, architecture)
            entries.append((WithPath(model, onednn), make_optimizer(model, lr=1e-4)))
        plain, fast = (sum(times) for times in time_models(entries, x, rounds, device, warmup=3))
        print(f"{architecture:<12} {label:<24} torch {plain:.4f} s  oneDNN {fast:.4f} s  {plain / fast:.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", nargs="*", default=["mnist_mlp", "smpl_mlp", "celeba_conv"], choices=sorted(SETTINGS))
    parser.add_argument("--only", nargs="*", default=["VAE", "C-VITAE affine_diffeo"], help="labels of Table 5's rows")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if not dense.available():
        parser.error("this torch has no oneDNN")
    known = [label for label, _, _ in ROWS]
    if any(label not in known for label in args.only):
        parser.error(f"--only takes labels of {known}")
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    products()
    for architecture in args.architecture:
        steps(architecture, args.only, args.repeats)


if __name__ == "__main__":
    main()
