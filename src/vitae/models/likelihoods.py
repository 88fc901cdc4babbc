"""Observation models ``p(x | params)``: each turns a decoder's raw output into the parameter
images it needs and scores images under them. The VITAE models warp those parameter images
before scoring, so a likelihood only ever sees images in the observed perspective.

Convention: a decoder outputs ``out_channels(C)`` channels; ``params(output)`` turns them into the
parameter images that are warped (``[B, P*C, H, W]``: the mean, then any learned variance);
``log_prob(x, params)`` takes ``x`` ``[B, C, H, W]`` and returns ``[B]`` (nats, summed over
pixels); ``log_prob_output(x, output)`` is the same from the decoder's raw output, for models
that do not warp their parameter images (it may be cheaper); ``mean(params)`` is the mean image
``[B, C, H, W]``.

A warp fills pixels that come from outside the image with zeros, so every parameter image must
read a zero as something ``log_prob`` can score: the Bernoulli clamps its mean, the Gaussian
stores a learned variance as its excess over a floor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from vitae.errors import VitaeError
from vitae.models import bernoulli_kernel

LOG_2PI = math.log(2 * math.pi)


def per_image_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` ``[B, ...]`` summed over all but the first axis, in any memory layout (the conv
    decoders emit channels-last images; a ``flatten`` would copy them first)."""
    return t.sum(dim=tuple(range(1, t.dim())))


