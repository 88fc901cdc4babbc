"""Where bfloat16 autocast's time goes on the bodies VAE step (Table 3 MLP, 400 x 200, batch 64):
the top aten operators of two training steps, in float32 and under bfloat16 mixed precision
(``amp=true``), each timed as it is dispatched (``vitae.reproduce.timing.OpTimer``), beside the
median of plain steps. What is left of a step beyond its operators is the compiled kernels
(none in this model) and Python.

    python benchmarks/amp_profile.py [--rows 8]

``torch.profiler`` is not used: its records made the casts of the bfloat16 step after it several
times slower on this CPU (fresh tensors faulting their memory in page by page), so it showed the
casts as most of the step.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from vitae.reproduce.timing import OpTimer, build, time_step
from vitae.training.precision import use_mixed_precision
from vitae.training.trainer import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    args = parser.parse_args()
    device = torch.device("cpu")
    x = torch.rand(64, 1, 400, 200, generator=torch.Generator().manual_seed(0))
    for amp in (False, True):
        torch.manual_seed(0)
        model = build("vae", None, "smpl_mlp")
        if amp:
            use_mixed_precision(model, device)
        optimizer = make_optimizer(model, 1e-4)
        for _ in range(3):
            time_step(model, optimizer, x, device)
        step = statistics.median(sum(time_step(model, optimizer, x, device)) for _ in range(5))
        timer = OpTimer()
        with timer:
            for _ in range(2):
                time_step(model, optimizer, x, device)
        per_step = {name: seconds / 2 for name, seconds in timer.seconds.items()}
        print(f"== {'bfloat16 mixed precision' if amp else 'float32'}: step {step * 1e3:.1f} ms (median of 5), "
              f"its aten operators {sum(per_step.values()) * 1e3:.1f} ms")
        for name, seconds in sorted(per_step.items(), key=lambda item: -item[1])[:args.rows]:
            print(f"  {name:<28} {seconds * 1e3:8.2f} ms  {seconds / step:6.1%}")


if __name__ == "__main__":
    main()
