"""bfloat16 mixed precision (``amp=true``): which parts of a model run in bfloat16, and whether
this machine can.

Measured on a 2-core CPU with AVX512-BF16 (``benchmarks/table5.py --amp``, README "Benchmarks"):
since the dense layers' float32 products go to oneDNN (``vitae.models.dense``), the bodies' step
gains 1.0 to 1.1x from it, the faces' VAE family about 1.35x and its VITAE models about 1.1x,
MNIST's VAE family 1.2 to 1.4x and its VITAE models about 1.05x; after 30 MNIST epochs the test
ELBO is where float32's is (``benchmarks/bf16_elbo.py``).
"""

from __future__ import annotations

import dataclasses

import torch

from vitae import models
from vitae.errors import VitaeError


def cpu_has_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


FLOAT32_CHILDREN = ("likelihood", "transform", "perspective_decoder", "perspective_encoder")  # what amp=true leaves in float32


def use_mixed_precision(model: models.GenerativeModel, device: torch.device) -> None:
    """Run the model's networks under bfloat16 autocast and hand their outputs on in float32: the
    likelihood's log terms, the KLs, the estimators and the spatial transformer stay float32,
    where bfloat16 loses too much (``FLOAT32_CHILDREN``: the likelihood, the transform, and the
    VITAE's perspective networks, ``q(z_P | x)`` and ``g_P``, whose output is the transformer's
    parameters). With the perspective networks in bfloat16 too, C-VITAE's test ELBO after 30
    MNIST epochs moved by +0.00, -1.04 and -5.60 nats on seeds 0 to 2; with them in float32, by
    -0.14 ± 0.61 over seeds 0 to 7 (``benchmarks/bf16_elbo.py --seeds 0 1 2 3 4 5 6 7``), for a
    bodies step 1.33x faster than float32 instead of 1.54x. bfloat16 needs no loss scaling. On a
    GPU it needs bfloat16 (Ampere or newer); on a CPU, AVX512-BF16 or AMX.

    Worth it where the networks' convolutions or MKL-bound products dominate (the faces VAE step
    about 1.35x on this CPU, ``benchmarks/table5.py --amp``), little where the warps do. Off by
    default: the paper's model gains little from it, and a default that followed the CPU would
    give one config different numerics on different machines (README, "Several processes")."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise VitaeError("amp=true needs a GPU with bfloat16 (Ampere or newer); set amp=false")
    if device.type == "cpu" and not cpu_has_bfloat16():
        raise VitaeError("amp=true on a CPU needs bfloat16 instructions (AVX512-BF16 or AMX), which this one lacks; set amp=false")
    for name, child in model.named_children():
        if name not in FLOAT32_CHILDREN:
            child.forward = _autocast_to_float32(child.forward, device.type)


def _autocast_to_float32(forward, device_type: str):
    def run(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = forward(*args, **kwargs)
        return _to_float32(out)
    return run


def _to_float32(value):
    """Tensors in ``value`` (alone, in a tuple or list, or fields of a dataclass such as a
    posterior) as float32."""
    if isinstance(value, torch.Tensor):
        return value.float()
    if isinstance(value, (tuple, list)):
        return type(value)(_to_float32(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _to_float32(getattr(value, f.name)) for f in dataclasses.fields(value)})
    return value

