"""The models' shared interface: the ELBO and its terms against independent formulas, the
architecture of supplement Table 1, C-VITAE's un-warped appearance input, and the importance
weights behind log p(x)."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vitae import models
from vitae.errors import VitaeError
from vitae.metrics.log_likelihood import iw_log_px
from vitae.models.distributions import DiagonalGaussian
from vitae.models.likelihoods import Bernoulli

SHAPE = (1, 28, 28)
NAMES = ["vae", "beta_vae", "uvitae", "cvitae"]


def images(n=16, seed=0):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def test_diagonal_gaussian_matches_torch_distributions():
    mean, var = torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64) + 0.1
    q, ref = DiagonalGaussian(mean, var), Normal(mean, var.sqrt())
    z = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(q.log_prob(z), ref.log_prob(z).sum(-1))
    standard = Normal(torch.zeros_like(mean), torch.ones_like(var))
    torch.testing.assert_close(q.kl_to_standard_normal(), kl_divergence(ref, standard).sum(-1))


def test_bernoulli_log_prob_by_hand():
    x = torch.tensor([[0.0, 1.0, 0.25]]).view(1, 1, 1, 3)
    p = torch.tensor([[0.5, 0.9, 0.2]]).view(1, 1, 1, 3)
    expected = math.log(0.5) + math.log(0.9) + 0.25 * math.log(0.2) + 0.75 * math.log(0.8)
    assert Bernoulli().log_prob(x, p).item() == pytest.approx(expected, rel=1e-6)
    # a mean of exactly 0 under a bright pixel is clamped, not -inf
    assert torch.isfinite(Bernoulli().log_prob(torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))).all()


def test_table1_architecture():
    vae = models.create("vae", SHAPE)
    sizes = [layer.out_features for layer in vae.encoder.mean_net if isinstance(layer, torch.nn.Linear)]
    assert sizes == [128, 64, 4]
    assert [m.out_features for m in vae.decoder.net if isinstance(m, torch.nn.Linear)] == [64, 64, 784]
    assert isinstance(vae.encoder.mean_net[1], torch.nn.LeakyReLU) and vae.encoder.mean_net[1].negative_slope == 0.1
    vitae = models.create("cvitae", SHAPE)
    assert [m.out_features for m in vitae.appearance_encoder.var_net if isinstance(m, torch.nn.Linear)] == [64, 32, 2]
    assert vitae.latent_dims == {"z_A": 2, "z_P": 2}
    n_vae = sum(p.numel() for p in vae.parameters())
    n_vitae = sum(p.numel() for p in vitae.parameters())
    assert 0.75 < n_vitae / n_vae < 1.0  # "about half the neurons" per network, similar total size


@pytest.mark.parametrize("name", NAMES)
def test_forward_terms_add_up(name):
    model = models.create(name, SHAPE)
    x = images()
    torch.manual_seed(1)
    out = model(x, kl_weight=0.3)
    kl_total = sum(out.kl.values())
    torch.testing.assert_close(out.elbo, out.recon - kl_total)
    torch.testing.assert_close(out.loss, -(out.recon - 0.3 * model.beta * kl_total).mean())
    assert set(out.kl) == set(model.latent_dims)
    assert all((v >= 0).all() for v in out.kl.values())


@pytest.mark.parametrize("name", NAMES)
def test_interface_shapes(name):
    model = models.create(name, SHAPE)
    x = images(5)
    d = sum(model.latent_dims.values())
    assert model.representation(x).shape == (5, d)
    assert model.reconstruct(x).shape == x.shape
    assert model.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, *SHAPE)
    assert model.log_weights(x, 7).shape == (7, 5)
    decoded = model.decode({k: torch.zeros(2, v) for k, v in model.latent_dims.items()})
    assert decoded.shape == (2, *SHAPE) and ((decoded >= 0) & (decoded <= 1)).all()


def test_beta_weights_only_the_loss():
    x = images().double()
    vae, beta = models.create("vae", SHAPE).double(), models.create("beta_vae", SHAPE, beta=4.0).double()
    beta.load_state_dict(vae.state_dict())
    torch.manual_seed(2)
    a = vae(x)
    torch.manual_seed(2)
    b = beta(x)
    torch.testing.assert_close(a.elbo, b.elbo)
    torch.testing.assert_close(b.loss - a.loss, 3.0 * sum(a.kl.values()).mean())


def with_perspective_offset(model):
    """Make g_P output a clearly non-identity gamma (a rotation + shift) whatever z_P is."""
    with torch.no_grad():
        model.perspective_decoder.net[-1].bias.copy_(torch.tensor([0.0, -0.4, 0.2, 0.4, 0.0, -0.1]))
    return model


def test_cvitae_encodes_appearance_from_the_unwarped_image():
    model = with_perspective_offset(models.create("cvitae", SHAPE)).eval()
    x = images(6)
    q_p = model.perspective_encoder(x)
    gamma = model.perspective_decoder(q_p.mean)
    unwarped = model.transform.warp(x, gamma, inverse=True)
    expected = model.appearance_encoder(unwarped).mean
    torch.testing.assert_close(model.encode(x)["z_A"].mean, expected)
    torch.testing.assert_close(model.representation(x)[:, :2], expected)
    assert not torch.allclose(expected, model.appearance_encoder(x).mean, atol=1e-3)


def test_uvitae_encodes_appearance_from_the_raw_image():
    model = with_perspective_offset(models.create("uvitae", SHAPE)).eval()
    x = images(6)
    torch.testing.assert_close(model.encode(x)["z_A"].mean, model.appearance_encoder(x).mean)


def test_vitae_decodes_the_canonical_image_warped_by_gamma():
    model = with_perspective_offset(models.create("cvitae", SHAPE))
    z = {"z_A": torch.randn(4, 2), "z_P": torch.randn(4, 2)}
    gamma = model.perspective_decoder(z["z_P"])
    expected = model.transform.warp(model.canonical(z["z_A"]), gamma)
    torch.testing.assert_close(model.decode(z), expected)


def test_perspective_decoder_starts_near_the_identity():
    model = models.create("cvitae", SHAPE)
    gamma = model.perspective_decoder(torch.randn(100, 2))
    assert gamma.abs().max() < 0.05


@pytest.mark.parametrize("transform", ["affine", "affine_decomp", "affine_diffeo"])
def test_vitae_takes_every_transformation(transform):
    model = models.create("cvitae", SHAPE, transform=transform)
    assert model.transform.name == transform
    out = model(images(4))
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["vae", "cvitae"])
def test_single_importance_sample_is_an_unbiased_elbo(name):
    """E[log w] over z ~ q equals the closed-form ELBO: compare the mean of many K=1 estimates
    with the analytic ELBO, within 4 standard errors."""
    model = models.create(name, SHAPE).double()
    x = images(4).double()
    with torch.no_grad():
        log_w = model.log_weights(x, 4000)  # [4000, 4]
        elbo = torch.stack([model(x).elbo for _ in range(200)]).mean(0)  # reparam noise in recon only
    stderr = log_w.std(0) / math.sqrt(log_w.shape[0])
    assert ((log_w.mean(0) - elbo).abs() < 4 * stderr + 0.05).all()


def test_iw_log_px_with_one_sample_is_the_log_weight():
    model = models.create("cvitae", SHAPE)
    x = images(5)
    torch.manual_seed(3)
    a = iw_log_px(model, x, 1)
    torch.manual_seed(3)
    b = model.log_weights(x, 1)[0]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["vae", "cvitae"])
def test_iw_bound_does_not_decrease_with_more_samples(name):
    model = models.create(name, SHAPE).double()
    x = images(8).double()
    means = []
    for k in (1, 10, 100):
        torch.manual_seed(4)
        means.append(torch.stack([iw_log_px(model, x, k) for _ in range(20)]).mean().item())
    assert means[0] < means[1] < means[2]


def test_iw_log_px_chunking_matches_one_pass():
    """The running log-sum-exp over sample chunks equals the log-mean-exp of all weights."""
    model = models.create("vae", SHAPE).double()
    x = images(3).double()
    torch.manual_seed(5)
    chunked = iw_log_px(model, x, 50, max_batch=30)  # 10 samples per chunk
    torch.manual_seed(5)
    weights = torch.cat([model.log_weights(x, 10) for _ in range(5)])
    expected = torch.logsumexp(weights, 0) - np.log(50)
    torch.testing.assert_close(chunked, expected)


def test_unknown_names_are_one_line_errors():
    with pytest.raises(VitaeError, match="unknown model 'vea'"):
        models.create("vea", SHAPE)
    with pytest.raises(VitaeError, match="unknown architecture"):
        models.create("vae", SHAPE, architecture="resnet")
    with pytest.raises(VitaeError, match="unknown likelihood"):
        models.create("vae", SHAPE, likelihood="poisson")
    with pytest.raises(VitaeError, match=r"expects images of shape \(1, 28, 28\).*fit: auto \(here mlp\), conv, mlp$"):
        models.create("vae", (3, 32, 32), architecture="mnist_mlp")
    with pytest.raises(VitaeError, match="unknown transformation"):
        models.create("cvitae", SHAPE, transform="rigid")


def test_log_px_chunks_shrink_with_the_image_size():
    """The default chunk holds a fixed number of pixel values, so large images never take more memory."""
    from vitae.metrics.log_likelihood import PIXELS_PER_CHUNK, chunk_images

    assert chunk_images(torch.zeros(3, 1, 28, 28), None) == PIXELS_PER_CHUNK // 784
    assert chunk_images(torch.zeros(3, 1, 100, 50), None) * 5000 <= PIXELS_PER_CHUNK
    assert chunk_images(torch.zeros(3, 1, 400, 200), None) == PIXELS_PER_CHUNK // 80_000
    assert chunk_images(torch.zeros(3, 1, 28, 28), 30) == 30


@pytest.mark.parametrize("name", [*NAMES, "beta_tcvae", "dip_vae"])
def test_log_weights_encode_once_yet_equal_the_weights_of_repeated_images(name):
    """Encoding each image once and repeating its posterior gives, for the same noise, the
    importance weights of the definition: the whole inference run on K copies of every image."""
    from vitae.models.distributions import standard_normal_log_prob

    model = models.create(name, SHAPE, dataset_size=1000).eval()
    x, k = images(6), 5
    torch.manual_seed(3)
    fast = model.log_weights(x, k)
    torch.manual_seed(3)
    repeated = x.repeat(k, 1, 1, 1)
    inference = model.infer(repeated, sample=True)
    reference = model.likelihood.log_prob(repeated, inference.params)
    for group, q in inference.posteriors.items():
        reference = reference + standard_normal_log_prob(inference.z[group]) - q.log_prob(inference.z[group])
    torch.testing.assert_close(fast, reference.view(k, 6), rtol=1e-5, atol=1e-3)