def per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` ``[B]`` shaped to broadcast over the images ``like`` ``[B, ...]``: the backward
    of ``per_image_sum``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class BernoulliFromLogits(torch.autograd.Function):
    """``sum x log p + (1 - x) log(1 - p)`` per image for ``p = clamp(sigmoid(logits), eps, 1 - eps)``,
    in logit space: with ``l`` the logits clamped to ``+-logit(1 - eps)`` (the same clamp),
    ``log(1 - p) = logsigmoid(-l)`` and ``log p - log(1 - p) = l``, so the sum is
    ``sum x l + logsigmoid(-l)``; its gradient is ``(x - p)`` where the clamp is inactive, zero
    elsewhere. Four passes forward and three backward, against a dozen for the same chain in
    autograd (the likelihood was half of a VAE step on MNIST). On the CPU, one compiled pass
    forward that also keeps the gradient's ``x - p``, and one product backward
    (``vitae.models.bernoulli_kernel``)."""

    @staticmethod
    def forward(ctx, x, logits, bound: float):
        ctx.bound = bound
        if bernoulli_kernel.takes_logits(x, logits, bound):
            sums, pixel_grad = bernoulli_kernel.from_logits(x, logits, bound, grad=ctx.needs_input_grad[1])
            ctx.save_for_backward(x, logits, pixel_grad)
            return sums
        clamped = logits.clamp(-bound, bound)
        ctx.save_for_backward(x, logits, None)
        return per_image_sum(torch.addcmul(F.logsigmoid(-clamped), x, clamped))

    @staticmethod
    @once_differentiable  # the saved gradient is a constant to autograd: no second derivatives
    def backward(ctx, grad):
        x, logits, pixel_grad = ctx.saved_tensors
        g = per_image(grad, x)
        grad_x = grad_logits = None
        if ctx.needs_input_grad[1]:
            if pixel_grad is not None:
                grad_logits = pixel_grad * g
            else:
                inside = logits.abs() <= ctx.bound
                grad_logits = ((x - torch.sigmoid(logits.clamp(-ctx.bound, ctx.bound))) * g).masked_fill_(~inside, 0)
        if ctx.needs_input_grad[0]:
            grad_x = logits.clamp(-ctx.bound, ctx.bound) * g
        return grad_x, grad_logits, None


class BernoulliFromMean(torch.autograd.Function):
    """``sum x log p + (1 - x) log(1 - p)`` per image for ``p = clamp(mean, eps, 1 - eps)`` (the
    VITAE models score their warped mean, not logits). Its gradient to the mean is
    ``(x - p) / (p (1 - p))`` where the clamp is inactive and zero elsewhere: seven passes, where
    autograd's chain through the clamp, both logs and the lerp takes a dozen. On the CPU, one
    compiled pass forward that also keeps that gradient, and one product backward
    (``vitae.models.bernoulli_kernel``)."""

    @staticmethod
    def forward(ctx, x, mean, eps: float):
        ctx.eps = eps
        if bernoulli_kernel.takes_mean(x, mean, eps):
            sums, pixel_grad = bernoulli_kernel.from_mean(x, mean, eps, grad=ctx.needs_input_grad[1])
            ctx.save_for_backward(x, mean, None, pixel_grad)
            return sums
        p = mean.clamp(eps, 1 - eps)
        ctx.save_for_backward(x, mean, p, None)
        # lerp(a, b, x) = a + x (b - a) = x log p + (1 - x) log(1 - p), in fewer passes than the
        # sum of products (F.binary_cross_entropy is slower still on a CPU)
        return per_image_sum(torch.lerp((1 - p).log(), p.log(), x))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, mean, p, pixel_grad = ctx.saved_tensors  # p on torch's path, pixel_grad on the compiled one
        g = per_image(grad, x)
        grad_mean = grad_x = None
        if p is None and ctx.needs_input_grad[0]:
            p = mean.clamp(ctx.eps, 1 - ctx.eps)
        if ctx.needs_input_grad[1] and pixel_grad is not None:
            grad_mean = pixel_grad * g
        elif ctx.needs_input_grad[1]:
            # p (1 - p), not p - p^2: 1 - p is exact for p >= 1/2 (Sterbenz), whereas p - p^2 is
            # accurate near p = 1 only where the product and difference are fused (FMA): else p^2's
            # rounding (6e-8) lands on a difference as small as eps = 1e-6
            grad_mean = (x - p).div_((1 - p).mul_(p))
            grad_mean = grad_mean.masked_fill_(p != mean, 0).mul_(g)  # clamped pixels pass nothing back
        if ctx.needs_input_grad[0]:
            grad_x = (p.log() - (1 - p).log()) * g
        return grad_x, grad_mean, None


class Bernoulli(nn.Module):
    """Per-pixel Bernoulli with mean ``sigmoid(output)``, for pixels in ``[0, 1]`` (not binarised,
    as in the paper). The mean is clamped to ``[eps, 1 - eps]`` because a warp can move exact
    zeros (the padding outside the image) under a bright pixel, where ``log 0`` would be ``-inf``.
    """

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 0.5:
            raise VitaeError(f"bernoulli likelihood: eps must be a number in (0, 0.5), got {eps!r}")
        self.eps = eps

    def out_channels(self, channels: int) -> int:
        return channels

    def params(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params

    def log_prob(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        return BernoulliFromMean.apply(x, mean, self.eps)

    def log_prob_output(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """``log_prob(x, params(output))`` from the decoder's raw output (the logits), for models
        that score it unwarped: the same value, in a fraction of the passes."""
        return BernoulliFromLogits.apply(x, output, math.log((1 - self.eps) / self.eps))


MEAN_ACTIVATIONS = {"linear": lambda output: output, "sigmoid": torch.sigmoid}


class SquaredError(torch.autograd.Function):
    """``sum (x - mean)^2`` per image, with ``mean = output`` (``sigmoid=False``) or
    ``sigmoid(output)``; the gradient ``-2 (x - mean)`` (times ``mean (1 - mean)`` through the
    sigmoid) in two passes, and none of the residual's temporaries kept, in place of autograd's
    chain (activation, difference, square, sum; and back through each)."""

    @staticmethod
    def forward(ctx, x, output, sigmoid: bool):
        mean = torch.sigmoid(output) if sigmoid else output
        residual = x - mean  # in the output's layout (channels-last from a conv decoder): no copy
        ctx.save_for_backward(residual, mean if sigmoid else None)
        ctx.sigmoid = sigmoid
        # one pass, no temporary
        return torch.linalg.vector_norm(residual, dim=tuple(range(1, residual.dim()))).square()

    @staticmethod
    def backward(ctx, grad):
        residual, mean = ctx.saved_tensors
        scaled = residual * per_image(-2 * grad, residual)  # d/dmean of sum (x - mean)^2
        grad_output = None
        if ctx.needs_input_grad[1]:
            grad_output = torch.ops.aten.sigmoid_backward(scaled, mean) if ctx.sigmoid else scaled
        grad_x = scaled.neg() if ctx.needs_input_grad[0] else None
        return grad_x, grad_output, None


class Gaussian(nn.Module):
    """Per-pixel ``N(x; mean, variance)``.

    * ``variance``: the fixed variance of every pixel (the paper's 0.1 for SMPL and CelebA,
      supplement section 2). It is a constant, so it is not a parameter image and is not warped.
    * ``learned=True``: the decoder outputs a second image, ``softplus`` of which is the
      variance's excess over ``min_variance``; that image is warped with the mean, and the
      zeros a warp pads with read as the floor ``min_variance`` rather than as a variance of 0.
    * ``mean``: the activation on the mean image, ``"linear"`` (supplement Table 3, the SMPL MLP)
      or ``"sigmoid"`` (Table 4, the CelebA conv net, and Table 1); the decoder's last layer is
      linear and this is where the table's activation goes.
    """

    def __init__(self, variance: float = 0.1, learned: bool = False, min_variance: float = 1e-3, mean: str = "linear"):
        super().__init__()
        if not variance > 0 or not min_variance > 0:
            raise VitaeError(f"gaussian likelihood: variance and min_variance must be positive, got {variance} and {min_variance}")
        if mean not in MEAN_ACTIVATIONS:
            raise VitaeError(f"gaussian likelihood: unknown mean activation '{mean}'; choose one of: {', '.join(MEAN_ACTIVATIONS)}")
        self.variance, self.learned, self.min_variance = variance, learned, min_variance
        self.mean_activation = mean

    def out_channels(self, channels: int) -> int:
        return 2 * channels if self.learned else channels

    def params(self, output: torch.Tensor) -> torch.Tensor:
        if not self.learned:
            return MEAN_ACTIVATIONS[self.mean_activation](output)
        mean, excess = output.chunk(2, dim=1)
        return torch.cat([MEAN_ACTIVATIONS[self.mean_activation](mean), F.softplus(excess)], dim=1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params.chunk(2, dim=1)[0] if self.learned else params

    def log_variance(self, params: torch.Tensor) -> torch.Tensor | float:
        """``log variance``: an image ``[B, C, H, W]`` when learned, else the constant."""
        return (params.chunk(2, dim=1)[1] + self.min_variance).log() if self.learned else math.log(self.variance)

    def log_prob_output(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """``log_prob(x, params(output))``, from the decoder's raw output."""
        if not self.learned:  # the activation inside the fused squared error
            return self._fixed(x, SquaredError.apply(x, output, self.mean_activation == "sigmoid"))
        return self.log_prob(x, self.params(output))

    def _fixed(self, x: torch.Tensor, squared: torch.Tensor) -> torch.Tensor:
        """The constant-variance log density from the per-image squared error."""
        return -0.5 * (squared / self.variance + x[0].numel() * (math.log(self.variance) + LOG_2PI))

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if not self.learned:  # a constant variance: only the squared error is per pixel
            return self._fixed(x, SquaredError.apply(x, params, False))
        log_var = self.log_variance(params)
        inv_var = (-log_var).exp()
        log_density = -0.5 * ((x - self.mean(params)).pow(2) * inv_var + log_var + LOG_2PI)
        return per_image_sum(log_density)


REGISTRY: dict[str, type[nn.Module]] = {"bernoulli": Bernoulli, "gaussian": Gaussian}


def create(name: str, **options) -> nn.Module:
    if name not in REGISTRY:
        raise VitaeError(f"unknown likelihood '{name}'; choose one of: {', '.join(sorted(REGISTRY))}")
    try:
        return REGISTRY[name](**options)
    except TypeError as exc:
        raise VitaeError(f"likelihood '{name}' does not take these options {sorted(options)}: {exc}") from None
