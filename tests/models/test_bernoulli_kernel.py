"""The compiled Bernoulli log-likelihood (vitae.models.bernoulli_kernel, used by
vitae.models.likelihoods): its exp and log against numpy's over the whole clamped range, sums and
per-pixel gradients against the density written out in float64, gradcheck, agreement with torch's
path, the clamp, NaN, layouts and thread counts."""

import math

import numpy as np
import pytest
import torch

from vitae import kernels
from vitae.models import bernoulli_kernel, likelihoods

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C++ compiler")

EPS = 1e-6
BOUND = math.log((1 - EPS) / EPS)


@pytest.fixture(autouse=True)
def compiled(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")


def reference_logits(x: np.ndarray, logits: np.ndarray, bound: float = BOUND) -> tuple[np.ndarray, np.ndarray]:
    """Per-image sums and per-pixel gradients in float64: x l - log(1 + e^l), x - sigmoid(l) (the
    clamp's bound rounded to the images' type first, as torch compares a tensor with a number)."""
    bound = float(np.asarray(bound, dtype=logits.dtype))
    x, logits = x.astype(np.float64), logits.astype(np.float64)
    l = np.clip(logits, -bound, bound)
    terms = x * l - np.logaddexp(0.0, l)
    grad = np.where(np.abs(logits) <= bound, x - 1 / (1 + np.exp(-l)), 0.0)
    return terms.reshape(len(x), -1).sum(1), grad


def reference_mean(x: np.ndarray, mean: np.ndarray, eps: float = EPS) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = (float(np.asarray(v, dtype=mean.dtype)) for v in (eps, 1 - eps))
    x, mean = x.astype(np.float64), mean.astype(np.float64)
    p = np.clip(mean, lo, hi)
    terms = x * np.log(p) + (1 - x) * np.log1p(-p)
    grad = np.where(p == mean, (x - p) / (p * (1 - p)), 0.0)
    return terms.reshape(len(x), -1).sum(1), grad


def images(seed: int, shape=(6, 1, 9, 11), dtype=torch.float64, scale: float = 4.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=dtype)
    return x, torch.randn(shape, generator=g, dtype=dtype) * scale, torch.rand(shape, generator=g, dtype=dtype)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-14), (torch.float32, 4e-7)])
def test_each_pixel_over_the_whole_clamped_range(dtype, rtol):
    """One pixel per image, so that each sum is one term: the kernel's own exp and log against
    numpy's, at logits across +-bound and means across [eps, 1 - eps], for x = 0, 1/2 and 1."""
    logits = torch.linspace(-BOUND, BOUND, 20001, dtype=dtype)
    means = torch.cat([torch.logspace(-6, math.log10(0.5), 5000, dtype=dtype),
                       1 - torch.logspace(-6, math.log10(0.5), 5000, dtype=dtype)]).clamp(EPS, 1 - EPS)
    for value in (0.0, 0.5, 1.0):
        for t, run, reference in ((logits, bernoulli_kernel.from_logits, reference_logits),
                                  (means, bernoulli_kernel.from_mean, reference_mean)):
            x = torch.full_like(t, value).view(-1, 1)
            sums, grad = run(x, t.view(-1, 1), BOUND if run is bernoulli_kernel.from_logits else EPS, True)
            expected_sums, expected_grad = reference(x.numpy(), t.view(-1, 1).numpy())
            # relative to the size of the term's parts (x l and softplus(l), or the two logs)
            scale = np.abs(expected_sums) + 1
            assert np.max(np.abs(sums.numpy() - expected_sums) / scale) < 8 * rtol
            np.testing.assert_allclose(grad.numpy().ravel(), expected_grad.ravel(), rtol=8 * rtol, atol=8 * rtol)


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (3, 3, 17, 13), (2, 1, 40, 20), (1, 1, 1, 1)])
def test_sums_and_gradients_against_the_density_in_float64(shape):
    x, logits, mean = images(0, shape)
    for t, run, reference, limit in ((logits, bernoulli_kernel.from_logits, reference_logits, BOUND),
                                     (mean, bernoulli_kernel.from_mean, reference_mean, EPS)):
        sums, grad = run(x, t, limit, True)
        expected_sums, expected_grad = reference(x.numpy(), t.numpy())
        np.testing.assert_allclose(sums.numpy(), expected_sums, rtol=1e-13)
        np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-12, atol=1e-13)
        no_grad_sums, none = run(x, t, limit, False)
        assert none is None and torch.equal(no_grad_sums, sums)


def test_float32_sums_are_accurate_to_float32():
    x, logits, mean = images(1, (64, 1, 28, 28), torch.float32)
    for t, run, reference, limit in ((logits, bernoulli_kernel.from_logits, reference_logits, BOUND),
                                     (mean, bernoulli_kernel.from_mean, reference_mean, EPS)):
        sums, _ = run(x, t, limit, False)
        expected, _ = reference(x.numpy(), t.numpy())
        # summed in double: the error is each term's rounding, not 784 additions' in float32
        np.testing.assert_allclose(sums.numpy(), expected, rtol=1e-6)


