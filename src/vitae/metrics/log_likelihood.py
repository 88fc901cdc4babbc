"""The importance-weighted estimate of ``log p(x)`` (Burda et al. 2016).

``log p(x) >= E[log (1/K) sum_k p(x, z_k) / q(z_k | x)]`` with ``z_k ~ q(z | x)``; the bound equals
the ELBO's expectation at ``K = 1`` and does not decrease as ``K`` grows. It is always computed with
KL weight 1 (never the warm-up or beta weight): the weights are ``log p(x|z) + log p(z) - log q(z|x)``.
"""

from __future__ import annotations

import math

import torch

from vitae.models import GenerativeModel


@torch.no_grad()
def iw_log_px(model: GenerativeModel, x: torch.Tensor, n_samples: int, max_batch: int = 50_000) -> torch.Tensor:
    """``[B]`` importance-weighted ``log p(x)`` with ``n_samples`` samples per image.

    The samples are drawn in chunks of at most ``max_batch`` decoded images and combined with a
    running log-sum-exp, so memory does not grow with ``n_samples``.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    total = torch.full((x.shape[0],), -math.inf, device=x.device)
    per_chunk = max(1, max_batch // x.shape[0])
    done = 0
    while done < n_samples:
        k = min(per_chunk, n_samples - done)
        total = torch.logaddexp(total, torch.logsumexp(model.log_weights(x, k), dim=0))
        done += k
    return total - math.log(n_samples)


@torch.no_grad()
def dataset_log_px(model: GenerativeModel, images: torch.Tensor, n_samples: int, max_batch: int = 50_000,
                   progress=None) -> float:
    """Mean importance-weighted ``log p(x)`` over ``images`` (nats per image)."""
    per_step = max(1, max_batch // n_samples)
    total = 0.0
    for start in range(0, images.shape[0], per_step):
        total += iw_log_px(model, images[start:start + per_step], n_samples, max_batch).sum().item()
        if progress is not None:
            progress(min(start + per_step, images.shape[0]))
    return total / images.shape[0]
