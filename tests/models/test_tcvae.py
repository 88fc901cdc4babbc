"""beta-TCVAE's minibatch estimators of the aggregate posterior against brute force: on a small
data set ``q(z) = 1/N sum_n q(z | x_n)`` is computed exactly over all N points (scipy, float64),
so the estimators' relation to it can be checked, and the model's loss against its definition."""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm

from vitae import models
from vitae.errors import VitaeError
from vitae.models.distributions import DiagonalGaussian, standard_normal_log_prob
from vitae.models.tcvae import WeightedMixtureLogDensity, log_aggregate_posterior, mss_log_weights, mws_log_weights

N, D = 40, 3
SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def data_set():
    """Posteriors of N images (means spread over the prior, variances 0.1 to 0.6) and one sample
    ``z_i ~ q(z | x_i)`` each; and the exact ``log q(z_i)``, ``sum_d log q(z_id)`` over all N."""
    rng = np.random.default_rng(0)
    mean = rng.normal(0, 1, (N, D))
    var = rng.uniform(0.1, 0.6, (N, D))
    z = mean + np.sqrt(var) * rng.normal(size=(N, D))
    log_density = norm.logpdf(z[:, None, :], loc=mean[None], scale=np.sqrt(var)[None])  # [i, n, d]
    log_qz = logsumexp(log_density.sum(-1), axis=1) - math.log(N)
    log_marginals = (logsumexp(log_density, axis=1) - math.log(N)).sum(-1)
    return mean, var, z, log_qz, log_marginals


def estimate(data_set, rows, estimator):
    """The estimator on the batch of the given rows of the data set (N = the data set's size)."""
    mean, var, z, *_ = data_set
    t = lambda a: torch.from_numpy(a[rows])  # noqa: E731
    log_qz, log_marginals = log_aggregate_posterior(t(z), DiagonalGaussian(t(mean), t(var)), N, estimator)
    return log_qz.numpy(), log_marginals.numpy()


@pytest.mark.parametrize("batch", [2, 3, 17, 64])
def test_every_row_of_the_mss_weight_matrix_sums_to_one(batch):
    w = mss_log_weights(batch, 1000).exp()
    torch.testing.assert_close(w.sum(1), torch.ones(batch, dtype=w.dtype))
    # the image a sample was drawn from has weight 1/N: the diagonal, not a column
    torch.testing.assert_close(torch.diagonal(w), torch.full((batch,), 1 / 1000, dtype=w.dtype))
    m = batch - 1
    assert ((w - (1000 - m) / (1000 * m)).abs() < 1e-12).sum(1).tolist() == [1] * batch


def test_mws_is_the_brute_force_lowered_by_log_n_when_the_batch_is_the_data_set(data_set):
    """MWS weights each of the B N terms 1 / (B N): at B = N it is exactly the brute force minus
    log N (log q(z)) and minus D log N (the marginals), so TC is off by the constant (D-1) log N."""
    *_, log_qz, log_marginals = data_set
    est_qz, est_marginals = estimate(data_set, np.arange(N), "mws")
    np.testing.assert_allclose(est_qz, log_qz - math.log(N), atol=1e-9)
    np.testing.assert_allclose(est_marginals, log_marginals - D * math.log(N), atol=1e-9)
    np.testing.assert_allclose(est_qz - est_marginals, (log_qz - log_marginals) + (D - 1) * math.log(N), atol=1e-9)


def test_mws_matches_its_formula_on_a_minibatch(data_set):
    """log q(z_i) = logsumexp_j log q(z_i | x_j) - log(B N), computed here with scipy."""
    mean, var, z, *_ = data_set
    rows = np.array([3, 17, 5, 29, 11])
    log_density = norm.logpdf(z[rows][:, None], loc=mean[rows][None], scale=np.sqrt(var[rows])[None])
    est_qz, est_marginals = estimate(data_set, rows, "mws")
    np.testing.assert_allclose(est_qz, logsumexp(log_density.sum(-1), axis=1) - math.log(5 * N), atol=1e-9)
    np.testing.assert_allclose(est_marginals, (logsumexp(log_density, axis=1) - math.log(5 * N)).sum(-1), atol=1e-9)


