"""The conv decoders' transposed convolution in its sub-pixel form (vitae.models.doubling_conv):
the same function as nn.ConvTranspose2d in float64, values and all three gradients, for the
kernels the decoders use; taken under bfloat16 autocast only; checkpoints unchanged."""

import pytest
import torch
import torch.nn.functional as F

from vitae.models import networks
from vitae.models.doubling_conv import DoublingConv, phase_taps


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_subpixel_form_is_the_transposed_convolution(kernel, layout):
    torch.manual_seed(0)
    conv = DoublingConv(4, 3, kernel).double()
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64).contiguous(memory_format=layout)
    weights = torch.randn(2, 3, 12, 10, dtype=torch.float64)
    results = []
    for form in (lambda t: F.conv_transpose2d(t, conv.weight, conv.bias, stride=2, padding=kernel // 2, output_padding=1),
                 conv.subpixel):
        conv.zero_grad()
        xs = x.clone().requires_grad_()
        y = form(xs)
        (y * weights).sum().backward()
        results.append((y.detach(), xs.grad, conv.weight.grad.clone(), conv.bias.grad.clone()))
    assert results[0][0].shape == (2, 3, 12, 10)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_taken_under_bfloat16_autocast_only(monkeypatch):
    torch.manual_seed(1)
    conv = DoublingConv(5, 2, 5)
    x = torch.randn(3, 5, 8, 8)
    calls = []
    real = DoublingConv.subpixel
    monkeypatch.setattr(DoublingConv, "subpixel", lambda self, t: calls.append(1) or real(self, t))
    plain = conv(x)
    assert not calls
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = conv(x.bfloat16())
    assert calls and fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), plain, rtol=0.05, atol=0.05)  # bfloat16's 8 bits


def test_taps_per_phase_and_kernels_without_the_form():
    # k = 5, padding 2: phase 0 takes taps 4, 2, 0 at offsets -1, 0, 1; phase 1 taps 3, 1 at 0, 1
    assert phase_taps(5).tolist() == [[4, 2, 0], [5, 3, 1]]
    assert phase_taps(3).tolist() == [[3, 1, 3], [3, 2, 0]]
    assert phase_taps(7) is None  # offsets reach -2 .. 2: the transposed convolution throughout
    conv = DoublingConv(2, 2, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(torch.randn(1, 2, 4, 4)).shape == (1, 2, 8, 8)


def test_the_decoders_state_dict_keeps_its_keys():
    decoder = networks.ConvDecoder(4, (3, 64, 64), [(40, 3), (20, 3), (10, 5), (3, 5)])
    assert sum(isinstance(m, DoublingConv) for m in decoder.net) == 4
    # the keys and shapes of the decoder's nn.ConvTranspose2d layers before DoublingConv
    before = torch.nn.Sequential(*[m for layer in [(40, 40, 3), (40, 20, 3), (20, 10, 5), (10, 3, 5)]
                                   for m in (torch.nn.ConvTranspose2d(*layer[:2], layer[2], stride=2, padding=layer[2] // 2,
                                                                      output_padding=1), torch.nn.LeakyReLU(0.1))][:-1])
    state = {f"net.{k}": v for k, v in before.state_dict().items()}
    state.update({f"dense.{k}": v for k, v in decoder.dense.state_dict().items()})
    decoder.load_state_dict(state, strict=True)  # an older checkpoint loads as it was
    assert torch.equal(decoder.net[6].weight, before[6].weight)
