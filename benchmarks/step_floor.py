"""What a training step is made of, against this CPU's peak: the floating-point work of its matrix
products and convolutions (forward and backward), the time they take and their rate, the rest of
the step, and the step it would be if those products ran at the peak rate of a large square
product measured in the same run. Table 5's settings (``vitae.reproduce.timing``).

    python benchmarks/step_floor.py [--architecture smpl_mlp] [--only VAE "C-VITAE affine_diffeo"]
                                    [--amp] [--repeats 8]

The steps are medians of ``--repeats`` plain steps, the models taking turns; the FLOPs are counted
by ``torch.utils.flop_counter`` on one step; the products' time is the wall time of every
matrix-product and convolution operator (``aten::mm``, ``addmm``, ``convolution_backward``, ...)
over two more steps, timed one by one as they are dispatched (``vitae.reproduce.timing.OpTimer``),
halved. Not
``torch.profiler``: its own allocations make the fresh tensors that follow fault in their memory
page by page, which slowed bfloat16's casts several times over while it recorded. The peak is a
4096 x 4096 x 4096 product in the same precision (in float32 the faster of torch's own and
oneDNN's). ``--amp`` measures bfloat16 mixed precision (``amp=true``) instead, against the
bfloat16 peak. A step that is mostly products at near the peak
cannot get much faster in that precision: that is what this measures.
"""

from __future__ import annotations

import argparse
import re

import torch
from torch.utils.flop_counter import FlopCounterMode

from vitae.models import dense
from vitae.reproduce.timing import ROWS, SETTINGS, OpTimer, best_seconds, build, time_models, time_step
from vitae.training.precision import cpu_has_bfloat16, use_mixed_precision
from vitae.training.trainer import make_optimizer

PRODUCTS = re.compile(r"(mm|addmm|bmm|baddbmm|addbmm|mv|addmv|_linear_pointwise|.*conv.*)$")  # operators, as dispatched


def peak_rate(dtype: torch.dtype, repeats: int = 3) -> float:
    """GFLOP/s of a 4096^3 product in ``dtype`` on this CPU, the best of ``repeats`` and, in
    float32, of torch's own product (MKL) and oneDNN's (``vitae.models.dense``), the faster here."""
    a, b = torch.randn(4096, 4096).to(dtype), torch.randn(4096, 4096).to(dtype)
    ways = [lambda: a @ b] + ([lambda: dense.linear(a, b)] if dtype == torch.float32 and dense.available() else [])
    return 2 * 4096**3 / min(best_seconds(product, repeats) for product in ways) / 1e9


def measure(model, optimizer, x: torch.Tensor) -> dict:
    """FLOPs of one step and the products' seconds per step (two steps timed op by op)."""
    device = torch.device("cpu")
    onednn, dense.ONEDNN = dense.ONEDNN, False  # the FLOPs are the same; flop_counter counts torch's products, not oneDNN's
    try:
        with FlopCounterMode(display=False) as counter:
            time_step(model, optimizer, x, device)
    finally:
        dense.ONEDNN = onednn
    timer = OpTimer()
    with timer:
        for _ in range(2):
            time_step(model, optimizer, x, device)
    products = sum(seconds for name, seconds in timer.seconds.items() if PRODUCTS.match(name)) / 2
    return {"gflop": counter.get_total_flops() / 1e9, "products": products}


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
    rows = [row for row in ROWS if row[0] in args.only]
    entries = []
    for _, name, transform in rows:
        torch.manual_seed(0)
        model = build(name, transform, args.architecture)
        if args.amp:
            use_mixed_precision(model, torch.device("cpu"))
        entries.append((model, make_optimizer(model, lr=1e-4)))
    steps = time_models(entries, x, args.repeats, torch.device("cpu"), warmup=3)  # plain steps first, taking turns
    for (label, _, _), (model, optimizer), (fwd, bwd) in zip(rows, entries, steps):
        r = measure(model, optimizer, x)
        step = fwd + bwd
        rate = r["gflop"] / r["products"]
        rest = max(step - r["products"], 0.0)
        print(f"{label:<24} {step:>8.4f} {r['gflop']:>7.2f} {r['products']:>11.4f} {rate:>8.0f} "
              f"{rate / peak:>8.0%} {rest:>7.4f} {rest + r['gflop'] / peak:>10.4f}", flush=True)


if __name__ == "__main__":
    main()