def test_mss_converges_to_the_brute_force_as_the_batch_grows(data_set):
    *_, log_qz, log_marginals = data_set
    rng = np.random.default_rng(1)
    errors = []
    for batch in (4, 10, N):
        err = []
        for _ in range(30):
            rows = rng.permutation(N)[:batch]
            est_qz, est_marginals = estimate(data_set, rows, "mss")
            err.append(np.abs(est_qz - log_qz[rows]).mean() + np.abs(est_marginals - log_marginals[rows]).mean())
        errors.append(np.mean(err))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.1  # at B = N only the unequal weights 1/(N-1) vs 1/N remain


def test_mss_is_unbiased_for_q_z_over_random_batches(data_set):
    """For a fixed image i and random batches around it, the mean of the estimate of q(z_i)
    (before the log) is the exact q(z_i): the weights are importance weights. The reference
    code's matrix (1/N in the first column) fails this by a factor of about N/B."""
    *_, log_qz, _ = data_set
    rng = np.random.default_rng(2)
    for i in (0, 7, 23):
        draws = []
        for _ in range(3000):
            others = rng.choice(np.delete(np.arange(N), i), size=7, replace=False)
            rows = np.insert(others, rng.integers(0, 8), i)  # i at a random place in the batch
            est_qz, _ = estimate(data_set, rows, "mss")
            draws.append(np.exp(est_qz[rows.tolist().index(i)]))
        assert np.mean(draws) == pytest.approx(np.exp(log_qz[i]), rel=0.05)


@pytest.mark.parametrize("weights", [mws_log_weights, mss_log_weights])
def test_hand_written_backward_passes_gradcheck(weights):
    """The estimator's backward against finite differences (float64), for both weight matrices
    and incoming gradients on both outputs."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mean = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    var = (torch.rand(6, 3, generator=g, dtype=torch.float64) + 0.2).requires_grad_()
    log_w = weights(6, 50)
    assert torch.autograd.gradcheck(lambda *args: WeightedMixtureLogDensity.apply(*args, log_w), (z, mean, var))


def test_weights_of_a_single_image_batch_are_finite():
    assert torch.isfinite(mss_log_weights(1, 100)).all() and torch.isfinite(mws_log_weights(1, 100)).all()


def images(n=16, seed=0):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_decomposition_adds_up_to_the_sampled_kl(estimator):
    """MI + TC + DWKL = log q(z|x) - log p(z) at the sampled z, for either estimator."""
    model = models.create("beta_tcvae", SHAPE, estimator=estimator, dataset_size=500).double()
    inference = model.infer(images(), sample=True)
    parts = model.decomposition(inference)
    q, z = inference.posteriors["z"], inference.z["z"]
    torch.testing.assert_close(parts["mi"] + parts["tc"] + parts["dwkl"], q.log_prob(z) - standard_normal_log_prob(z))


def test_loss_weights_the_parts_and_keeps_the_true_elbo():
    """With alpha = beta = gamma = 1 the loss is the VAE's; each weight then adds (w - 1) times
    its part, scaled by the warm-up weight; the ELBO never changes."""
    x = images()
    vae = models.create("vae", SHAPE).double()
    plain = models.create("beta_tcvae", SHAPE, alpha=1.0, beta=1.0, gamma=1.0, dataset_size=500).double()
    weighted = models.create("beta_tcvae", SHAPE, alpha=2.0, beta=6.0, gamma=3.0, dataset_size=500).double()
    plain.load_state_dict(vae.state_dict())
    weighted.load_state_dict(vae.state_dict())
    outputs = []
    for model in (vae, plain, weighted):
        torch.manual_seed(3)
        outputs.append(model(x, kl_weight=0.4))
    torch.testing.assert_close(outputs[1].loss, outputs[0].loss)
    torch.testing.assert_close(outputs[2].elbo, outputs[0].elbo)
    torch.manual_seed(3)
    parts = weighted.decomposition(weighted.infer(x))
    extra = (1.0 * parts["mi"] + 5.0 * parts["tc"] + 2.0 * parts["dwkl"]).mean()
    torch.testing.assert_close(outputs[2].loss - outputs[0].loss, 0.4 * extra)


def test_bad_options_are_one_line_errors():
    with pytest.raises(VitaeError, match="unknown estimator 'mcmc'"):
        models.create("beta_tcvae", SHAPE, estimator="mcmc")
    with pytest.raises(VitaeError, match="dataset_size must be a positive"):
        models.create("beta_tcvae", SHAPE, dataset_size=0)
    with pytest.raises(VitaeError, match="no model takes the option"):
        models.create("beta_tcvae", SHAPE, estimater="mss")
