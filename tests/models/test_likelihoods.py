"""The Gaussian likelihood against torch.distributions, its learned variance through a VITAE
warp, and bad likelihood names and options."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from vitae import models
from vitae.errors import VitaeError
from vitae.models import likelihoods

SHAPE = (1, 28, 28)


def test_fixed_variance_log_prob_matches_torch_distributions():
    x, mean = torch.rand(3, 2, 5, 4, dtype=torch.float64), torch.randn(3, 2, 5, 4, dtype=torch.float64)
    gaussian = likelihoods.create("gaussian", variance=0.1)
    expected = Normal(mean, math.sqrt(0.1)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gaussian.log_prob(x, gaussian.params(mean)), expected)
    assert gaussian.out_channels(2) == 2  # a constant variance is no parameter image


def test_learned_variance_log_prob_matches_torch_distributions():
    gaussian = likelihoods.create("gaussian", learned=True, min_variance=1e-3, mean="sigmoid")
    assert gaussian.out_channels(3) == 6
    x, output = torch.rand(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 6, 4, 4, dtype=torch.float64)
    params = gaussian.params(output)
    mean, var = torch.sigmoid(output[:, :3]), F.softplus(output[:, 3:]) + 1e-3
    torch.testing.assert_close(gaussian.mean(params), mean)
    torch.testing.assert_close(gaussian.log_prob(x, params), Normal(mean, var.sqrt()).log_prob(x).flatten(1).sum(1))


def test_mean_activation():
    output = torch.tensor([[[[-3.0, 0.0, 5.0]]]])
    torch.testing.assert_close(likelihoods.create("gaussian").mean(likelihoods.create("gaussian").params(output)), output)
    squashed = likelihoods.create("gaussian", mean="sigmoid").params(output)
    torch.testing.assert_close(squashed, torch.sigmoid(output))


def test_vitae_warps_the_variance_with_the_mean_and_zero_padding_reads_as_the_floor():
    model = models.create("cvitae", SHAPE, likelihood="gaussian", likelihood_options={"learned": True, "min_variance": 0.01})
    with torch.no_grad():  # a large shift: much of the warped image comes from outside
        model.perspective_decoder.net[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.9, 0.0, 0.0, 0.0]))
    z = {"z_A": torch.randn(4, 2), "z_P": torch.randn(4, 2)}
    canonical = model.canonical(z["z_A"])  # [4, 2, 28, 28]: mean, excess variance
    gamma = model.perspective_decoder(z["z_P"])
    params = model.decode_params(z)
    torch.testing.assert_close(params, model.transform.warp(canonical, gamma))
    outside = params[:, 1] == 0
    assert outside.any()  # the excess variance is padded with zeros there ...
    x = torch.rand(4, *SHAPE)
    var = params[:, 1:] + 0.01  # ... which score as the floor, not as a variance of zero
    expected = Normal(params[:, :1], var.sqrt()).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(model.likelihood.log_prob(x, params), expected)
    assert torch.isfinite(model(x).loss)


def test_bad_names_and_options_are_one_line_errors():
    with pytest.raises(VitaeError, match="unknown likelihood 'laplace'"):
        likelihoods.create("laplace")
    with pytest.raises(VitaeError, match="unknown mean activation 'relu'"):
        likelihoods.create("gaussian", mean="relu")
    with pytest.raises(VitaeError, match="must be positive"):
        likelihoods.create("gaussian", variance=0.0)
    for eps in (0.0, -1e-6, 0.5, "1e-6"):
        with pytest.raises(VitaeError, match=r"bernoulli likelihood: eps must be a number in \(0, 0.5\)"):
            likelihoods.create("bernoulli", eps=eps)
    with pytest.raises(VitaeError, match="does not take these options"):
        models.create("vae", SHAPE, likelihood="gaussian", likelihood_options={"sigma": 0.1})


def test_fixed_variance_log_prob_gradient():
    gaussian = likelihoods.create("gaussian", variance=0.1)
    x = torch.rand(3, 1, 4, 5, dtype=torch.float64)
    mean = torch.rand(3, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: gaussian.log_prob(x, m), (mean,))


def test_bernoulli_from_logits_equals_the_clamped_mean_formula():
    bernoulli = likelihoods.create("bernoulli")
    torch.manual_seed(0)
    x = torch.rand(6, 1, 7, 7, dtype=torch.float64)
    logits = torch.randn(6, 1, 7, 7, dtype=torch.float64) * 8  # many beyond the clamp (|l| > 13.8)
    logits[0, 0, 0, :3] = torch.tensor([30.0, -30.0, 0.0])
    expected = bernoulli.log_prob(x, bernoulli.params(logits))
    torch.testing.assert_close(bernoulli.log_prob_output(x, logits), expected, rtol=1e-9, atol=1e-9)


def test_bernoulli_from_the_mean_equals_the_density_written_out_and_its_gradient():
    """Against x log p + (1 - x) log(1 - p) with p = clamp(mean, eps, 1 - eps) written out in
    float64; gradcheck in both inputs; a clamped pixel passes no gradient back."""
    bernoulli = likelihoods.create("bernoulli")
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 1, 5, 5, dtype=torch.float64, generator=g)
    mean = torch.rand(4, 1, 5, 5, dtype=torch.float64, generator=g) * 0.98 + 0.01
    mean[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # a warp's zeros, and a saturated pixel: clamped
    p = mean.clamp(1e-6, 1 - 1e-6)
    written = (x * p.log() + (1 - x) * (1 - p).log()).sum(dim=(1, 2, 3))
    torch.testing.assert_close(bernoulli.log_prob(x, mean), written, rtol=1e-12, atol=1e-12)
    x.requires_grad_()
    inside = mean.clone().requires_grad_()
    inside.data[0, 0, 0, :2] = 0.5  # gradcheck's finite differences need a point off the clamp's edge
    assert torch.autograd.gradcheck(lambda a, b: bernoulli.log_prob(a, b), (x, inside))
    clamped = mean.clone().requires_grad_()
    bernoulli.log_prob(x, clamped).sum().backward()
    assert torch.equal(clamped.grad[0, 0, 0, :2], torch.zeros(2, dtype=torch.float64))
    assert clamped.grad[1:].abs().min() > 0


def test_bernoulli_from_the_mean_gradient_keeps_float32_accuracy_near_one():
    """Bright pixels put the mean near 1, where 1 - p is tiny: the float32 gradient must stay
    within float32 rounding of the float64 one, up to a few eps of the clamp."""
    bernoulli = likelihoods.create("bernoulli")
    x = torch.tensor([255 / 256, 1.0, 0.5, 254 / 256, 0.0]).view(1, 1, 1, 5)
    for p in (0.99, 0.9999, 0.999998, 1e-5):  # the last two within a few eps = 1e-6 of the clamp
        mean = torch.full_like(x, p, requires_grad=True)
        bernoulli.log_prob(x, mean).sum().backward()
        m = mean.detach().double()
        expected = (x.double() - m) / (m * (1 - m))
        assert ((mean.grad.double() - expected).abs() / expected.abs()).max() < 1e-6, p


def test_bernoulli_from_logits_gradient():
    bernoulli = likelihoods.create("bernoulli")
    torch.manual_seed(1)
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    logits = (torch.randn(3, 1, 4, 4, dtype=torch.float64) * 6)
    logits[0, 0, 0, 0] = 25.0  # clamped: no gradient through it
    logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: bernoulli.log_prob_output(a, b), (x, logits))
    bernoulli.log_prob_output(x, logits).sum().backward()
    assert logits.grad[0, 0, 0, 0] == 0


@pytest.mark.parametrize("mean", ["linear", "sigmoid"])
def test_fixed_variance_gaussian_equals_the_density_written_out(mean):
    """The fused squared error against the log density written out pixel by pixel in float64,
    from the raw output and from the mean image; and its gradients to both inputs."""
    gaussian = likelihoods.create("gaussian", variance=0.1, mean=mean)
    torch.manual_seed(2)
    x = torch.rand(4, 2, 3, 5, dtype=torch.float64)
    output = torch.randn(4, 2, 3, 5, dtype=torch.float64) * 2
    mu = torch.sigmoid(output) if mean == "sigmoid" else output
    written = (-0.5 * ((x - mu) ** 2 / 0.1 + math.log(0.1) + math.log(2 * math.pi))).sum((1, 2, 3))
    torch.testing.assert_close(gaussian.log_prob_output(x, output), written, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gaussian.log_prob(x, mu), written, rtol=1e-12, atol=1e-12)
    x.requires_grad_()
    output.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: gaussian.log_prob_output(a, b), (x, output))
    assert torch.autograd.gradcheck(lambda a, b: gaussian.log_prob(a, b), (x, output))
