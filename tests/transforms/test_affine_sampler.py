"""The compiled affine sampler (vitae.transforms.affine_sampler): values against bilinear
interpolation written out in numpy, agreement with the F.grid_sample path in values and both
gradients, gradcheck in float64, the bit-exact identity, independence of the thread count, and the
choice of path (VITAE_KERNELS, a missing compiler, an unwritable cache, builds racing)."""

import numpy as np
import pytest
import torch

from conftest import same_bits_for_thread_counts
from vitae import kernels, transforms
from vitae.transforms import affine_sampler, base

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C++ compiler")


def bilinear_numpy(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    """warp of one [C, H, W] image by one 2x3 matrix, pixel by pixel: the output pixel (i, j)
    reads the input at [A | b] (x, y, 1), bilinear, zeros outside (align_corners=False)."""
    c, h, w = image.shape
    out = np.zeros_like(image)
    for i in range(h):
        for j in range(w):
            x, y = (2 * j + 1) / w - 1, (2 * i + 1) / h - 1
            sx, sy = m[0] @ (x, y, 1), m[1] @ (x, y, 1)
            u, v = ((sx + 1) * w - 1) / 2, ((sy + 1) * h - 1) / 2  # pixel units
            u0, v0 = int(np.floor(u)), int(np.floor(v))
            for dv in (0, 1):
                for du in (0, 1):
                    weight = (u - u0 if du else 1 - (u - u0)) * (v - v0 if dv else 1 - (v - v0))
                    if 0 <= u0 + du < w and 0 <= v0 + dv < h:
                        out[:, i, j] += weight * image[:, v0 + dv, u0 + du]
    return out


def both_paths(images, m, monkeypatch):
    """(compiled, F.grid_sample) outputs and gradients of a fixed weighted sum."""
    results = []
    for choice in ("compiled", "torch"):
        monkeypatch.setenv("VITAE_KERNELS", choice)
        x, mm = images.clone().requires_grad_(), m.clone().requires_grad_()
        out = base.warp_affine(x, mm)
        weights = torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out)
        grads = torch.autograd.grad((out * weights).sum(), (x, mm))
        results.append((out.detach(), *grads))
    return results


def random_matrix(batch, dtype, scale=0.3, seed=0):
    theta = torch.randn(batch, 6, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale
    return transforms.create("affine").matrix(theta)


def test_values_equal_bilinear_interpolation_written_out_in_numpy(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    images = torch.rand(3, 2, 9, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    m = random_matrix(3, torch.float64, scale=0.4)
    m[2, :, 2] += torch.tensor([0.9, -1.3], dtype=torch.float64)  # mostly outside the frame
    out = base.warp_affine(images, m)
    for b in range(3):
        np.testing.assert_allclose(out[b].numpy(), bilinear_numpy(images[b].numpy(), m[b].numpy()), atol=1e-12)
    assert out[2].abs().sum() > 0 and (out[2] == 0).sum() > 0  # partly outside: zeros and values


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (3, 3, 17, 12), (2, 1, 400, 200), (2, 2, 1, 7), (300, 1, 5, 4)])
def test_agrees_with_grid_sample_in_values_and_both_gradients(shape, monkeypatch):
    images = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    m = random_matrix(shape[0], torch.float64)
    (out, gx, gm), (ref, rgx, rgm) = both_paths(images, m, monkeypatch)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(gx, rgx, atol=1e-11, rtol=0)
    torch.testing.assert_close(gm, rgm, atol=1e-9, rtol=1e-10)
    assert gm.abs().max() > 0 and gx.abs().max() > 0


def test_float32_and_channels_last_agree_with_grid_sample(monkeypatch):
    images = torch.rand(4, 3, 20, 24, generator=torch.Generator().manual_seed(3)).to(memory_format=torch.channels_last)
    m = random_matrix(4, torch.float32)
    (out, gx, gm), (ref, rgx, rgm) = both_paths(images, m, monkeypatch)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(gx, rgx, atol=1e-4, rtol=0)
    torch.testing.assert_close(gm, rgm, atol=1e-3, rtol=1e-4)
    plain = both_paths(images.contiguous(), m, monkeypatch)[0]
    for a, b in zip((out, gx, gm), plain):
        assert torch.equal(a, b)  # the layout changes where numbers live, not the numbers


def test_gradcheck_in_float64(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    images = torch.rand(3, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    m = random_matrix(3, torch.float64, scale=0.2).requires_grad_()
    assert torch.autograd.gradcheck(affine_sampler.affine_sample, (images, m), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_copies_every_pixel_bit_for_bit(dtype, monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    for shape in [(4, 1, 28, 28), (2, 3, 17, 30), (2, 1, 400, 200), (1, 1, 1, 1)]:
        images = torch.randn(shape, dtype=dtype)
        eye = torch.eye(2, 3, dtype=dtype).expand(shape[0], 2, 3)
        assert torch.equal(affine_sampler.affine_sample(images, eye), images)
        cl = images.to(memory_format=torch.channels_last)
        assert torch.equal(affine_sampler.affine_sample(cl, eye), images)


def test_the_thread_count_does_not_change_a_bit(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    images = torch.rand(7, 2, 30, 20)
    m = random_matrix(7, torch.float32)

    def run():
        x, mm = images.clone().requires_grad_(), m.clone().requires_grad_()
        out = affine_sampler.affine_sample(x, mm)
        return (out, *torch.autograd.grad(out.square().sum(), (x, mm)))

    same_bits_for_thread_counts(run)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"matrix must have shape \[2, 2, 3\]"):
        affine_sampler.affine_sample(torch.rand(2, 1, 4, 4), torch.rand(3, 2, 3))
    with pytest.raises(ValueError, match=r"images must be a \[B, C, H, W\] float32 or float64 tensor on the CPU, got torch.float16"):
        affine_sampler.affine_sample(torch.rand(2, 1, 4, 4).half(), torch.rand(2, 2, 3))
    with pytest.raises(ValueError, match=r"images must be .* got torch.float32 \[2, 4, 4\] on cpu"):
        affine_sampler.affine_sample(torch.rand(2, 4, 4), torch.rand(2, 2, 3))
