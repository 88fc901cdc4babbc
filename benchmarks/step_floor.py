"""What a training step is made of, against this CPU's peak: the floating-point work of its matrix
products and convolutions (forward and backward), the time they take and their rate, the rest of
the step, and the step it would be if those products ran at the peak rate of a large square
product measured in the same run. Table 5's settings (``vitae.reproduce.timing``).

    python benchmarks/step_floor.py [--architecture smpl_mlp] [--only VAE "C-VITAE affine_diffeo"]
                                    [--amp] [--repeats 8]

The step is the median of ``--repeats`` unprofiled steps; the FLOPs are counted by
``torch.utils.flop_counter`` on one step; the products' time is the self time of the
matrix-product and convolution operators (``aten::mm``, ``addmm``, ``convolution_backward``,
...) as a share of two more steps under ``torch.profiler``, times the step. The peak is a 4096 x 4096 x 4096
product in the same precision. ``--amp`` profiles bfloat16 mixed precision (``amp=true``) instead,
against the bfloat16 peak; the profiler inflates that path's casts, so only its products' rows are
comparable there. A step that is mostly products at near the peak cannot get much faster in that
precision: that is what this measures.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

import torch
from torch.profiler import profile
from torch.utils.flop_counter import FlopCounterMode

from vitae.reproduce.timing import ROWS, SETTINGS, build, time_step
from vitae.training.precision import cpu_has_bfloat16, use_mixed_precision
from vitae.training.trainer import make_optimizer

PRODUCTS = re.compile(r"aten::(mm|addmm|bmm|baddbmm|addbmm|mv|addmv|.*conv.*)$")  # their self time: no double counting


def peak_rate(dtype: torch.dtype, repeats: int = 3) -> float:
    """GFLOP/s of a 4096^3 product in ``dtype`` on this CPU, the best of ``repeats``."""
    a, b = torch.randn(4096, 4096).to(dtype), torch.randn(4096, 4096).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 4096**3 / best / 1e9


def measure(model, optimizer, x: torch.Tensor, repeats: int) -> dict:
    device = torch.device("cpu")
    for _ in range(3):
        time_step(model, optimizer, x, device)
    step = statistics.median(sum(time_step(model, optimizer, x, device)) for _ in range(repeats))
    with FlopCounterMode(display=False) as counter:
        time_step(model, optimizer, x, device)
    with profile() as prof:
        start = time.perf_counter()
        for _ in range(2):
            time_step(model, optimizer, x, device)
        profiled = time.perf_counter() - start
    product_us = sum(e.self_cpu_time_total for e in prof.key_averages() if PRODUCTS.match(e.key))
    # the products' share of the profiled steps, applied to the unprofiled step (the profiler's
    # own cost is spread over every operator)
    share = min(product_us / 1e6 / profiled, 1.0)
    return {"step": step, "gflop": counter.get_total_flops() / 1e9, "products": share * step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="smpl_mlp", choices=sorted(SETTINGS))
    parser.add_argument("--only", nargs="*", default=["VAE", "C-VITAE affine_diffeo"], help="labels of Table 5's rows")
    parser.add_argument("--amp", action="store_true", help="bfloat16 mixed precision (amp=true) instead of float32")
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    if args.amp and not cpu_has_bfloat16():
        parser.error("--amp needs a CPU with bfloat16 instructions (AVX512-BF16 or AMX)")
    known = [label for label, _, _ in ROWS]
    unknown = [label for label in args.only if label not in known]
    if unknown:
        parser.error(f"unknown row(s) {unknown}; choose from {known}")
    shape, batch_size, _ = SETTINGS[args.architecture]
    dtype = torch.bfloat16 if args.amp else torch.float32
    peak = peak_rate(dtype)
    print(f"architecture {args.architecture} {shape}, batch {batch_size}, threads {torch.get_num_threads()}, "
          f"{'bfloat16 (amp=true)' if args.amp else 'float32'}; peak of a 4096^3 product: {peak:.0f} GFLOP/s")
    print(f"{'model':<24} {'step s':>8} {'GFLOP':>7} {'products s':>11} {'GFLOP/s':>8} {'of peak':>8} "
          f"{'rest s':>7} {'at peak s':>10}")
    torch.manual_seed(0)
    x = torch.rand(batch_size, *shape)
    for label, name, transform in ROWS:
        if label not in args.only:
            continue
        torch.manual_seed(0)
        model = build(name, transform, args.architecture)
        if args.amp:
            use_mixed_precision(model, torch.device("cpu"))
        r = measure(model, make_optimizer(model, lr=1e-4), x, args.repeats)
        rate = r["gflop"] / r["products"]
        rest = max(r["step"] - r["products"], 0.0)
        print(f"{label:<24} {r['step']:>8.4f} {r['gflop']:>7.2f} {r['products']:>11.4f} {rate:>8.0f} "
              f"{rate / peak:>8.0%} {rest:>7.4f} {rest + r['gflop'] / peak:>10.4f}", flush=True)


if __name__ == "__main__":
    main()
