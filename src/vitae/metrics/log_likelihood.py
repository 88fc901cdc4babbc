"""The importance-weighted estimate of ``log p(x)`` (Burda et al. 2016).

``log p(x) >= E[log (1/K) sum_k p(x, z_k) / q(z_k | x)]`` with ``z_k ~ q(z | x)``; the bound equals
the ELBO's expectation at ``K = 1`` and does not decrease as ``K`` grows. It is always computed with
KL weight 1 (never the warm-up or beta weight): the weights are ``log p(x|z) + log p(z) - log q(z|x)``.
"""

from __future__ import annotations

import math

import torch

from vitae.models import GenerativeModel

# decoded pixel values per chunk: 2,048 MNIST images, 320 bodies of 100 x 50, 20 of 400 x 200. Small
# enough that the decoder's output and the likelihood's element-wise chain stay in the CPU's cache
# (four times faster than chunks of 50,000 MNIST images, benchmarks/evaluate.py), large enough
# that the Python overhead per chunk does not show.
PIXELS_PER_CHUNK = 2048 * 784


def chunk_images(x: torch.Tensor, max_batch: int | None) -> int:
    """Decoded images per chunk: ``max_batch``, or as many as ``PIXELS_PER_CHUNK`` allows."""
    return max_batch if max_batch is not None else max(1, PIXELS_PER_CHUNK // max(1, x[0].numel()))


@torch.inference_mode()
def iw_log_px(model: GenerativeModel, x: torch.Tensor, n_samples: int, max_batch: int | None = None) -> torch.Tensor:
    """``[B]`` importance-weighted ``log p(x)`` with ``n_samples`` samples per image.

    The samples are drawn in chunks of at most ``max_batch`` decoded images (default: as many as
    ``PIXELS_PER_CHUNK`` pixel values allow) and combined with a running log-sum-exp, so memory
    grows neither with ``n_samples`` nor with the image size.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    max_batch = chunk_images(x, max_batch)
    total = torch.full((x.shape[0],), -math.inf, device=x.device)
    per_chunk = max(1, max_batch // x.shape[0])
    done = 0
    while done < n_samples:
        k = min(per_chunk, n_samples - done)
        total = torch.logaddexp(total, torch.logsumexp(model.log_weights(x, k), dim=0))
        done += k
    return total - math.log(n_samples)


@torch.inference_mode()
def dataset_log_px(model: GenerativeModel, images: torch.Tensor, n_samples: int, max_batch: int | None = None,
                   progress=None) -> float:
    """Mean importance-weighted ``log p(x)`` over ``images`` (nats per image)."""
    max_batch = chunk_images(images, max_batch)
    per_step = max(1, max_batch // n_samples)
    total = 0.0
    for start in range(0, images.shape[0], per_step):
        total += iw_log_px(model, images[start:start + per_step], n_samples, max_batch).sum().item()
        if progress is not None:
            progress(min(start + per_step, images.shape[0]))
    return total / images.shape[0]
