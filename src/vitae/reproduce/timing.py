"""Supplement Table 5 on this machine: forward and backward seconds per batch for each model and
transformation, the models taking turns (one step each per round) so that the ratios survive a
noisy shared machine. Used by ``benchmarks/table5.py`` and ``vitae reproduce timing``.

Forward = the loss of one batch; backward = ``loss.backward()`` plus the Adam step; times are
medians over ``repeats`` batches after warm-up. Random images stand in for the batch (the timing
does not depend on pixel values).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vitae import data, models
from vitae.training.trainer import make_optimizer

# (label, model, transform) rows, in the order of Table 5
ROWS = [
    ("VAE", "vae", None),
    ("beta-VAE", "beta_vae", None),
    ("beta-TCVAE", "beta_tcvae", None),
    ("DIP-VAE-II", "dip_vae", None),
    ("U-VITAE affine_diffeo", "uvitae", "affine_diffeo"),
    ("C-VITAE affine", "cvitae", "affine"),
    ("C-VITAE affine_decomp", "cvitae", "affine_decomp"),
    ("C-VITAE affine_diffeo", "cvitae", "affine_diffeo"),
    ("C-VITAE cpab", "cvitae", "cpab"),
]

# architecture -> the paper's setting for it: image shape, default batch, model options
SETTINGS = {
    "mnist_mlp": ((1, 28, 28), 512, {"likelihood": "bernoulli", "cpab": {}}),
    "smpl_mlp": ((1, 400, 200), 64, {"likelihood": "gaussian", "likelihood_options": {"variance": 0.1},
                                     "cpab": {"tessellation": [2, 4], "zero_boundary": True}}),
    "celeba_conv": ((3, 128, 128), 64, {"likelihood": "gaussian", "likelihood_options": {"variance": 0.1, "mean": "sigmoid"},
                                        "cpab": {"tessellation": [4, 4], "zero_boundary": True}}),
}
DATASET_SIZE = 60_000  # beta-TCVAE's N; it changes the estimator's weights, not the work


class OpTimer(TorchDispatchMode):
    """Wall seconds of every aten operator run under it (``with OpTimer() as timer:``), summed per
    operator name in ``seconds``, forward, backward and optimiser alike. An operator is timed as
    one call (what it runs inside is not seen again), so nothing is counted twice; compiled
    kernels called through ctypes are not aten operators and are not seen. Unlike
    ``torch.profiler`` it keeps only a number per operator name: the profiler's records made the
    fresh tensors after them fault their memory in page by page on this CPU, which slowed
    bfloat16's casts several times over (``benchmarks/step_floor.py``)."""

    def __init__(self):
        super().__init__()
        self.seconds: dict[str, float] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return out


def best_seconds(f, repeats: int = 5) -> float:
    """The shortest of ``repeats`` timed calls of ``f()``, after one untimed call."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    f()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def build(name: str, transform: str | None, architecture: str):
    shape, _, setting = SETTINGS[architecture]
    options = {key: value for key, value in setting.items() if key != "cpab"}
    if transform:
        options.update(transform=transform, transform_options=setting["cpab"] if transform == "cpab" else {})
    return models.create(name, shape, architecture=architecture, dataset_size=DATASET_SIZE, **options)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(model, optimizer, x: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """Seconds of one forward (the loss) and one backward (gradients and the Adam step)."""
    sync(device)
    t0 = time.perf_counter()
    out = model(x, kl_weight=0.5)
    sync(device)
    t1 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    sync(device)
    return t1 - t0, time.perf_counter() - t1


def time_models(entries, x: torch.Tensor, repeats: int, device: torch.device, warmup: int = 5) -> list[tuple[float, float]]:
    """Median forward and backward seconds per model. The models take turns, one step each per
    round, so a slow spell of a shared machine hits every model alike and the ratios hold."""
    times = [([], []) for _ in entries]
    for round_ in range(warmup + repeats):
        for (model, optimizer), (forward, backward) in zip(entries, times):
            fwd, bwd = time_step(model, optimizer, x, device)
            if round_ >= warmup:
                forward.append(fwd)
                backward.append(bwd)
    return [(statistics.median(f), statistics.median(b)) for f, b in times]


def time_epoch(model, optimizer, images: torch.Tensor, batch_size: int, device: torch.device) -> float:
    generator = torch.Generator().manual_seed(0)
    sync(device)
    t0 = time.perf_counter()
    for idx in data.batches(len(images), batch_size, generator=generator):
        out = model(images[idx], kl_weight=0.5)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - t0


def table(architecture: str = "mnist_mlp", *, batch_size: int | None = None, repeats: int = 30,
          device: str | torch.device = "cpu", only: list[str] | None = None, warmup: int = 5) -> list[dict]:
    """One dict per row of Table 5: ``label``, ``forward``, ``backward``, ``step`` (seconds) and
    ``ratio`` (step over the first row's, the VAE's when it is included)."""
    shape, default_batch, _ = SETTINGS[architecture]
    device = torch.device(device)
    torch.manual_seed(0)
    x = torch.rand(batch_size or default_batch, *shape, device=device)
    rows = [row for row in ROWS if not only or row[0] in only]
    entries = []
    for _, name, transform in rows:
        model = build(name, transform, architecture).to(device)
        entries.append((model, make_optimizer(model, lr=1e-4)))
    results, reference = [], None
    for (label, _, _), (fwd, bwd) in zip(rows, time_models(entries, x, repeats, device, warmup=warmup)):
        reference = reference or (fwd + bwd)
        results.append({"label": label, "forward": fwd, "backward": bwd, "step": fwd + bwd, "ratio": (fwd + bwd) / reference})
    return results
