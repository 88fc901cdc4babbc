"""What keeping freed memory for reuse (``vitae.allocator``) saves: the same probes in fresh
processes under glibc's default (``VITAE_MALLOC=system``), with vitae's setting (the default),
and with torch's transparent huge pages instead (``THP_MEM_ALLOC_ENABLE=1``, glibc's default).

    python benchmarks/allocator.py [--repeats 8]

Each process times a fresh 82 MB ``torch.zeros`` (the size of one bodies weight gradient), the
product of two 12 MB tensors into a fresh one (a faces image batch), and the bodies VAE training
step in float32 and, where the CPU has bfloat16, under ``amp=true`` (the Table 3 MLP, 400 x 200,
batch 64); medians over ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

PROBE = r"""
import json, statistics, sys, time
import vitae, torch
from vitae.reproduce.timing import build, time_step
from vitae.training.precision import cpu_has_bfloat16, use_mixed_precision
from vitae.training.trainer import make_optimizer
repeats = int(sys.argv[1])

def median(f):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

a, b = torch.rand(64, 49152), torch.rand(64, 49152)
out = {"zeros_82MB_ms": 1000 * median(lambda: torch.zeros(80_000, 256)), "product_12MB_ms": 1000 * median(lambda: a * b)}
x = torch.rand(64, 1, 400, 200)
for amp in ([False, True] if cpu_has_bfloat16() else [False]):
    torch.manual_seed(0)
    model = build("vae", None, "smpl_mlp")
    if amp:
        use_mixed_precision(model, torch.device("cpu"))
    optimizer = make_optimizer(model, lr=1e-4)
    step = lambda: time_step(model, optimizer, x, torch.device("cpu"))
    for _ in range(3):
        step()
    out["bodies_vae_step_bf16_s" if amp else "bodies_vae_step_s"] = median(step)
print(json.dumps(out))
"""

SETTINGS = {
    "glibc default": {"VITAE_MALLOC": "system"},
    "kept (vitae)": {},
    "torch huge pages": {"VITAE_MALLOC": "system", "THP_MEM_ALLOC_ENABLE": "1"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    rows = {}
    for name, env in SETTINGS.items():
        environ = {k: v for k, v in os.environ.items() if k not in ("VITAE_MALLOC", "THP_MEM_ALLOC_ENABLE")}
        environ.update(env)
        done = subprocess.run([sys.executable, "-c", PROBE, str(args.repeats)], env=environ, capture_output=True,
                              text=True, check=True)
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
    keys = list(next(iter(rows.values())))
    print(f"{'setting':<18}" + "".join(f"{key:>24}" for key in keys))
    for name, row in rows.items():
        print(f"{name:<18}" + "".join(f"{row[key]:>24.4f}" for key in keys))


if __name__ == "__main__":
    main()
