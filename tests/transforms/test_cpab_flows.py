"""CPAB's compiled cell maps (vitae.transforms.cpab_flows) against cpab.flows, the tensor form of
the same closed form: values and gradients (to rounding) over field sizes that take 0 to 5
squarings and several sub-step counts; gradcheck in float64; the thread count; the identity;
bad arguments named."""

import pytest
import torch

from conftest import same_bits_for_thread_counts
from vitae import kernels
from vitae.transforms import cpab, cpab_flows

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C++ compiler")


def both(a, t, n_sub, monkeypatch):
    """(kernel, tensor form) maps and the gradient of a fixed weighted sum of both outputs."""
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(6, a.shape[1], generator=g, dtype=a.dtype) for _ in range(2)]
    results = []
    for flows in (lambda x: cpab_flows.step_maps(x, t, n_sub), lambda x: cpab.flows(x, t, (n_sub,))):
        x = a.clone().requires_grad_()
        fine, coarse = flows(x)
        grad = torch.autograd.grad((fine * weights[0]).sum() + (coarse * weights[1]).sum(), x)[0]
        results.append((fine.detach(), coarse.detach(), grad))
    return results


@pytest.mark.parametrize("scale, squarings", [(0.05, 0), (1.0, 1), (20.0, 5)])
@pytest.mark.parametrize("n_sub", [1, 4, 7])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_the_kernel_computes_the_tensor_forms_maps_and_gradients(scale, squarings, n_sub, dtype, tol, monkeypatch):
    a = torch.randn(6, 300, generator=torch.Generator().manual_seed(0), dtype=dtype) * scale
    assert cpab_flows.squarings(a, 1 / 12) == squarings
    for got, ref in zip(*both(a, 1 / 12, n_sub, monkeypatch)):
        torch.testing.assert_close(got, ref, atol=tol * float(ref.abs().max()), rtol=0)


def test_gradcheck_in_float64(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    a = (torch.randn(6, 70, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 4).requires_grad_()
    assert cpab_flows.squarings(a, 1 / 3) > 0
    assert torch.autograd.gradcheck(lambda x: cpab_flows.step_maps(x, 1 / 3, 3), (a,))
    # a gradient to one output only: the other's is None
    assert torch.autograd.gradcheck(lambda x: cpab_flows.step_maps(x, 1 / 3, 3)[1], (a,))


def test_a_zero_field_maps_every_cell_to_the_identity(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    identity = torch.tensor([1.0, 0, 0, 0, 1, 0]).view(6, 1).expand(6, 130)
    for map_ in cpab_flows.step_maps(torch.zeros(6, 130), 0.25, 4):
        assert torch.equal(map_, identity)


def test_the_thread_count_does_not_change_a_bit(monkeypatch):
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    a = torch.randn(6, 1000, generator=torch.Generator().manual_seed(3))

    def run():
        x = a.clone().requires_grad_()
        fine, coarse = cpab_flows.step_maps(x, 1 / 12, 4)
        return fine, coarse, torch.autograd.grad(fine.sum() + coarse.square().sum(), x)[0]

    same_bits_for_thread_counts(run)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"a must be a \[6, R\] float32 or float64 tensor on the CPU, got torch.float32 \[5, 3\]"):
        cpab_flows.step_maps(torch.zeros(5, 3), 0.1, 4)
    with pytest.raises(ValueError, match=r"n_sub a positive integer, got t=0.1, n_sub=0"):
        cpab_flows.step_maps(torch.zeros(6, 3), 0.1, 0)
