"""Where bfloat16 autocast's time goes on the bodies VAE step (Table 3 MLP, 400 x 200, batch 64):
the top operators of two training steps under ``torch.profiler``, in float32 and under bfloat16
mixed precision (``amp=true``).

    python benchmarks/amp_profile.py [--rows 8]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import profile

from vitae.reproduce.timing import build
from vitae.training.precision import use_mixed_precision
from vitae.training.trainer import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    args = parser.parse_args()
    x = torch.rand(64, 1, 400, 200, generator=torch.Generator().manual_seed(0))
    for amp in (False, True):
        torch.manual_seed(0)
        model = build("vae", None, "smpl_mlp")
        if amp:
            use_mixed_precision(model, torch.device("cpu"))
        optimizer = make_optimizer(model, 1e-4)

        def step():
            out = model(x, kl_weight=0.5)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()

        step()
        with profile() as prof:
            step()
            step()
        print(f"== {'bfloat16 mixed precision' if amp else 'float32'}: two steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
