"""The compiled expm of the diffeomorphic affine family (vitae.transforms.affine_exp): against
scipy.linalg.expm, gradcheck in float64, agreement with torch.linalg.matrix_exp's path in values
and gradients, the exact identity, and one image's matrix independent of the rest of the batch."""

import numpy as np
import pytest
import scipy.linalg
import torch

from vitae import kernels, transforms
from vitae.transforms import affine_exp

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C++ compiler")


def scipy_expm(theta: np.ndarray) -> np.ndarray:
    return np.stack([scipy.linalg.expm(np.vstack([g.reshape(2, 3), np.zeros((1, 3))]))[:2] for g in theta])


@pytest.mark.parametrize("scale", [1e-3, 0.3, 1.0, 4.0])
def test_equals_scipy_expm(scale, monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    theta = torch.randn(40, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * scale
    expected = scipy_expm(theta.numpy())
    # scaling and squaring loses about a digit per few squarings, in scipy's expm as in this one
    np.testing.assert_allclose(affine_exp.expm(theta).numpy(), expected, rtol=1e-13 if scale <= 1 else 1e-11, atol=1e-14)
    expected32 = scipy_expm(theta.float().double().numpy())
    np.testing.assert_allclose(affine_exp.expm(theta.float()).numpy(), expected32, rtol=2e-7, atol=1e-7)


def test_gradcheck_in_float64(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    for scale in (0.2, 3.0):  # no squaring, and several
        theta = (torch.randn(6, 6, dtype=torch.float64) * scale).requires_grad_()
        assert torch.autograd.gradcheck(affine_exp.expm, (theta,))


def test_agrees_with_the_matrix_exp_path_in_values_and_gradients(monkeypatch):
    t = transforms.create("affine_diffeo")
    theta = torch.randn(30, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    weights = torch.linspace(-1, 1, 30 * 6, dtype=torch.float64).view(30, 2, 3)
    results = []
    for choice in ("compiled", "torch"):
        monkeypatch.setenv("VITAE_KERNELS", choice)
        th = theta.clone().requires_grad_()
        m = t.matrix(th)
        inverse = t.matrix(th, inverse=True)
        results.append((m.detach(), inverse.detach(), *torch.autograd.grad((m * weights).sum() + inverse.sum(), (th,))))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_zero_is_the_identity_exactly_and_a_matrix_ignores_its_batch(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(affine_exp.expm(torch.zeros(3, 6, dtype=dtype)), torch.eye(2, 3, dtype=dtype).expand(3, 2, 3))
    small = torch.randn(4, 6, generator=torch.Generator().manual_seed(2)) * 0.1
    alone = affine_exp.expm(small)
    with_a_large_one = affine_exp.expm(torch.cat([small, torch.full((1, 6), 5.0)]))[:4]
    assert torch.equal(alone, with_a_large_one)  # its own squarings, not the batch's largest


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"theta must be a \[B, 6\] float32 or float64 tensor on the CPU, got torch.float32 \[3, 5\]"):
        affine_exp.expm(torch.zeros(3, 5))
