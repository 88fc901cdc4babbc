"""``vitae.models.dense``: oneDNN's float32 product for the networks' dense layers, against
``F.linear`` in float64 (values and every gradient), the same bits on every call, the paths that
keep torch's own, and ``Dense`` as a drop-in ``nn.Linear``."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vitae.models import dense

needs_onednn = pytest.mark.skipif(not dense.available(), reason="this torch has no oneDNN")


def reference(x, weight, bias, grad):
    """Output and gradients of ``F.linear`` in float64."""
    x64, w64 = x.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    b64 = bias.detach().double().requires_grad_() if bias is not None else None
    out = F.linear(x64, w64, b64)
    grads = torch.autograd.grad(out, [t for t in (x64, w64, b64) if t is not None], grad.double())
    return out, grads


@needs_onednn
@pytest.mark.parametrize("n, k, m, with_bias", [(64, 3000, 50, True), (7, 33, 5, False), (512, 784, 128, True),
                                                (3, 1, 4000, True)])
def test_values_and_gradients_match_float64(n, k, m, with_bias, monkeypatch):
    monkeypatch.setattr(dense, "MIN_PRODUCT", 0)  # small products too
    torch.manual_seed(0)
    x = torch.randn(n, k, requires_grad=True)
    weight = torch.randn(m, k, requires_grad=True) / k**0.5
    bias = torch.randn(m, requires_grad=True) if with_bias else None
    grad = torch.randn(n, m)
    assert dense.usable(x, weight)
    out = dense.linear(x, weight, bias)
    grads = torch.autograd.grad(out, [t for t in (x, weight, bias) if t is not None], grad)
    expected, expected_grads = reference(x, weight, bias, grad)
    assert out.dtype == torch.float32 and out.shape == (n, m)
    for got, want in zip((out, *grads), (expected, *expected_grads)):
        assert (got.double() - want).abs().max() <= 1e-5 * want.abs().max()


@needs_onednn
def test_the_same_bits_on_every_call_and_for_transposed_and_sliced_inputs():
    torch.manual_seed(1)  # 64 x 500 x 200: 6.4 M multiply-adds, over MIN_PRODUCT
    x, weight, bias = torch.randn(64, 500), torch.randn(200, 500), torch.randn(200)
    first = dense.linear(x, weight, bias)
    assert torch.equal(first, dense.linear(x, weight, bias))  # deterministic: exact resume holds
    assert torch.equal(dense.linear(x.t().contiguous().t(), weight, bias), first)  # column-major x
    wide = torch.randn(64, 1000)
    wide[:, ::2] = x
    sliced = dense.linear(wide[:, ::2], weight, bias)  # a strided view is copied, not misread
    assert (sliced - first).abs().max() <= 1e-5 * first.abs().max()
    batched = dense.linear(x.view(4, 16, 500), weight, bias)  # leading dimensions, as F.linear
    assert batched.shape == (4, 16, 200) and torch.equal(batched.reshape(64, 200), first)


@needs_onednn
def test_an_expanded_gradient_and_frozen_parts(monkeypatch):
    monkeypatch.setattr(dense, "MIN_PRODUCT", 0)
    torch.manual_seed(2)
    x = torch.randn(16, 40, requires_grad=True)
    weight = torch.randn(30, 40)  # frozen
    bias = torch.randn(30, requires_grad=True)
    dense.linear(x, weight, bias).sum().backward()  # the gradient of a sum: one value, expanded
    assert torch.allclose(x.grad, weight.sum(0).expand(16, 40), rtol=1e-5, atol=1e-5)
    assert torch.equal(bias.grad, torch.full((30,), 16.0)) and weight.grad is None


def test_other_paths_keep_torchs_own_bit_for_bit(monkeypatch):
    torch.manual_seed(3)
    x, weight, bias = torch.randn(8, 20), torch.randn(6, 20), torch.randn(6)
    plain = F.linear(x, weight, bias)
    assert not dense.usable(x, weight)  # 960 multiply-adds: below MIN_PRODUCT, torch's
    assert torch.equal(dense.linear(x, weight, bias), plain)
    monkeypatch.setattr(dense, "MIN_PRODUCT", 0)  # what follows would take oneDNN but for its reason
    assert dense.usable(x, weight) == dense.available()
    assert not dense.usable(x.double(), weight.double())
    assert torch.equal(dense.linear(x.double(), weight.double(), bias.double()), F.linear(x.double(), weight.double(), bias.double()))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # amp: torch's bfloat16 product (oneDNN's already)
        assert not dense.usable(x, weight)
        assert dense.linear(x, weight, bias).dtype == torch.bfloat16
    monkeypatch.setenv("VITAE_KERNELS", "torch")
    assert not dense.usable(x, weight) and torch.equal(dense.linear(x, weight, bias), plain)
    monkeypatch.delenv("VITAE_KERNELS")
    monkeypatch.setattr(dense, "ONEDNN", False)
    assert torch.equal(dense.linear(x, weight, bias), plain)


def test_dense_is_a_linear_with_its_parameters_and_checkpoints():
    torch.manual_seed(4)
    linear = nn.Linear(12, 5)
    torch.manual_seed(4)
    layer = dense.Dense(12, 5)
    assert isinstance(layer, nn.Linear)
    assert layer.state_dict().keys() == linear.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(layer.state_dict().values(), linear.state_dict().values()))
    x = torch.randn(3, 12)
    assert torch.allclose(layer(x), linear(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("weight_shape, bias_shape", [((300, 401), (300,)), ((300, 400), (299,)), ((300, 400, 1), (300,))])
def test_operands_that_do_not_fit_get_torchs_error(weight_shape, bias_shape):
    x = torch.randn(512, 400)  # 61 M multiply-adds, large enough for oneDNN: the check comes first
    with pytest.raises(RuntimeError):
        dense.linear(x, torch.randn(*weight_shape), torch.randn(*bias_shape))
