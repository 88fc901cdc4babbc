"""DIP-VAE's covariance and penalty against numpy, and where the penalty enters the loss."""

import numpy as np
import pytest
import torch

from vitae import models
from vitae.errors import VitaeError
from vitae.models.dipvae import covariance_of_means, dip_covariance, dip_penalty
from vitae.models.distributions import DiagonalGaussian

SHAPE = (1, 28, 28)


def posterior(batch=32, d=4, seed=0):
    rng = np.random.default_rng(seed)
    mean = rng.normal(0.5, 2.0, (batch, d)) @ rng.normal(size=(d, d))  # correlated, off-centre
    var = rng.uniform(0.05, 1.5, (batch, d))
    return mean, var, DiagonalGaussian(torch.from_numpy(mean), torch.from_numpy(var))


def penalty_by_loops(c, lambda_od, lambda_d):
    d = c.shape[0]
    off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return lambda_od * off + lambda_d * sum((c[i, i] - 1) ** 2 for i in range(d))


def test_covariance_of_means_is_numpys_biased_covariance_over_the_batch():
    mean, _, q = posterior()
    np.testing.assert_allclose(covariance_of_means(q.mean).numpy(), np.cov(mean, rowvar=False, bias=True), atol=1e-10)


def test_dip_ii_adds_the_mean_posterior_variance_on_the_diagonal():
    mean, var, q = posterior()
    expected = np.cov(mean, rowvar=False, bias=True) + np.diag(var.mean(0))
    np.testing.assert_allclose(dip_covariance(q, "ii").numpy(), expected, atol=1e-10)
    np.testing.assert_allclose(dip_covariance(q, "i").numpy(), np.cov(mean, rowvar=False, bias=True), atol=1e-10)


def test_penalty_against_explicit_sums():
    c = np.random.default_rng(1).normal(size=(5, 5))
    assert dip_penalty(torch.from_numpy(c), 3.0, 7.0).item() == pytest.approx(penalty_by_loops(c, 3.0, 7.0))
    assert dip_penalty(torch.eye(5), 3.0, 7.0).item() == 0.0


@pytest.mark.parametrize("variant", ["ii", "i"])
def test_the_model_adds_the_penalty_of_its_encodings_unscaled_by_the_warm_up(variant):
    x = torch.rand(24, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    vae = models.create("vae", SHAPE).double()
    dip = models.create("dip_vae", SHAPE, lambda_od=4.0, variant=variant).double()
    dip.load_state_dict(vae.state_dict())
    torch.manual_seed(1)
    a = vae(x, kl_weight=0.2)
    torch.manual_seed(1)
    b = dip(x, kl_weight=0.2)
    q = vae.encoder(x)
    mean, var = q.mean.detach().numpy(), q.var.detach().numpy()
    c = np.cov(mean, rowvar=False, bias=True) + (np.diag(var.mean(0)) if variant == "ii" else 0)
    expected = penalty_by_loops(c, 4.0, 4.0 * {"ii": 1, "i": 10}[variant])
    assert (b.loss - a.loss).item() == pytest.approx(expected, rel=1e-9)
    assert b.regularizer.item() == pytest.approx(expected, rel=1e-9)
    torch.testing.assert_close(b.elbo, a.elbo)


def test_unknown_variant_is_a_one_line_error():
    with pytest.raises(VitaeError, match="unknown variant 'iii'"):
        models.create("dip_vae", SHAPE, variant="iii")
