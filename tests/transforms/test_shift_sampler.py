"""The compiled sampler from a displacement per pixel (vitae.transforms.affine_sampler.shift_sample,
taken by base.displaced_sample on the CPU): values against bilinear interpolation written out in
numpy, agreement with the padded F.grid_sample path in values and both gradients, gradcheck in
float64, the bit-exact zero shift, the thread count, and its arguments named."""

import numpy as np
import pytest
import torch

from conftest import same_bits_for_thread_counts
from vitae import kernels, transforms
from vitae.transforms import affine_sampler, base

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C++ compiler")


def shifted_numpy(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """One [C, H, W] image read at every pixel centre (x, y) moved by shift [H, W, 2] (normalised
    units), pixel by pixel: bilinear, zeros outside (align_corners=False)."""
    c, h, w = image.shape
    out = np.zeros_like(image)
    for i in range(h):
        for j in range(w):
            x, y = (2 * j + 1) / w - 1 + shift[i, j, 0], (2 * i + 1) / h - 1 + shift[i, j, 1]
            u, v = ((x + 1) * w - 1) / 2, ((y + 1) * h - 1) / 2  # pixel units
            u0, v0 = int(np.floor(u)), int(np.floor(v))
            for dv in (0, 1):
                for du in (0, 1):
                    weight = (u - u0 if du else 1 - (u - u0)) * (v - v0 if dv else 1 - (v - v0))
                    if 0 <= u0 + du < w and 0 <= v0 + dv < h:
                        out[:, i, j] += weight * image[:, v0 + dv, u0 + du]
    return out


def random_shift(b, h, w, dtype, scale=0.3, seed=0):
    return torch.randn(b, h, w, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


def both_paths(images, shift, monkeypatch):
    """(compiled, F.grid_sample) outputs and gradients of a fixed weighted sum."""
    results = []
    for choice in ("compiled", "torch"):
        monkeypatch.setenv("VITAE_KERNELS", choice)
        x, s = images.clone().requires_grad_(), shift.clone().requires_grad_()
        out = base.displaced_sample(x, shift=s)
        weights = torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out)
        grads = torch.autograd.grad((out * weights).sum(), (x, s))
        results.append((out.detach(), *grads))
    return results


def test_values_equal_bilinear_interpolation_written_out_in_numpy(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    images = torch.rand(3, 2, 9, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    shift = random_shift(3, 9, 13, torch.float64, scale=0.4)
    shift[2] += torch.tensor([1.2, -1.5], dtype=torch.float64)  # mostly outside the frame
    out = affine_sampler.shift_sample(images, shift)
    for b in range(3):
        np.testing.assert_allclose(out[b].numpy(), shifted_numpy(images[b].numpy(), shift[b].numpy()), atol=1e-12)
    assert out[2].abs().sum() > 0 and (out[2] == 0).sum() > 0  # partly outside: zeros and values


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (3, 3, 17, 12), (2, 1, 40, 20), (2, 2, 1, 7)])
def test_agrees_with_grid_sample_in_values_and_both_gradients(shape, monkeypatch):
    images = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    shift = random_shift(shape[0], shape[2], shape[3], torch.float64)
    (out, gx, gs), (ref, rgx, rgs) = both_paths(images, shift, monkeypatch)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(gx, rgx, atol=1e-11, rtol=0)
    torch.testing.assert_close(gs, rgs, atol=1e-10, rtol=0)
    assert gs.abs().max() > 0 and gx.abs().max() > 0


def test_float32_and_channels_last_agree_with_grid_sample(monkeypatch):
    images = torch.rand(4, 3, 20, 24, generator=torch.Generator().manual_seed(3)).to(memory_format=torch.channels_last)
    shift = random_shift(4, 20, 24, torch.float32)
    (out, gx, gs), (ref, rgx, rgs) = both_paths(images, shift, monkeypatch)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(gx, rgx, atol=1e-4, rtol=0)
    torch.testing.assert_close(gs, rgs, atol=1e-4, rtol=0)
    plain = both_paths(images.contiguous(), shift, monkeypatch)[0]
    for a, b in zip((out, gx, gs), plain):
        assert torch.equal(a, b)  # the layout changes where numbers live, not the numbers


def test_gradcheck_in_float64(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    images = torch.rand(3, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    shift = random_shift(3, 7, 6, torch.float64, scale=0.2).requires_grad_()
    assert torch.autograd.gradcheck(affine_sampler.shift_sample, (images, shift), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_zero_shift_copies_every_pixel_bit_for_bit(dtype, monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    for shape in [(4, 1, 28, 28), (2, 3, 17, 30), (1, 1, 1, 1)]:
        images = torch.randn(shape, dtype=dtype)
        zero = torch.zeros(shape[0], shape[2], shape[3], 2, dtype=dtype)
        assert torch.equal(affine_sampler.shift_sample(images, zero), images)
    # and so CPAB at theta = 0, whose displacement is exactly 0
    t = transforms.create("cpab", tessellation=(2, 4))
    images = torch.rand(3, 1, 28, 28, dtype=dtype)
    assert torch.equal(t.warp(images, torch.zeros(3, t.theta_dim, dtype=dtype)), images)


def test_the_thread_count_does_not_change_a_bit(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    images = torch.rand(7, 2, 30, 20)
    shift = random_shift(7, 30, 20, torch.float32)

    def run():
        x, s = images.clone().requires_grad_(), shift.clone().requires_grad_()
        out = affine_sampler.shift_sample(x, s)
        return (out, *torch.autograd.grad(out.square().sum(), (x, s)))

    same_bits_for_thread_counts(run)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"shift must have shape \[2, 4, 5, 2\]"):
        affine_sampler.shift_sample(torch.rand(2, 1, 4, 5), torch.rand(2, 5, 4, 2))
    with pytest.raises(ValueError, match=r"images must be .* got torch.float16"):
        affine_sampler.shift_sample(torch.rand(2, 1, 4, 4).half(), torch.rand(2, 4, 4, 2))