def test_gradcheck_through_the_likelihoods_in_float64():
    x, logits, mean = images(2, (3, 1, 4, 5), scale=2.0)
    mean = mean.clamp(0.05, 0.95)  # away from the clamp's kinks
    assert torch.autograd.gradcheck(likelihoods.BernoulliFromLogits.apply, (x.requires_grad_(), logits.requires_grad_(), BOUND))
    assert torch.autograd.gradcheck(likelihoods.BernoulliFromMean.apply, (x, mean.requires_grad_(), EPS))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_agrees_with_torchs_path_in_values_and_gradients(dtype, monkeypatch):
    x, logits, mean = images(3, (7, 1, 12, 10), dtype)
    logits[0, 0, 0, :4] = torch.tensor([30.0, -30.0, BOUND, -BOUND])  # clamped, and on the bound
    mean[0, 0, 0, :4] = torch.tensor([0.0, 1.0, EPS, 1.0])
    weights = torch.linspace(-1, 2, 7, dtype=dtype)
    results = []
    for choice in ("compiled", "torch"):
        monkeypatch.setenv("VITAE_KERNELS", choice)
        xs, ls, ms = (t.clone().requires_grad_() for t in (x, logits, mean))
        a = likelihoods.BernoulliFromLogits.apply(xs, ls, BOUND)
        b = likelihoods.BernoulliFromMean.apply(xs, ms, EPS)
        results.append((a.detach(), b.detach(), *torch.autograd.grad((a * weights).sum() + (b * weights).sum(), (xs, ls, ms))))
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-5}
    for compiled_value, torch_value in zip(*results):
        torch.testing.assert_close(compiled_value, torch_value, **tol)


def test_the_clamp_passes_no_gradient_and_nan_stays_in_its_image():
    x, logits, mean = images(4, (3, 1, 5, 5))
    logits[0, 0, 0, 0], mean[0, 0, 0, 0] = 50.0, 1.5
    logits[1, 0, 2, 2], mean[1, 0, 2, 2] = float("nan"), float("nan")
    logits[2, 0, 1, 1], mean[2, 0, 1, 1] = -float("inf"), -float("inf")
    for t, run, limit in ((logits, bernoulli_kernel.from_logits, BOUND), (mean, bernoulli_kernel.from_mean, EPS)):
        sums, grad = run(x, t, limit, True)
        assert grad[0, 0, 0, 0] == 0 and grad[1, 0, 2, 2] == 0 and grad[2, 0, 1, 1] == 0
        assert torch.isnan(sums[1]) and torch.isfinite(sums[[0, 2]]).all()
        clamped = t.clone()
        clamped[1, 0, 2, 2] = 0.5
        clamped = clamped.clamp(-BOUND, BOUND) if run is bernoulli_kernel.from_logits else clamped.clamp(EPS, 1 - EPS)
        same, _ = run(x, clamped, limit, False)  # a clamped pixel scores as the bound
        torch.testing.assert_close(sums[[0, 2]], same[[0, 2]], rtol=1e-15, atol=0)


def test_layouts_and_thread_counts_give_the_same_bits():
    x, logits, mean = images(5, (8, 3, 16, 16), torch.float32)
    for t, run, limit in ((logits, bernoulli_kernel.from_logits, BOUND), (mean, bernoulli_kernel.from_mean, EPS)):
        plain = run(x, t, limit, True)
        last = t.contiguous(memory_format=torch.channels_last)
        for x_in, t_in in ((x, last), (x.contiguous(memory_format=torch.channels_last), last), (x, t.transpose(2, 3).contiguous().transpose(2, 3))):
            sums, grad = run(x_in, t_in, limit, True)
            torch.testing.assert_close(sums, plain[0], rtol=1e-6, atol=0)  # another order of the pixels
            assert torch.equal(grad, plain[1])
        threads = torch.get_num_threads()
        try:
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                sums, grad = run(x, t, limit, True)
                assert torch.equal(sums, plain[0]) and torch.equal(grad, plain[1])
        finally:
            torch.set_num_threads(threads)


def test_out_of_range_clamps_are_refused_and_left_to_torch():
    x, logits, mean = images(6)
    with pytest.raises(ValueError, match="bound"):
        bernoulli_kernel.from_logits(x, logits, 100.0, False)
    with pytest.raises(ValueError, match="eps"):
        bernoulli_kernel.from_mean(x, mean, 0.0, False)
    assert not bernoulli_kernel.takes_logits(x, logits, 100.0) and not bernoulli_kernel.takes_mean(x, mean, 0.0)
    assert not bernoulli_kernel.takes_mean(x.float(), mean, EPS)  # dtypes differ: torch promotes
    assert bernoulli_kernel.takes_logits(x, logits, BOUND) and bernoulli_kernel.takes_mean(x, mean, EPS)


def test_a_second_derivative_is_refused_not_wrong():
    x, logits, mean = images(7, (2, 1, 3, 3))
    for apply, t, limit in ((likelihoods.BernoulliFromLogits.apply, logits, BOUND), (likelihoods.BernoulliFromMean.apply, mean, EPS)):
        t = t.clone().requires_grad_()
        (grad,) = torch.autograd.grad(apply(x, t, limit).sum(), t, create_graph=True)
        with pytest.raises(RuntimeError, match="does not require grad|once_differentiable"):
            grad.sum().backward()
